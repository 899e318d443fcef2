"""The Step Functions workers as stack services: `shoplake worker` processes that serve the
state machine's activities, supervised like the servers (pid files, logs, status, restarted
by `stack up` when they crashed). They have no port; a worker is healthy while it writes
its status file (every few seconds)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from pipeline.config import as_environment
from pipeline.stack.service import NativeService, shoplake_child_env

STATUS_STALE_S = 30.0
"""A status file older than this means the worker hangs."""


class WorkerService(NativeService):
    section = "orchestration"
    stop_signal = signal.SIGTERM
    stop_timeout = 60.0  # SIGTERM lets the tasks that run finish first

    def __init__(self, settings, index: int) -> None:  # noqa: ANN001 - Settings
        super().__init__(settings)
        self.index = index
        self.name = f"worker-{index}"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return 0  # serves by polling, listens on nothing

    def check_installed(self) -> None:
        pass  # the project's own Python

    def command(self) -> list[str]:
        return [sys.executable, "-m", "pipeline.cli.main", "worker", "--name", self.name]

    def env(self) -> dict[str, str]:
        return shoplake_child_env(self.settings)

    def healthy(self) -> bool:
        from pipeline.orchestration.liveness import read_status

        status = read_status(self.settings, self.name)
        return bool(status) and not status.get("stopped") and \
            time.time() - float(status.get("at", 0)) < STATUS_STALE_S


    def stopped_cleanly(self) -> bool:
        from pipeline.orchestration.liveness import read_status

        return bool((read_status(self.settings, self.name) or {}).get("stopped"))


def worker_services(settings) -> list[WorkerService]:  # noqa: ANN001 - Settings
    return [WorkerService(settings, i + 1) for i in range(settings.orchestration.workers)]


def settings_file(settings) -> Path:  # noqa: ANN001 - Settings
    return settings.state_dir / "run" / "workers.settings.json"


def record_settings(settings) -> None:  # noqa: ANN001 - Settings
    """What the workers run with, for `shoplake run` to compare with its own settings."""
    import json

    path = settings_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in as_environment(settings).items()
           if not k.startswith(("SHOPLAKE_LOCALSTACK_SECRET", "SHOPLAKE_LOCALSTACK_AUTH"))}
    path.write_text(json.dumps(env, indent=1, sort_keys=True))


def _differences(settings) -> tuple[list[str], dict[str, str], dict[str, str]]:  # noqa: ANN001
    """Settings keys whose value differs from what the workers were started with."""
    import json

    try:
        theirs = json.loads(settings_file(settings).read_text())
    except (OSError, ValueError):
        return [], {}, {}  # no workers started by this stack (compose, another machine)
    mine = as_environment(settings)
    differ = sorted(k for k, v in theirs.items() if mine.get(k) != v
                    and not k.startswith("SHOPLAKE_STACK_"))
    return differ, mine, theirs


def changed_settings(settings) -> list[str]:  # noqa: ANN001 - Settings
    """The settings (as SHOPLAKE_* names) the running workers do not have."""
    return _differences(settings)[0]


def check_same_settings(settings) -> None:  # noqa: ANN001 - Settings
    """A setting given to `shoplake run` that the workers do not have would not take
    effect (the steps run in the workers): refuse it, saying how to make it count."""
    from pipeline.errors import ConfigError

    differ, mine, theirs = _differences(settings)
    if differ:
        shown = ", ".join(f"{k}={mine.get(k)!r} (workers: {theirs[k]!r})" for k in differ[:4])
        raise ConfigError(f"the run's steps execute in the workers, which run with other "
                          f"settings: {shown}", key=differ[0],
                          hint="restart the workers with these settings (`shoplake stack "
                               "up` under them), or run in this process with `shoplake run "
                               "--local`")
