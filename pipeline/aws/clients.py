"""boto3 clients for LocalStack, built through localstack-client's session."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from botocore.config import Config
from localstack_client.session import Session

from pipeline.config import Settings

# Fail fast: a health probe must not sit in botocore's default retries and 60 s timeouts,
# nor a command on a hung (stopped) LocalStack for minutes.
_CONFIG = Config(connect_timeout=3, read_timeout=30,
                 retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"})
# Step Functions' get_activity_task long-polls for 60 s server-side: its reader waits longer.
_LONG_POLL = _CONFIG.merge(Config(read_timeout=70))


def aws_client(settings: Settings, service: str, long_poll: bool = False) -> Any:
    """A (cached) boto3 client for `service` on the configured LocalStack endpoint;
    `long_poll` for get_activity_task, whose answer may take a minute."""
    ls = settings.localstack
    if service == "glue":  # LocalStack community has no Glue: the catalog's own endpoint
        return _glue_client(settings.glue.endpoint_url, ls.region, ls.access_key_id,
                            ls.secret_access_key.reveal())
    return _client(ls.host, ls.port, ls.region, ls.access_key_id,
                   ls.secret_access_key.reveal(), service, long_poll)


@lru_cache(maxsize=8)
def _glue_client(endpoint: str, region: str, key_id: str, secret: str) -> Any:
    import boto3

    return boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret,
                                 region_name=region).client("glue", endpoint_url=endpoint,
                                                            config=_CONFIG)


@lru_cache(maxsize=64)
def _client(host: str, port: int, region: str, key_id: str, secret: str, service: str,
            long_poll: bool = False) -> Any:
    session = Session(aws_access_key_id=key_id, aws_secret_access_key=secret,
                      aws_session_token=None, region_name=region,
                      localstack_host=f"{host}:{port}")
    return session.client(service, config=_LONG_POLL if long_poll else _CONFIG)


def ensure_answering(settings: Settings, timeout_s: float = 5.0) -> None:
    """Raise ServiceUnavailableError unless LocalStack answers within `timeout_s`: a hung
    one (stopped, overloaded) would otherwise hold a command in botocore's read timeouts
    and retries for minutes, or take a request late (a run started after the error)."""
    import urllib.request

    from pipeline.errors import ServiceUnavailableError

    ls = settings.localstack
    try:
        with urllib.request.urlopen(f"{ls.endpoint_url}/_localstack/health",
                                    timeout=timeout_s) as resp:
            resp.read()
    except OSError as exc:
        hung = "timed out" in str(exc)
        reason = (f"no answer within {timeout_s:.0f}s (stopped or overloaded)" if hung
                  else "nothing answers")
        raise ServiceUnavailableError(
            f"LocalStack (S3, Secrets Manager, Step Functions) at {ls.endpoint_url} is not "
            f"reachable: {reason}", service="localstack", port=ls.port,
            hint="`shoplake stack status` shows it; `shoplake stack up` restarts it"
            if hung else "start it with `shoplake stack up`") from exc
