"""What every native service provides to the stack manager."""

from __future__ import annotations

import os
import shutil
import signal
from abc import ABC, abstractmethod
from pathlib import Path

from pipeline.config import Settings
from pipeline.errors import MissingBinaryError


class NativeService(ABC):
    """A stand-in server run as a child process: how to install-check, init, start, probe it."""

    name: str = ""
    section: str = ""
    """The Settings section holding this service's host and port."""
    stop_signal: int = signal.SIGTERM
    stop_timeout: float | None = None
    """Seconds before SIGKILL; None uses `stack.stop_timeout`."""
    kill_is_routine: bool = False
    """SIGKILL after the timeout loses nothing (no state to flush): not worth a warning."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def host(self) -> str:
        return str(getattr(self.settings, self.section).host)

    @property
    def port(self) -> int:
        return int(getattr(self.settings, self.section).port)

    @property
    def data_dir(self) -> Path:
        return self.settings.state_dir / "data" / self.name

    @abstractmethod
    def check_installed(self) -> None:
        """Raise MissingBinaryError naming the package when a binary is missing."""

    def prepare(self) -> None:
        """Create the data dir on first start; a no-op afterwards."""

    @abstractmethod
    def command(self) -> list[str]: ...

    def env(self) -> dict[str, str] | None:
        """Environment of the child; None inherits ours."""
        return None

    def run_as(self) -> str | None:
        """OS user to run as (None: the current user)."""
        return None

    @abstractmethod
    def healthy(self) -> bool:
        """A real probe (a query, an API call). Never raises."""

    def stopped_cleanly(self) -> bool:
        """Whether a service whose process is gone said it stopped on purpose."""
        return False

    def bootstrap(self) -> None:
        """Idempotent setup once healthy: users, databases."""


def shoplake_child_env(settings: Settings) -> dict[str, str]:
    """The environment of a supervised `shoplake ...` child (a worker, the dashboards):
    exactly these settings, whatever SHOPLAKE_ variables the parent had, in UTC."""
    from pipeline.config import as_environment

    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPLAKE_")}
    return env | as_environment(settings) | {"TZ": "UTC", "PYTHONUNBUFFERED": "1"}


def find_binary(name: str, package: str, service: str, extra_dirs: list[str] | None = None) -> str:
    """Locate `name` on PATH or in `extra_dirs`, or raise an error naming the package."""
    found = shutil.which(name)
    if found:
        return found
    for folder in extra_dirs or []:
        candidate = Path(folder) / name
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise MissingBinaryError(name, package, service)
