"""Which workers are alive, from their status files (no services)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.orchestration import liveness
from pipeline.orchestration.liveness import NoWorkerError, WorkerState, WorkerWatch

pytestmark = pytest.mark.unit


@pytest.fixture()
def settings(tmp_path: Path):
    return load_settings(environ={"SHOPLAKE_STACK_STATE_DIR": str(tmp_path)})


def status(settings, name: str, **fields) -> None:
    run = settings.state_dir / "run"
    run.mkdir(parents=True, exist_ok=True)
    (run / f"{name}.status.json").write_text(json.dumps(
        {"name": name, "pid": os.getpid(), "at": time.time(), **fields}))


def test_no_worker_started_is_refused_naming_each(settings) -> None:
    with pytest.raises(NoWorkerError) as err:
        liveness.require_workers(settings)
    assert str(err.value).startswith("no worker is alive to run the state machine's tasks: "
                                     "`worker-1` stopped, `worker-2` stopped")
    assert "`shoplake stack up`" in err.value.hint


def test_a_worker_started_by_hand_counts_while_it_reports(settings) -> None:
    status(settings, "worker-laptop-1")
    assert [w.name for w in liveness.require_workers(settings)] == ["worker-laptop-1"]
    status(settings, "worker-laptop-1", at=time.time() - 120)  # hangs
    with pytest.raises(NoWorkerError, match="`worker-laptop-1` not reporting for 1[12][0-9] s"):
        liveness.require_workers(settings)
    status(settings, "worker-laptop-1", stopped=True)
    with pytest.raises(NoWorkerError, match="`worker-laptop-1` stopping"):
        liveness.require_workers(settings)


def test_the_watch_speaks_once_when_the_last_worker_dies_and_once_when_one_is_back(
        settings, monkeypatch) -> None:
    states = iter([[WorkerState("worker-1", True, "running")],
                   [WorkerState("worker-1", False, "crashed")],
                   [WorkerState("worker-1", False, "crashed")],
                   [WorkerState("worker-1", True, "running")]])
    monkeypatch.setattr(liveness, "workers", lambda _s: next(states))
    watch = WorkerWatch(settings, every_s=0)
    said = [watch.check() for _ in range(4)]
    assert said[0] is None and said[2] is None
    assert said[1].startswith("no worker is alive (`worker-1` crashed): the run's tasks wait")
    assert said[3] == "`worker-1` alive again: the run goes on"


def test_the_watch_reminds_while_no_worker_is_alive(settings, monkeypatch) -> None:
    monkeypatch.setattr(liveness, "workers",
                        lambda _s: [WorkerState("worker-1", False, "crashed")])
    clock = iter([0.0, 0.0, 30.0, 61.0, 62.0, 125.0])
    monkeypatch.setattr(liveness.time, "monotonic", lambda: next(clock))
    watch = WorkerWatch(settings, every_s=0, remind_s=60)
    said = [watch.check() for _ in range(4)]
    assert said[0].startswith("no worker is alive")
    assert said[1] is None and said[3] is None
    assert said[2].startswith("still no worker alive after 61s: the run waits")
    assert "shoplake stack up" in said[2]
    assert watch.check().startswith("still no worker alive after 125s")
