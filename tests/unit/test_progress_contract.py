"""The progress contract (pipeline/progress.py's docstring), checked for every implementation.

RichProgress is driven on a real pseudo-terminal: its console writes to the slave side of
a pty (so rich takes its terminal code paths, live rows and cursor moves), and what comes
out of the master side is rendered by a terminal emulator into the lines a user sees.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import re
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from typing import Any

import pytest

from pipeline.progress import LogProgress, Progress, RichProgress, SilentProgress
from tests.terminal import Screen

pytestmark = pytest.mark.unit

COLUMNS, ROWS = 100, 30


class Harness:
    """One implementation, its output, and a way to read each key's final state."""

    name = ""

    @contextmanager
    def progress(self) -> Iterator[Progress]:
        raise NotImplementedError

    def rows(self) -> list[str]:
        """What was shown, one entry per line."""
        return []


class SilentHarness(Harness):
    """SilentProgress with stdout and stderr captured: its contract is to show nothing."""

    name = "silent"

    def __init__(self) -> None:
        self.out = io.StringIO()

    @contextmanager
    def progress(self) -> Iterator[Progress]:
        with redirect_stdout(self.out), redirect_stderr(self.out):
            yield SilentProgress()

    def rows(self) -> list[str]:
        return self.out.getvalue().splitlines()


class LogHarness(Harness):
    name = "log"

    def __init__(self) -> None:
        self.out = io.StringIO()

    @contextmanager
    def progress(self) -> Iterator[Progress]:
        yield LogProgress(self.out)

    def rows(self) -> list[str]:
        return self.out.getvalue().splitlines()


