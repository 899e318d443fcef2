"""LocalStack in host mode (no Docker): S3, Secrets Manager, Step Functions, EventBridge, SQS.

It runs from its own venv on Python 3.13 (`scripts/setup.sh` builds it from
localstack/requirements-host.txt). It keeps no state across restarts, which is why
`stack up` provisions every time.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

from pipeline.aws.clients import aws_client
from pipeline.errors import TerminalError
from pipeline.stack.service import NativeService


class LocalStackService(NativeService):
    name = "localstack"
    section = "localstack"
    stop_timeout = 5.0  # SIGTERM can hang while activity long-polls are open
    kill_is_routine = True  # it keeps no state across restarts anyway

    @property
    def python(self) -> Path:
        configured = self.settings.localstack.python
        if configured:
            return Path(configured)
        return self.settings.stack.tools_dir / "localstack" / "bin" / "python"

    def check_installed(self) -> None:
        if not self.python.exists():
            raise TerminalError(
                f"LocalStack's venv is missing (`{self.python}` does not exist)",
                hint="run `bash scripts/setup.sh`, or set SHOPLAKE_LOCALSTACK_PYTHON to a Python "
                     "3.13 that has localstack/requirements-host.txt installed",
            )

    def prepare(self) -> None:
        for sub in ("fs", "tmp"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [str(self.python), "-m", "localstack.runtime.main"]

    def env(self) -> dict[str, str]:
        ls = self.settings.localstack
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "OVERRIDE_IN_DOCKER": "0",  # this machine has a /.dockerenv; LocalStack must not care
            "GATEWAY_LISTEN": f"127.0.0.1:{ls.port}",
            # LocalStack's default server (twisted) ignores the address in GATEWAY_LISTEN and
            # listens on every interface; hypercorn binds only to it (the VPC: 127.0.0.1).
            "GATEWAY_SERVER": "hypercorn",
            "LOCALSTACK_HOST": f"{ls.host}:{ls.port}",
            "SERVICES": ls.services,
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DNS_ADDRESS": "0",
            "DISABLE_EVENTS": "1",
            "HOME": str(self.data_dir),
            "FILESYSTEM_ROOT": str(self.data_dir / "fs"),
            "TMPDIR": str(self.data_dir / "tmp"),
            "TZ": "UTC",
        }
        if ls.auth_token.reveal():
            env["LOCALSTACK_AUTH_TOKEN"] = ls.auth_token.reveal()
        return env

    def healthy(self) -> bool:
        return localstack_healthy(self.settings)


def localstack_healthy(settings) -> bool:  # noqa: ANN001 - Settings, kept import-light
    """The health endpoint lists every service we need, and a real S3 call answers."""
    ls = settings.localstack
    try:
        with urllib.request.urlopen(f"{ls.endpoint_url}/_localstack/health", timeout=2) as resp:
            states = json.load(resp).get("services", {})
        wanted = [s.strip() for s in ls.services.split(",") if s.strip()]
        if any(states.get(s) not in ("available", "running") for s in wanted):
            return False
        aws_client(settings, "s3").list_buckets()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not healthy yet"
        return False
