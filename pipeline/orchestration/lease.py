"""The run lease: one pipeline run at a time, whoever starts it.

Two runs at once interleave their jobs (one truncates the staging table the other is
copying, one deletes the silver snapshot the other reads). A run therefore holds a
PostgreSQL advisory lock on a connection of its own for as long as it runs: the server
releases it when that connection ends, so a run that is killed (even with SIGKILL) never
leaves a stale lease behind. A second run waits for it up to a limit, or is refused with
a message naming the holder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC

import psycopg2

from pipeline.config import Settings
from pipeline.errors import TransientError
from pipeline.progress import Progress, SilentProgress
from pipeline.warehouse.errors import from_psycopg
from pipeline.warehouse.load import connect

LOG = logging.getLogger(__name__)

RUN_LEASE_KEY = 0x73686F706C616B  # "shoplak" as a number: the advisory lock's key
"""pg_advisory_lock key of the run lease (distinct from the DDL lock's)."""

_HELD_LOCK = threading.Lock()
_held = 0
"""How many blocks of this process are inside the lease (a nested take passes through)."""


@dataclass(frozen=True)
class Holder:
    """Who holds the lease, as its connection told the server."""

    name: str
    pid: int | None
    since: str

    def __str__(self) -> str:
        return f"{self.name} (since {self.since} UTC)"


class RunInProgressError(TransientError):
    """Another run holds the lease: this one would interleave with it."""

    def __init__(self, holder: Holder | None, waited_s: float) -> None:
        who = str(holder) if holder else "another process"
        waited = f" after waiting {waited_s:.0f}s" if waited_s else ""
        super().__init__(f"another pipeline run holds the run lease{waited}: {who}",
                         hint="wait for it to finish, or rerun with `--wait SECONDS` "
                              "(SHOPLAKE_ORCHESTRATION_RUN_LOCK_WAIT_S) to queue behind it")
        self.holder = holder


def _holder(conn: psycopg2.extensions.connection) -> Holder | None:
    with conn.cursor() as cur:
        cur.execute("SELECT a.application_name, a.pid, "
                    "to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') "
                    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.objid = %s AND l.classid = %s",
                    (RUN_LEASE_KEY & 0xFFFFFFFF, RUN_LEASE_KEY >> 32))
        row = cur.fetchone()
    return Holder(row[0] or "a shoplake run", row[1], row[2]) if row else None


@contextlib.contextmanager
def run_lease(settings: Settings, what: str, wait_s: float | None = None,
              progress: Progress | None = None, shared: bool = False) -> Iterator[None]:
    """Hold the run lease for the block; `what` names this run to others (`shoplake run`).

    Waits up to `wait_s` (default `orchestration.run_lock_wait_s`) for a holder to finish,
    then raises RunInProgressError. Taking it again inside the block (a run calling a job
    that takes it too) is a no-op. `shared`: the steps of one Step Functions execution run
    side by side (on several workers) and hold it together; the Guard state keeps
    executions from overlapping, the shared lease keeps a hand-started job out of them.
    """
    if not shared and _held_here():
        _enter()
        try:
            yield
        finally:
            _leave()
        return
    progress = progress or SilentProgress()
    wait_s = settings.orchestration.run_lock_wait_s if wait_s is None else wait_s
    conn = connect(settings)
    conn.autocommit = True
    name = f"{what} pid {os.getpid()} on {socket.gethostname()}"[:63]
    try:
        with conn.cursor() as cur:
            cur.execute("SET application_name = %s", (name,))
        began = time.monotonic()
        waiting = False
        while True:
            with conn.cursor() as cur:
                cur.execute(f"SELECT pg_try_advisory_lock{'_shared' if shared else ''}(%s)",
                            (RUN_LEASE_KEY,))
                (got,) = cur.fetchone()
            execution = None
            if got and not shared:
                # A state-machine run holds the lease per step, with gaps between its
                # steps: it is in progress for as long as its execution is RUNNING.
                execution = running_execution(settings)
                if execution is not None:
                    with conn.cursor() as cur:
                        cur.execute("SELECT pg_advisory_unlock(%s)", (RUN_LEASE_KEY,))
                    got = False
            if got:
                break
            holder = execution or _holder(conn)
            waited = time.monotonic() - began
            if waited >= wait_s:
                if waiting:
                    progress.finish("lease", ok=False, message=f"gave up after {waited:.0f}s")
                raise RunInProgressError(holder, waited)
            if not waiting:
                waiting = True
                progress.start("lease", f"waiting for the run lease held by {holder}")
            time.sleep(min(1.0, max(0.05, wait_s - waited)))
        if waiting:
            progress.finish("lease", message=f"run lease taken after "
                                             f"{time.monotonic() - began:.0f}s")
        LOG.info("run lease taken by %s%s", name, " (shared)" if shared else "")
        if not shared:
            _enter()
        try:
            yield
        finally:
            if not shared:
                _leave()
            with contextlib.suppress(psycopg2.Error):
                with conn.cursor() as cur:
                    cur.execute(f"SELECT pg_advisory_unlock{'_shared' if shared else ''}(%s)",
                                (RUN_LEASE_KEY,))
    except psycopg2.Error as exc:
        raise from_psycopg(exc, "taking the run lease") from exc
    finally:
        conn.close()


def running_execution(settings: Settings) -> Holder | None:
    """The state-machine run in progress, if Step Functions has one RUNNING.

    None when LocalStack cannot say (down, or no state machine yet): then no execution can
    be making progress either, and the lease alone decides.
    """
    from pipeline.aws.clients import aws_client
    from pipeline.orchestration.names import state_machine_arn

    try:
        listed = aws_client(settings, "stepfunctions").list_executions(
            stateMachineArn=state_machine_arn(settings), statusFilter="RUNNING",
            maxResults=100)["executions"]
    except Exception as exc:  # noqa: BLE001 - unreachable or not provisioned: nothing runs
        LOG.debug("no running execution known: %s", exc)
        return None
    if not listed:
        return None
    oldest = listed[-1]  # newest first; the oldest is the one that works (its Guard says)
    started = oldest["startDate"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return Holder(f"state-machine run `{oldest['name']}` (follow it with `shoplake runs "
                  f"show {oldest['name']}`)", None, started)


def _held_here() -> bool:
    with _HELD_LOCK:
        return _held > 0


def _enter() -> None:
    global _held
    with _HELD_LOCK:
        _held += 1


def _leave() -> None:
    global _held
    with _HELD_LOCK:
        _held -= 1
