"""Are any workers alive to run the state machine's tasks?

Step Functions cannot tell: an activity task nobody polls just waits, and a task whose worker
died ends only after HeartbeatSeconds, as `States.Timeout` with no cause, retried and timed
out again. So `shoplake run` asks before it starts a run (and refuses at once when no worker
lives), and while it follows one it says when its workers die and when they come back.

Natively the stack's workers write a status file every few seconds (`<state>/run/`), and
their pid files say whether the process lives (what `stack status` shows). In compose the
workers are other containers: each also writes a heartbeat object to the artifacts bucket
(`_shoplake/workers/<name>.json`), which is what the run reads there.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.errors import TerminalError

STALE_S = 30.0
"""A worker silent this long is not counted alive (it writes every 5 s natively, every
`HEARTBEAT_EVERY_S` to S3)."""

HEARTBEAT_EVERY_S = 10.0
"""How often a compose worker writes its heartbeat object."""

HEARTBEAT_PREFIX = "_shoplake/workers/"
"""Where compose workers' heartbeats live in the artifacts bucket."""

FIRST_HEARTBEAT_WAIT_S = 20.0
"""In compose, how long a run waits for a first heartbeat when none was ever written (the
workers may be starting beside it)."""


@dataclass(frozen=True)
class WorkerState:
    name: str
    alive: bool
    state: str
    """`running`, `crashed`, `stopped`, `not reporting for 42 s`..."""

    def __str__(self) -> str:
        return f"`{self.name}` {self.state}"


class NoWorkerError(TerminalError):
    """No worker is alive: a run's tasks would wait on heartbeat timeouts for minutes."""

    def __init__(self, workers: list[WorkerState], mode: str) -> None:
        said = ", ".join(str(w) for w in workers) or "none is configured or has reported"
        start = ("`docker compose up -d worker`" if mode == "compose"
                 else "`shoplake stack up` (`shoplake stack status` shows them)")
        super().__init__(f"no worker is alive to run the state machine's tasks: {said}",
                         hint=f"start them with {start}, or run the steps in this process "
                              "with `shoplake run --local`")
        self.workers = workers


def workers(settings: Settings) -> list[WorkerState]:
    """Every worker this stack knows of, alive or not."""
    if settings.mode == "compose":
        return _compose_workers(settings)
    return _native_workers(settings)


def alive(found: list[WorkerState]) -> list[WorkerState]:
    return [w for w in found if w.alive]


def require_workers(settings: Settings) -> list[WorkerState]:
    """The workers alive now; NoWorkerError when there is none."""
    found = workers(settings)
    if settings.mode == "compose" and not found:
        deadline = time.monotonic() + FIRST_HEARTBEAT_WAIT_S
        while not found and time.monotonic() < deadline:
            time.sleep(1.0)
            found = workers(settings)
    if not alive(found):
        raise NoWorkerError(found, settings.mode)
    return alive(found)


def status_file(settings: Settings, name: str) -> Path:
    """Where worker `name` writes its status (what it serves, when it last polled)."""
    return settings.state_dir / "run" / f"{name}.status.json"


def read_status(settings: Settings, name: str) -> dict[str, Any] | None:
    try:
        return json.loads(status_file(settings, name).read_text())
    except (OSError, ValueError):
        return None


def _native_workers(settings: Settings) -> list[WorkerState]:
    from pipeline.stack.manager import process_of
    from pipeline.stack.workers import worker_services

    out = []
    names = set()
    for svc in worker_services(settings):
        names.add(svc.name)
        proc = process_of(settings, svc)
        if proc.running() is None:
            state = ("crashed" if proc.record() is not None and not svc.stopped_cleanly()
                     else "stopped")
            out.append(WorkerState(svc.name, False, state))
            continue
        status = read_status(settings, svc.name) or {}
        out.append(_by_status(svc.name, status, running=True))
    # Workers started by hand (`shoplake worker`) on this state folder count too.
    for path in sorted((settings.state_dir / "run").glob("*.status.json")):
        name = path.name.removesuffix(".status.json")
        if name in names:
            continue
        status = read_status(settings, name) or {}
        if status and _pid_alive(int(status.get("pid", 0))):
            out.append(_by_status(name, status, running=True))
    return out


