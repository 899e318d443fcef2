"""Idempotent provisioning of buckets and secrets; re-run at every start (LocalStack forgets)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.aws.clients import aws_client
from pipeline.config import Settings
from pipeline.errors import ProvisioningError, first_line
from pipeline.progress import Progress, SilentProgress

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Provisioned:
    """One resource and what provisioning did to it: created, updated or unchanged."""

    kind: str
    name: str
    action: str


def provision(settings: Settings, secrets: dict[str, dict[str, Any]],
              progress: Progress | None = None) -> list[Provisioned]:
    """Create the lake's buckets and the secrets (JSON values), or bring them up to date."""
    progress = progress or SilentProgress()
    progress.start("provision", "buckets and secrets",
                   total=len(settings.lake.buckets) + len(secrets))
    done: list[Provisioned] = []
    try:
        for bucket in settings.lake.buckets:
            done.append(ensure_bucket(settings, bucket))
            progress.update("provision", advance=1)
        for name, value in secrets.items():
            done.append(ensure_secret(settings, name, value))
            progress.update("provision", advance=1)
    except (ClientError, BotoCoreError) as exc:
        progress.finish("provision", ok=False, message=first_line(exc))
        raise ProvisioningError(f"provisioning failed on LocalStack at "
                                f"{settings.localstack.endpoint_url}: {exc}",
                                resource=done[-1].name if done else "") from exc
    changed = sum(1 for p in done if p.action != "unchanged")
    progress.finish("provision", message=f"{changed} changed, {len(done) - changed} unchanged")
    return done


def ensure_bucket(settings: Settings, bucket: str) -> Provisioned:
    s3 = aws_client(settings, "s3")
    try:
        s3.head_bucket(Bucket=bucket)
        return Provisioned("bucket", bucket, "unchanged")
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise
    kwargs = {}
    if settings.localstack.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.localstack.region}
    try:
        s3.create_bucket(Bucket=bucket, **kwargs)
    except ClientError as exc:  # a concurrent `provision` won the race
        if exc.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
            raise
        return Provisioned("bucket", bucket, "unchanged")
    LOG.info("created bucket %s", bucket)
    return Provisioned("bucket", bucket, "created")


def ensure_secret(settings: Settings, name: str, value: dict) -> Provisioned:
    sm = aws_client(settings, "secretsmanager")
    wanted = json.dumps(value, sort_keys=True)
    try:
        current = sm.get_secret_value(SecretId=name)["SecretString"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        sm.create_secret(Name=name, SecretString=wanted,
                         Description="shoplake database credentials (RDS secret format)")
        LOG.info("created secret %s", name)
        return Provisioned("secret", name, "created")
    if json.loads(current) == value:
        return Provisioned("secret", name, "unchanged")
    sm.put_secret_value(SecretId=name, SecretString=wanted)
    LOG.info("updated secret %s", name)
    return Provisioned("secret", name, "updated")
