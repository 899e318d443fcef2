"""The one interface through which core code reports progress; core code never prints.

The CLI picks the implementation: `RichProgress` on a terminal, `LogProgress` (plain
lines, for CI and pipes), `SilentProgress` for tests and library use. All three obey one
contract, so code that works through a pipe works on a terminal too
(tests/unit/test_progress_contract.py checks each implementation against it):

- A key names one task; on a terminal, one row. Keys are flat: a task started while
  another runs (a job inside a pipeline step) is a task of its own, shown after the
  tasks started before it. Finishing one task never finishes or hides another.
- `start(key, ...)` begins the task. Starting a key that is known already, running or
  finished, restarts that same task: new description, total and clock, no second row.
- `update(key, ...)` of a key that was never started (or has finished) starts it, with
  the given description or else the key, then applies the update.
- `finish(key, ...)` ends the task and shows its outcome (ok / failed) and message.
  Finishing a key that is not running (never started, or finished already) still shows
  that outcome and message, with no duration: on a terminal in the key's one row, in a
  log as one more line. Unfinished tasks stay as they are when the progress ends.
- No method raises for any key or order of calls, from any thread: progress reporting
  must never be what breaks the work (or turns a retryable error into another one).
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO, TypeVar

LOG = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., None])


def _never_raises(method: _F) -> _F:
    """Reporting must not break the work: a failure to draw is logged, not raised."""

    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception:  # noqa: BLE001 - see the module's contract
            LOG.debug("progress %s%r failed", method.__name__, args, exc_info=True)

    return guarded  # type: ignore[return-value]


class Progress(Protocol):
    """start a task, update it any number of times, finish it; see the module's contract."""

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

    @_never_raises
    def start(self, key: str, description: str, total: float | None = None) -> None:
        with self._lock:
            self._started[key] = time.monotonic()
        self._line(f"[{key}] {description}")

    @_never_raises
    def update(self, key: str, advance: float = 0, description: str | None = None) -> None:
        with self._lock:
            known = key in self._started
        if not known:
            self.start(key, description or key)
        elif description:
            self._line(f"[{key}] {description}")

    @_never_raises
    def finish(self, key: str, ok: bool = True, message: str = "") -> None:
        with self._lock:
            began = self._started.pop(key, None)
        status = "done" if ok else "FAILED"
        took = "" if began is None else f" in {time.monotonic() - began:.1f}s"
        self._line(f"[{key}] {status}{took}" + (f": {message}" if message else ""))


class RichProgress:
    """Live spinners and bars on a terminal; use as a context manager."""

    KEY_WIDTH = 24
    """Widest key column; longer keys are cut (with an ellipsis)."""
    BAR_WIDTH = 12
    ELAPSED_WIDTH = 7
    """`0:00:12`"""

    def __init__(self, console: Any = None) -> None:
        from rich.progress import BarColumn, ProgressColumn, SpinnerColumn, TimeElapsedColumn
        from rich.progress import Progress as RichBar
        from rich.table import Column
        from rich.text import Text

        owner = self

        class Key(ProgressColumn):
            """The task's key, padded to the widest key shown (so rows line up)."""

            def render(self, task: Any) -> Any:
                text = Text(task.fields.get("key", ""), style="bold", no_wrap=True)
                text.truncate(owner._key_width(), overflow="ellipsis", pad=True)
                return text

        class Elapsed(TimeElapsedColumn):
            """Time taken; blank for a task that was finished without having run here."""

            def render(self, task: Any) -> Any:
                return super().render(task) if task.fields.get("timed", True) else Text("")

        class Description(ProgressColumn):
            """Last, and cut to what is left of the line: a narrow terminal shortens the
            description, never drops the other columns."""

            def render(self, task: Any) -> Any:
                text = Text.from_markup(task.description, overflow="ellipsis")
                text.no_wrap = True
                text.truncate(max(10, owner._bar.console.width - owner._fixed_width()),
                              overflow="ellipsis")
                return text

        fixed = Column(no_wrap=True)
        self._bar = RichBar(SpinnerColumn(table_column=fixed), Key(table_column=fixed),
                            BarColumn(bar_width=self.BAR_WIDTH, table_column=fixed),
                            Elapsed(table_column=fixed), Description(table_column=fixed),
                            transient=False, console=console)
        self._tasks: dict[str, Any] = {}
        """key -> rich task id, running or finished (one row per key)."""
        self._running: set[str] = set()
        self._lock = threading.RLock()

    def _key_width(self) -> int:
        return min(self.KEY_WIDTH, max((len(k) for k in self._tasks), default=1))

    def _fixed_width(self) -> int:
        # spinner, key, bar, elapsed, each followed by one column of padding
        return 2 + self._key_width() + 1 + self.BAR_WIDTH + 1 + self.ELAPSED_WIDTH + 1

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None:
            # The command is ending on an error or Ctrl-C: no row may be left spinning as
            # if its task still ran.
            why = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "stopped"
            for key in list(self._running):
                self.finish(key, ok=False, message=why)
        self._bar.stop()

    def _task(self, key: str, description: str, total: float | None,
              timed: bool = True) -> Any:
        """The row of `key`, (re)started with this description and total; `timed=False`
        for a task that never ran here (it shows no duration)."""
        from rich.markup import escape

        task_id = self._tasks.get(key)
        if task_id is None:
            task_id = self._bar.add_task(escape(description), total=total, key=key,
                                         timed=timed)
            self._tasks[key] = task_id
        else:
            # reset() replaces the task's fields: give all of them again.
            self._bar.reset(task_id, description=escape(description), total=total,
                            key=key, timed=timed)
            # reset() keeps the old total when given None; a restart may be indeterminate.
            self._bar.tasks[self._index(task_id)].total = total
        self._running.add(key)
        return task_id

    def _index(self, task_id: Any) -> int:
        return next(i for i, t in enumerate(self._bar.tasks) if t.id == task_id)

    @_never_raises
    def start(self, key: str, description: str, total: float | None = None) -> None:
        with self._lock:
            self._task(key, description, total)

    @_never_raises
    def update(self, key: str, advance: float = 0, description: str | None = None) -> None:
        from rich.markup import escape

        with self._lock:
            if key not in self._running:
                self._task(key, description or key, None)
                description = None
            kwargs = {"description": escape(description)} if description else {}
            self._bar.update(self._tasks[key], advance=advance, **kwargs)

    @_never_raises
    def finish(self, key: str, ok: bool = True, message: str = "") -> None:
        from rich.markup import escape

        with self._lock:
            if key not in self._running:
                self._task(key, key, None, timed=False)
            task_id = self._tasks[key]
            self._running.discard(key)
            mark = "[green]ok[/green]" if ok else "[red]failed[/red]"
            total = self._bar.tasks[self._index(task_id)].total or 1
            self._bar.update(task_id, total=total, completed=total,
                             description=f"{mark} {escape(message)}".rstrip())
