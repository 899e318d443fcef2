"""The Glue Data Catalog endpoint: moto's server (pinned), since LocalStack community has no
Glue API. It keeps the catalog in memory, like LocalStack its buckets: after a restart the
next crawl registers every table again (the crawler finds no entry and reads bronze afresh).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.aws.clients import aws_client
from pipeline.errors import TerminalError
from pipeline.stack.service import NativeService


class GlueCatalogService(NativeService):
    name = "glue"
    section = "glue"
    stop_timeout = 5.0
    kill_is_routine = True  # in memory: nothing to flush

    @property
    def binary(self) -> Path:
        return Path(sys.executable).with_name("moto_server")

    def check_installed(self) -> None:
        if not self.binary.exists():
            raise TerminalError(f"moto's server is missing (`{self.binary}` does not exist); "
                                "the `glue` service (the Glue Data Catalog) needs it",
                                hint="run `bash scripts/setup.sh` (it installs moto[server])")

    def command(self) -> list[str]:
        return [str(self.binary), "-H", self.host, "-p", str(self.port)]

    def env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TZ": "UTC"}

    def healthy(self) -> bool:
        try:
            aws_client(self.settings, "glue").get_databases(MaxResults=1)
            return True
        except (BotoCoreError, ClientError, OSError):
            return False