class RichPtyHarness(Harness):
    """RichProgress on a console whose file is a pseudo-terminal."""

    name = "rich-pty"

    def __init__(self) -> None:
        self.screen = Screen(COLUMNS, ROWS)

    @contextmanager
    def progress(self) -> Iterator[Progress]:
        from rich.console import Console

        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        tty_file = os.fdopen(slave, "w", buffering=1, encoding="utf-8")
        console = Console(file=tty_file, width=COLUMNS, height=ROWS)
        assert console.is_terminal, "the pty must be taken for a terminal"
        reader = threading.Thread(target=self._pump, args=(master,), daemon=True)
        reader.start()
        try:
            with RichProgress(console) as progress:
                yield progress
        finally:
            tty_file.close()  # the reader sees EOF once everything is read
            reader.join(timeout=10)
            os.close(master)

    def _pump(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the slave side is closed
                return
            if not data:
                return
            self.screen.feed(data)

    def rows(self) -> list[str]:
        return self.screen.lines()


HARNESSES: list[Callable[[], Harness]] = [SilentHarness, LogHarness, RichPtyHarness]


@pytest.fixture(params=HARNESSES, ids=lambda h: h.name)
def harness(request: pytest.FixtureRequest) -> Harness:
    return request.param()


def rows_of(harness: Harness, key: str) -> list[str]:
    """The shown lines that belong to `key`."""
    if isinstance(harness, LogHarness):
        return [r for r in harness.rows() if r.startswith(f"[{key}]")]
    return [r for r in harness.rows() if re.match(rf"\S*\s*{re.escape(key)}\s", r + " ")]


def final(harness: Harness, key: str) -> str:
    found = rows_of(harness, key)
    assert found, f"nothing shown for `{key}`:\n" + "\n".join(harness.rows())
    return found[-1]


def shows_outcome(harness: Harness, key: str, ok: bool, message: str) -> None:
    """The key's last row shows the outcome and message; SilentProgress shows nothing."""
    if isinstance(harness, SilentHarness):
        assert harness.rows() == [], f"SilentProgress printed: {harness.rows()}"
        return
    line = final(harness, key)
    if isinstance(harness, LogHarness):
        assert ("done" if ok else "FAILED") in line and line.endswith(message), line
    else:
        assert ("ok" if ok else "failed") in line and message in line, line


def eventually(harness: Harness, seen: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Whether `seen()` holds within `timeout_s` (a terminal draws on its own refresh);
    SilentProgress is asked once: it never shows anything."""
    deadline = time.monotonic() + (0 if isinstance(harness, SilentHarness) else timeout_s)
    while True:
        if seen():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def test_finishing_a_key_that_never_started_shows_its_outcome(harness: Harness) -> None:
    # pipeline/cdc/service.py does this when the source is down before replication starts.
    with harness.progress() as p:
        p.finish("cdc", ok=False, message="the source at 127.0.0.1:13306 is unreachable")
    shows_outcome(harness, "cdc", False, "the source at 127.0.0.1:13306 is unreachable")
    if not isinstance(harness, SilentHarness):
        line = final(harness, "cdc")
        assert " in " not in line.split("unreachable")[0], "a task that never ran: no duration"
        assert not re.search(r"\d:\d\d:\d\d", line), line


def test_updating_a_key_that_never_started_starts_it(harness: Harness) -> None:
    # spark_jobs report under the job's name, which `shoplake run` never starts itself.
    with harness.progress() as p:
        p.update("bronze_to_silver", advance=1, description="orders: 2 new file(s)")
        p.update("load_dim_customer", advance=5)
        # The description shows while the task runs (a terminal redraws it in place, so
        # look before the finish replaces it).
        shown = eventually(harness, lambda: any(
            "orders: 2 new file(s)" in r for r in rows_of(harness, "bronze_to_silver")))
        p.finish("bronze_to_silver", message="4 tables")
    shows_outcome(harness, "bronze_to_silver", True, "4 tables")
    if isinstance(harness, SilentHarness):
        assert not shown
    else:
        assert shown, harness.rows()
        assert rows_of(harness, "load_dim_customer"), "an update alone makes the task visible"


def test_a_key_started_twice_is_one_task(harness: Harness) -> None:
    with harness.progress() as p:
        p.start("cdc", "replicating from binlog.000001:4", total=None)
        p.finish("cdc", ok=False, message="attempt 1 failed")
        p.start("cdc", "replicating from binlog.000001:900", total=10)
        p.update("cdc", advance=10)
        p.start("crawl", "crawling")
        p.start("crawl", "crawling again")
        p.finish("cdc", message="12 changes")
        p.finish("crawl", message="4 tables")
    shows_outcome(harness, "cdc", True, "12 changes")
    shows_outcome(harness, "crawl", True, "4 tables")
    if isinstance(harness, RichPtyHarness):
        assert len(rows_of(harness, "cdc")) == 1, harness.rows()
        assert len(rows_of(harness, "crawl")) == 1, harness.rows()


def test_nested_tasks_live_side_by_side(harness: Harness) -> None:
    with harness.progress() as p:
        p.start("step:load-dims", "load-dims")
        p.start("load_dim_customer", "running load_dim_customer")
        p.finish("load_dim_customer", message="stg_customers 1000")
        p.start("load_dim_product", "running load_dim_product")
        p.finish("load_dim_product", ok=False, message="COPY rejected")
        p.finish("step:load-dims", ok=False, message="load_dim_product failed")
    shows_outcome(harness, "load_dim_customer", True, "stg_customers 1000")
    shows_outcome(harness, "load_dim_product", False, "COPY rejected")
    shows_outcome(harness, "step:load-dims", False, "load_dim_product failed")
    if isinstance(harness, SilentHarness):
        return
    rows = harness.rows()
    order = [rows.index(rows_of(harness, key)[0])
             for key in ("step:load-dims", "load_dim_customer", "load_dim_product")]
    assert order == sorted(order), "tasks are shown in the order they started"


def test_finishing_twice_shows_the_last_outcome(harness: Harness) -> None:
    with harness.progress() as p:
        p.start("reconcile", "comparing")
        p.finish("reconcile", ok=True, message="first")
        p.finish("reconcile", ok=False, message="second")
    shows_outcome(harness, "reconcile", False, "second")


def test_markup_in_keys_and_messages_is_shown_as_text(harness: Harness) -> None:
    with harness.progress() as p:
        p.start("seed:[orders]", "loading [bold]`orders`[/bold]")
        p.finish("seed:[orders]", message="[red]10 rows[/red]")
    shows_outcome(harness, "seed:[orders]", True, "[red]10 rows[/red]")
    if isinstance(harness, LogHarness):
        assert any("loading [bold]`orders`[/bold]" in r for r in harness.rows()), \
            harness.rows()


def test_no_call_raises_from_many_threads(harness: Harness, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="pipeline.progress")
    errors: list[BaseException] = []

    def work(p: Progress, n: int) -> None:
        try:
            for i in range(30):
                key = f"t{n}:{i % 3}"
                [p.start, p.update, p.finish][(i + n) % 3](key, *(["x"] if (i + n) % 3 == 0
                                                                  else []))
                p.update("shared", advance=1, description=f"from {n}")
                if i % 7 == 0:
                    p.finish("shared", ok=bool(i % 2), message=f"{n}/{i}")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    with harness.progress() as p:
        threads = [threading.Thread(target=work, args=(p, n)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        p.finish("shared", message="all done")
    assert not errors, errors
    swallowed = [r.getMessage() for r in caplog.records if r.name == "pipeline.progress"]
    assert not swallowed, f"a call failed inside the guard: {swallowed}"
    shows_outcome(harness, "shared", True, "all done")


def test_calls_after_the_progress_ended_do_not_raise(harness: Harness, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="pipeline.progress")
    kept: dict[str, Any] = {}
    with harness.progress() as p:
        kept["p"] = p
        p.start("a", "a")
    before = list(harness.rows())
    late = kept["p"]
    late.update("a", advance=1, description="late")
    late.finish("a", message="late")
    late.finish("never", ok=False)
    swallowed = [r.getMessage() for r in caplog.records if r.name == "pipeline.progress"]
    assert not swallowed, f"a call failed inside the guard: {swallowed}"
    if isinstance(harness, LogHarness):  # a log has no end: the lines still come
        assert any(r.startswith("[never]") and "FAILED" in r
                   for r in harness.rows()[len(before):]), harness.rows()
    else:  # the terminal's live display was stopped: nothing more is drawn
        assert harness.rows() == before
