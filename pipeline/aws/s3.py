"""The few S3 operations the lake's packages share: list, delete in bulk, JSON objects."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pipeline.aws.clients import aws_client
from pipeline.config import Settings

DELETE_BATCH = 1000
"""Keys per DeleteObjects call, S3's limit."""


def list_objects(settings: Settings, bucket: str, prefix: str = "", start_after: str = ""
                 ) -> dict[str, str]:
    """key -> ETag of every object under `prefix` (only those whose key sorts after
    `start_after`, when given: S3 lists in key order), across all pages."""
    s3 = aws_client(settings, "s3")
    found: dict[str, str] = {}
    extra = {"StartAfter": start_after} if start_after else {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix,
                                                             **extra):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["ETag"]
    return found


def list_folders(settings: Settings, bucket: str, prefix: str = "") -> list[str]:
    """The "folders" right under `prefix` (`a/b/` for `a/b/c`), without listing the
    objects in them."""
    s3 = aws_client(settings, "s3")
    found: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix,
                                                             Delimiter="/"):
        found += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return found


def head_etag(settings: Settings, bucket: str, key: str) -> str | None:
    """The object's ETag, or None when there is no such object."""
    s3 = aws_client(settings, "s3")
    try:
        return s3.head_object(Bucket=bucket, Key=key)["ETag"]
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def list_modified(settings: Settings, bucket: str, prefix: str = "") -> dict[str, float]:
    """key -> LastModified (epoch seconds) of every object under `prefix`."""
    s3 = aws_client(settings, "s3")
    found: dict[str, float] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["LastModified"].timestamp()
    return found


def delete_keys(settings: Settings, bucket: str, keys: Sequence[str]) -> None:
    s3 = aws_client(settings, "s3")
    for i in range(0, len(keys), DELETE_BATCH):
        s3.delete_objects(Bucket=bucket, Delete={
            "Objects": [{"Key": k} for k in keys[i:i + DELETE_BATCH]], "Quiet": True})


def get_json(settings: Settings, bucket: str, key: str) -> Any | None:
    """The object's JSON, or None when there is no such object."""
    s3 = aws_client(settings, "s3")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def put_json(settings: Settings, bucket: str, key: str, value: Any, indent: int | None = None
             ) -> None:
    aws_client(settings, "s3").put_object(
        Bucket=bucket, Key=key, Body=json.dumps(value, indent=indent, default=str).encode())