def _by_status(name: str, status: dict[str, Any], running: bool) -> WorkerState:
    if status.get("stopped") or status.get("stopping"):
        return WorkerState(name, False, "stopping")
    silent = time.time() - float(status.get("at", 0))
    if not status or silent >= STALE_S:
        return WorkerState(name, False, f"not reporting for {silent:.0f} s" if status
                           else "starting")
    return WorkerState(name, running, "running")


def _pid_alive(pid: int) -> bool:
    import psutil

    return pid > 0 and psutil.pid_exists(pid)


def _compose_workers(settings: Settings) -> list[WorkerState]:
    from pipeline.aws.s3 import get_json, list_objects

    bucket = settings.lake.artifacts_bucket
    out = []
    for key in sorted(list_objects(settings, bucket, HEARTBEAT_PREFIX)):
        beat = get_json(settings, bucket, key) or {}
        out.append(_by_status(str(beat.get("name") or key.rsplit("/", 1)[-1]), beat,
                              running=True))
    return out


def heartbeat(settings: Settings, status: dict[str, Any]) -> None:
    """A compose worker's heartbeat object (see the module's docstring)."""
    from pipeline.aws.s3 import put_json

    put_json(settings, settings.lake.artifacts_bucket,
             f"{HEARTBEAT_PREFIX}{status['name']}.json", json.loads(json.dumps(status)))


class WorkerWatch:
    """While a run is followed: a message when the last worker dies, again every
    `remind_s` while none is alive, and when one is back."""

    def __init__(self, settings: Settings, every_s: float = 5.0,
                 remind_s: float = 60.0) -> None:
        self.settings, self.every_s, self.remind_s = settings, every_s, remind_s
        self._next = time.monotonic() + every_s
        self._down_since: float | None = None
        self._reminded = 0.0

    def check(self) -> str | None:
        now = time.monotonic()
        if now < self._next:
            return None
        self._next = now + self.every_s
        try:
            found = workers(self.settings)
        except Exception:  # noqa: BLE001 - LocalStack restarting, say: ask again later
            return None
        living = alive(found)
        start = ("`docker compose up -d worker`" if self.settings.mode == "compose"
                 else "`shoplake stack up`")
        if not living and self._down_since is None:
            self._down_since = self._reminded = now
            return (f"no worker is alive ({', '.join(str(w) for w in found) or 'none'}): "
                    f"the run's tasks wait until one is; start them with {start}")
        if not living and now - self._reminded >= self.remind_s:
            self._reminded = now
            return (f"still no worker alive after {now - self._down_since:.0f}s: the run "
                    f"waits (up to orchestration.task_timeout_s, "
                    f"{self.settings.orchestration.task_timeout_s} s, per task); start them "
                    f"with {start}")
        if living and self._down_since is not None:
            self._down_since = None
            return f"{', '.join(f'`{w.name}`' for w in living)} alive again: the run goes on"
        return None
        self._next = time.monotonic() + self.every_s
        try:
            found = workers(self.settings)
        except Exception:  # noqa: BLE001 - LocalStack restarting, say: ask again later
            return None
        living = alive(found)
        if not living and not self._down:
            self._down = True
            start = ("`docker compose up -d worker`" if self.settings.mode == "compose"
                     else "`shoplake stack up`")
            return (f"no worker is alive ({', '.join(str(w) for w in found) or 'none'}): "
                    f"the run's tasks wait until one is; start them with {start}")
        if living and self._down:
            self._down = False
            return f"{', '.join(f'`{w.name}`' for w in living)} alive again: the run goes on"
        return None
