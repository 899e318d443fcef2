"""Run things on a real pseudo-terminal and read what a user would see on the screen.

Output that passes through a pipe is not what a terminal shows: rich draws live rows,
moves the cursor and rewrites lines. `Screen` feeds the raw bytes to a terminal emulator
(pyte) and gives back the rendered lines, scrolled-off history included, so tests assert
on the text a user reads at the end. `run_in_terminal` runs a command under a pty
(pexpect) and returns its exit code with that screen.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pexpect
import pyte

COLUMNS, ROWS = 120, 40
"""The test terminal's size: wide enough that progress rows are not cut short."""


class Screen:
    """A terminal emulator fed with raw output; `lines()` is what is on it, top to bottom."""

    def __init__(self, columns: int = COLUMNS, rows: int = ROWS) -> None:
        self.columns = columns
        self._screen = pyte.HistoryScreen(columns, rows, history=100_000)
        self._screen.set_mode(pyte.modes.LNM)  # a pty turns \n into \r\n; so does this
        self._stream = pyte.ByteStream(self._screen)
        self.raw = bytearray()

    def feed(self, data: bytes) -> None:
        self.raw += data
        self._stream.feed(data)

    def _row(self, line: Mapping[int, pyte.screens.Char]) -> str:
        return "".join(line[x].data for x in range(self.columns)).rstrip()

    def lines(self) -> list[str]:
        rows = [self._row(line) for line in self._screen.history.top]
        rows += [line.rstrip() for line in self._screen.display]
        while rows and not rows[-1]:
            rows.pop()
        return rows

    def text(self) -> str:
        return "\n".join(self.lines())


class _ScreenWriter:
    """The file pexpect copies what it reads to: renders it on the screen."""

    def __init__(self, screen: Screen) -> None:
        self._screen = screen

    def write(self, data: bytes) -> None:
        self._screen.feed(data)

    def flush(self) -> None:
        pass


@dataclass
class TerminalRun:
    """A finished command: its exit code and its screen."""

    argv: Sequence[str]
    exit_code: int | None
    screen: Screen
    log_file: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return self.screen.lines()

    @property
    def text(self) -> str:
        return self.screen.text()

    def tail(self, n: int = 15) -> list[str]:
        return self.lines[-n:]

    def describe(self) -> str:
        """For assertion messages: the command, its exit code and the end of its screen."""
        shown = "\n".join(f"  | {line}" for line in self.tail(40))
        return f"`{' '.join(self.argv)}` exited {self.exit_code}; screen ends:\n{shown}"


def run_in_terminal(argv: Sequence[str], env: Mapping[str, str], *, timeout: float = 300,
                    cwd: str | Path | None = None,
                    interact: Callable[[pexpect.spawn, Screen], None] | None = None,
                    columns: int = COLUMNS, rows: int = ROWS,
                    log_file: Path | None = None) -> TerminalRun:
    """Run `argv` under a pseudo-terminal of `columns` x `rows`; wait for it to end.

    `interact(child, screen)` may drive the command while it runs (send Ctrl-C, wait for a
    line); the screen is fed with everything read so far. `log_file` keeps the raw bytes
    (with escapes), which is what `script` would record.
    """
    env = dict(env)
    env["TERM"] = "xterm-256color"  # what Screen emulates, whatever the caller runs under
    env.pop("NO_COLOR", None)
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    screen = Screen(columns, rows)
    child = pexpect.spawn(argv[0], list(argv[1:]), env=env, cwd=str(cwd) if cwd else None,
                          dimensions=(rows, columns), timeout=timeout, echo=False)
    child.logfile_read = _ScreenWriter(screen)  # every byte read is rendered
    try:
        if interact is not None:
            interact(child, screen)
        child.expect(pexpect.EOF, timeout=timeout)
    finally:
        child.close()
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            log_file.write_bytes(bytes(screen.raw))
    code = child.exitstatus if child.exitstatus is not None else (
        128 + child.signalstatus if child.signalstatus is not None else None)
    return TerminalRun(list(argv), code, screen, log_file)


def wait_for_text(child: pexpect.spawn, screen: Screen, pattern: str,
                  timeout: float = 120) -> str:
    """Read from `child` until the rendered screen matches `pattern`; the matching line."""
    regex = re.compile(pattern)
    import time

    deadline = time.monotonic() + timeout
    while True:
        for line in screen.lines():
            if regex.search(line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"`{pattern}` never appeared; screen ends:\n"
                                 + "\n".join(screen.lines()[-30:]))
        try:
            child.read_nonblocking(65536, timeout=0.5)
        except pexpect.TIMEOUT:
            continue
        except pexpect.EOF:
            for line in screen.lines():
                if regex.search(line):
                    return line
            raise AssertionError(f"the command ended before `{pattern}` appeared; screen "
                                 "ends:\n" + "\n".join(screen.lines()[-30:])) from None


FORBIDDEN = ("unexpected error", "Traceback (most recent call last)", "Py4JJavaError",
             "KeyError")
"""What must never reach a user's terminal."""


def assert_clean(run: TerminalRun) -> None:
    """Nothing on the screen that a user should never see."""
    text = run.text
    for bad in FORBIDDEN:
        assert bad not in text, f"`{bad}` on the terminal\n{run.describe()}"


def shoplake_argv(*args: str) -> list[str]:
    """The real console script of this checkout's venv (what users run)."""
    import sys

    script = Path(sys.executable).with_name("shoplake")
    if not script.exists():  # a venv without the entry point installed
        return [sys.executable, "-m", "pipeline.cli.main", *args]
    return [str(script), *args]


def environ(extra: Mapping[str, str]) -> dict[str, str]:
    return {**os.environ, **extra}
