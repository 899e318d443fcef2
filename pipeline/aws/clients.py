"""boto3 clients for LocalStack, built through localstack-client's session."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from botocore.config import Config
from localstack_client.session import Session

from pipeline.config import Settings

# Fail fast: a health probe must not sit in botocore's default retries and 60 s timeouts.
# The read timeout stays above the 60 s long poll of Step Functions' get_activity_task.
_CONFIG = Config(connect_timeout=3, read_timeout=70,
                 retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"})


def aws_client(settings: Settings, service: str) -> Any:
    """A (cached) boto3 client for `service` on the configured LocalStack endpoint."""
    ls = settings.localstack
    return _client(ls.host, ls.port, ls.region, ls.access_key_id,
                   ls.secret_access_key.reveal(), service)


@lru_cache(maxsize=64)
def _client(host: str, port: int, region: str, key_id: str, secret: str, service: str) -> Any:
    session = Session(aws_access_key_id=key_id, aws_secret_access_key=secret,
                      aws_session_token=None, region_name=region,
                      localstack_host=f"{host}:{port}")
    return session.client(service, config=_CONFIG)
