"""The one interface through which core code reports progress; core code never prints.

The CLI picks the implementation: `RichProgress` on a terminal, `LogProgress` (plain
lines, for CI and pipes), `SilentProgress` for tests and library use.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Protocol, TextIO

LOG = logging.getLogger(__name__)


class Progress(Protocol):
    """start a task, update it any number of times, finish it once."""

    def start(self, key: str, description: str, total: float | None = None) -> None: ...

    def update(self, key: str, advance: float = 0, description: str | None = None) -> None: ...

    def finish(self, key: str, ok: bool = True, message: str = "") -> None: ...


class SilentProgress:
    """Reports nothing; the default for library calls and tests."""

    def start(self, key: str, description: str, total: float | None = None) -> None:
        pass

    def update(self, key: str, advance: float = 0, description: str | None = None) -> None:
        pass

    def finish(self, key: str, ok: bool = True, message: str = "") -> None:
        pass


class LogProgress:
    """One plain line per start and finish (and per description change), with timings."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self._lock:
            print(text, file=self._stream, flush=True)

    def start(self, key: str, description: str, total: float | None = None) -> None:
        self._started[key] = time.monotonic()
        self._line(f"[{key}] {description}")

    def update(self, key: str, advance: float = 0, description: str | None = None) -> None:
        if description:
            self._line(f"[{key}] {description}")

    def finish(self, key: str, ok: bool = True, message: str = "") -> None:
        took = time.monotonic() - self._started.pop(key, time.monotonic())
        status = "done" if ok else "FAILED"
        self._line(f"[{key}] {status} in {took:.1f}s" + (f": {message}" if message else ""))


class RichProgress:
    """Live spinners and bars on a terminal; use as a context manager."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichBar

        self._bar = RichBar(SpinnerColumn(), TextColumn("[bold]{task.fields[key]}"),
                            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                            transient=False)
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def start(self, key: str, description: str, total: float | None = None) -> None:
        self._tasks[key] = self._bar.add_task(description, total=total, key=key)

    def update(self, key: str, advance: float = 0, description: str | None = None) -> None:
        kwargs = {"description": description} if description else {}
        self._bar.update(self._tasks[key], advance=advance, **kwargs)

    def finish(self, key: str, ok: bool = True, message: str = "") -> None:
        task = self._tasks.pop(key)
        mark = "[green]ok[/green]" if ok else "[red]failed[/red]"
        total = self._bar.tasks[task].total or 1
        self._bar.update(task, total=total, completed=total,
                         description=f"{mark} {message}".rstrip())
