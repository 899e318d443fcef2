"""ManagedProcess with real (tiny) processes: no services needed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from pipeline.stack.process import ManagedProcess

pytestmark = pytest.mark.unit


def _proc(tmp_path: Path) -> ManagedProcess:
    return ManagedProcess("sleeper", tmp_path / "run", tmp_path / "logs")


def _children(pid: int) -> list[psutil.Process]:
    """The shell's children, once it has forked them (slow on a loaded machine)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = psutil.Process(pid).children(recursive=True)
        if found:
            return found
        time.sleep(0.05)
    return []


def test_start_find_stop(tmp_path: Path) -> None:
    proc = _proc(tmp_path)
    rec = proc.start(["sh", "-c", "echo hello; exec sleep 60"], port=1)
    assert proc.running() == rec
    time.sleep(0.2)
    assert "hello" in proc.tail()
    assert proc.stop(timeout=5)
    assert proc.running() is None
    assert not proc.pid_file.exists()
    assert not proc.stop(timeout=5)  # stopping twice is fine


def test_stop_kills_the_whole_group_and_escalates_to_sigkill(tmp_path: Path) -> None:
    proc = _proc(tmp_path)
    # The leader ignores SIGTERM and has a child: both must be gone afterwards.
    rec = proc.start(["sh", "-c", "trap '' TERM; sleep 60 & wait"], port=1)
    children = _children(rec.pid)
    assert children
    started = time.monotonic()
    assert proc.stop(timeout=1.0)
    assert time.monotonic() - started < 5
    for p in [rec.pid, *(c.pid for c in children)]:
        assert not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE


def test_crashed_process_is_not_running_and_orphans_are_cleaned(tmp_path: Path) -> None:
    proc = _proc(tmp_path)
    rec = proc.start(["sh", "-c", "sleep 60 & wait"], port=1)
    orphan = _children(rec.pid)[0]
    os.kill(rec.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while proc.running() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.running() is None
    assert proc.record() is not None  # the pid file outlived it: "crashed"
    assert orphan.is_running()
    proc.cleanup_stale()
    orphan.wait(timeout=5)
    assert proc.record() is None


def test_a_recycled_pid_is_not_mistaken_for_ours(tmp_path: Path) -> None:
    proc = _proc(tmp_path)
    proc.pid_file.parent.mkdir(parents=True)
    # Our own pid, but with another start time: somebody else's process now.
    proc.pid_file.write_text(f'{{"pid": {os.getpid()}, "create_time": 1.0, "port": 1, '
                             '"command": ["x"]}')
    assert proc.running() is None
