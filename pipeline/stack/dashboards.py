"""The live dashboards as a stack service: `shoplake dashboard serve`, supervised like the
servers (pid file, log, status, restarted by `stack up` when it crashed). It starts once
provisioning has created the read-only role and its secret, and is healthy while its
`/_health` answers (which it does only when the warehouse answers it)."""

from __future__ import annotations

import sys
import urllib.request

from pipeline.stack.service import NativeService, shoplake_child_env


class DashboardService(NativeService):
    name = "dashboards"
    section = "dashboards"
    kill_is_routine = True  # serves reads only: nothing to flush

    @property
    def host(self) -> str:
        host = self.settings.dashboards.host
        return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host

    def check_installed(self) -> None:
        pass  # the project's own Python and its dependencies

    def command(self) -> list[str]:
        return [sys.executable, "-m", "pipeline.cli.main", "dashboard", "serve"]

    def env(self) -> dict[str, str]:
        return shoplake_child_env(self.settings)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/_health",
                                        timeout=2) as resp:
                return resp.status == 200
        except Exception:  # noqa: BLE001 - a probe never raises
            return False
