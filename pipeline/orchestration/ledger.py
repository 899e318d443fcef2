"""The run ledger: every run, however it ends, counted once.

Pipeline Health used to learn about runs from Step Functions alone, which forgets its
executions when LocalStack restarts, and kept them in `sales.pipeline_runs`, which
`warehouse init --reset` drops; a run killed together with LocalStack was recorded nowhere.
So each run is written down as it starts, in the warehouse's database but outside `sales`
(schema `ops`, which no reset drops):

- a state-machine run when a worker takes its first task (`seen`), a local run when
  `run --local` takes the run lease (`begin`);
- its end by its report step or by `run --local` (`end`);
- a run that stays RUNNING here after its execution ended without a report, or after
  Step Functions forgot it (LocalStack restarted), or after its local process died, is
  settled (`settle`: at every report and at `stack up`) with what Step Functions still
  knows, else as FAILED, "lost": it ended with its stack and no outcome was recorded.

`publish` copies the ledger into `sales.pipeline_runs`, so the dashboard counts every run
again after a reset. Writing to the ledger never fails a run: a ledger that cannot be
reached is a warning.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pipeline.config import Settings
from pipeline.errors import first_line

LOG = logging.getLogger(__name__)

SCHEMA = "ops"

DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.run_ledger (
    run_id       text PRIMARY KEY,
    kind         text NOT NULL,          -- 'state machine' or 'local'
    status       text NOT NULL,          -- RUNNING, SUCCEEDED, FAILED, ABORTED, TIMED_OUT
    trigger      text,
    started_at   timestamp NOT NULL,
    stopped_at   timestamp,
    last_step    text,
    failed_state text,
    error        text,
    updated_at   timestamp NOT NULL
);
COMMENT ON TABLE {SCHEMA}.run_ledger IS 'Every pipeline run, written as it starts and as it
ends: what Pipeline Health counts (sales.pipeline_runs is published from it).';
"""

LOST = "lost: it ended with its stack (LocalStack or its process was killed) before it " \
       "could record an outcome"

ENDED = ("SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT")

_ready: set[tuple[str, int, str]] = set()
"""Servers whose ledger table this process created already (one CREATE per process)."""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _session(settings: Settings) -> Any:
    from pipeline.warehouse.load import session

    return session(settings)


def _ensure(conn: Any, settings: Settings) -> None:
    key = (settings.postgres.host, settings.postgres.port, settings.postgres.database)
    if key in _ready:
        return
    with conn.cursor() as cur:
        cur.execute(DDL)
    conn.commit()
    _ready.add(key)


def _write(settings: Settings, what: str, sql: str, params: tuple[Any, ...]) -> bool:
    try:
        with _session(settings) as conn:
            _ensure(conn, settings)
            with conn.cursor() as cur:
                cur.execute(sql, params)
            conn.commit()
        return True
    except Exception as exc:  # noqa: BLE001 - the ledger never fails a run
        LOG.warning("run ledger: %s not recorded: %s", what, first_line(exc))
        return False


def begin(settings: Settings, run_id: str, kind: str, trigger: str | None = None,
          started_at: datetime | None = None) -> bool:
    """A run started (idempotent: a second call keeps the first start)."""
    now = _now()
    return _write(settings, f"the start of run {run_id}", f"""
        INSERT INTO {SCHEMA}.run_ledger (run_id, kind, status, trigger, started_at,
                                         updated_at)
        VALUES (%s, %s, 'RUNNING', %s, %s, %s)
        ON CONFLICT (run_id) DO UPDATE SET
          trigger = COALESCE({SCHEMA}.run_ledger.trigger, EXCLUDED.trigger)""",
                  (run_id, kind, trigger, started_at or now, now))


def seen(settings: Settings, run_id: str, step: str) -> bool:
    """A worker took a task of state-machine run `run_id`: started if new, `step` noted
    (what a lost run was doing)."""
    now = _now()
    return _write(settings, f"step {step} of run {run_id}", f"""
        INSERT INTO {SCHEMA}.run_ledger (run_id, kind, status, started_at, last_step,
                                         updated_at)
        VALUES (%s, 'state machine', 'RUNNING', %s, %s, %s)
        ON CONFLICT (run_id) DO UPDATE SET last_step = EXCLUDED.last_step,
                                           updated_at = EXCLUDED.updated_at""",
                  (run_id, now, step, now))


_NOW: Any = object()


def end(settings: Settings, run_id: str, status: str, *, kind: str = "state machine",
        trigger: str | None = None, started_at: datetime | None = None,
        stopped_at: datetime | None = _NOW, failed_state: str | None = None,
        error: str | None = None, only_running: bool = False) -> bool:
    """A run ended with `status` (its report, or `run --local`) at `stopped_at` (now; None:
    not known). `only_running`: settle a row still RUNNING, never overwrite an outcome."""
    now = _now()
    stop = now if stopped_at is _NOW else stopped_at
    return _write(settings, f"the end of run {run_id}", f"""
        INSERT INTO {SCHEMA}.run_ledger AS r (run_id, kind, status, trigger, started_at,
            stopped_at, failed_state, error, updated_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (run_id) DO UPDATE SET
          status = EXCLUDED.status, stopped_at = EXCLUDED.stopped_at,
          trigger = COALESCE(r.trigger, EXCLUDED.trigger),
          started_at = LEAST(r.started_at, EXCLUDED.started_at),
          failed_state = EXCLUDED.failed_state, error = EXCLUDED.error,
          updated_at = EXCLUDED.updated_at""" + (" WHERE r.status = 'RUNNING'" if only_running
                                                else ""),
                  (run_id, kind, status, trigger, started_at or now, stop,
                   failed_state, (error or "")[:1000] or None, now))


def rows(settings: Settings, days: int = 31) -> list[dict[str, Any]]:
    """The ledger's runs of the last `days`, newest first."""
    with _session(settings) as conn:
        _ensure(conn, settings)
        with conn.cursor() as cur:
            cur.execute(f"""
                SELECT run_id, kind, status, trigger, started_at, stopped_at, last_step,
                       failed_state, error, updated_at
                FROM {SCHEMA}.run_ledger
                WHERE started_at > (now() AT TIME ZONE 'UTC') - %s * interval '1 day'
                ORDER BY started_at DESC""", (days,))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _local_alive(settings: Settings, run_id: str) -> bool:
    """Whether the process of local run `run_id` still holds its run lease (the lease's
    connection names the run; the server drops it when the process dies)."""
    with _session(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_stat_activity WHERE application_name LIKE %s",
                    (f"%{run_id}%",))
        return cur.fetchone() is not None


def _execution(settings: Settings, run_id: str) -> dict[str, Any] | None:
    """What Step Functions says of `run_id` now; None when it does not know it (forgot
    it on a restart). Raises when Step Functions cannot be asked."""
    from botocore.exceptions import ClientError

    from pipeline.aws.clients import aws_client
    from pipeline.orchestration.runs import execution_arn

    try:
        return aws_client(settings, "stepfunctions").describe_execution(
            executionArn=execution_arn(settings, run_id))
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("ExecutionDoesNotExist",
                                             "StateMachineDoesNotExist"):
            return None
        raise


def settle(settings: Settings, skip: str | None = None) -> list[str]:
    """End the runs still RUNNING here that are not running any more (see the module's
    docstring); `skip` is the run asking (it is still running). The ids settled."""
    settled = []
    _import_executions(settings, skip)
    try:
        open_runs = [r for r in rows(settings) if r["status"] == "RUNNING"
                     and r["run_id"] != skip]
    except Exception as exc:  # noqa: BLE001 - never fails a report or `stack up`
        LOG.warning("run ledger: not read: %s", first_line(exc))
        return settled
    for run in open_runs:
        try:
            if run["kind"] == "local":
                if _local_alive(settings, run["run_id"]):
                    continue
                status, stopped, error = "FAILED", None, LOST
            else:
                described = _execution(settings, run["run_id"])
                if described is not None and described["status"] == "RUNNING":
                    continue
                if described is None:  # last seen: when a worker last took its task
                    status, stopped, error = "FAILED", run["updated_at"], LOST
                else:
                    status = described["status"]
                    stop = described.get("stopDate")
                    stopped = (stop.astimezone(UTC).replace(tzinfo=None) if stop
                               else run["updated_at"])
                    error = described.get("error") or (
                        "ended without its report" if status != "SUCCEEDED" else None)
        except Exception as exc:  # noqa: BLE001 - Step Functions down: settle later
            LOG.debug("run ledger: %s not settled: %s", run["run_id"], first_line(exc))
            continue
        end(settings, run["run_id"], status, kind=run["kind"], started_at=run["started_at"],
            stopped_at=stopped, error=error, only_running=True,
            failed_state=run["last_step"] if status != "SUCCEEDED" else None)
        LOG.warning("run %s settled as %s: %s", run["run_id"], status, error or "succeeded")
        settled.append(run["run_id"])
    return settled


def _import_executions(settings: Settings, skip: str | None) -> None:
    """Runs Step Functions still knows that no worker wrote down (it never reached a
    task: workers down, or ended in Debounce): written down now, with their outcome."""
    from pipeline.orchestration.names import RECENT_RUNS
    from pipeline.orchestration.runs import executions

    try:
        known = {r["run_id"] for r in rows(settings)}
        listed = executions(settings, RECENT_RUNS)
    except Exception as exc:  # noqa: BLE001 - Step Functions down: nothing to import
        LOG.debug("run ledger: executions not imported: %s", first_line(exc))
        return
    for ex in listed:
        if ex["skipped"] or ex["name"] in known or ex["name"] == skip:
            continue
        start = ex["start"].astimezone(UTC).replace(tzinfo=None)
        if ex["status"] == "RUNNING":
            begin(settings, ex["name"], "state machine", ex["trigger"] or None, start)
        else:
            stop = ex["stop"].astimezone(UTC).replace(tzinfo=None) if ex["stop"] else None
            end(settings, ex["name"], ex["status"], trigger=ex["trigger"] or None,
                started_at=start, stopped_at=stop, error=ex["error"], only_running=True)


def publish(settings: Settings) -> int:
    """Copy the ledger into `sales.pipeline_runs` (what the dashboards read); the rows
    written. Never raises: a ledger not published is a warning, and the next report or
    `stack up` publishes it."""
    try:
        ledger = rows(settings)
        if not ledger:
            return 0
        with _session(settings) as conn, conn.cursor() as cur:
            write_pipeline_runs(cur, ledger, _now())
            conn.commit()
    except Exception as exc:  # noqa: BLE001 - the dashboards catch up at the next publish
        LOG.warning("the run ledger was not published: %s", first_line(exc))
        return 0
    return len(ledger)


def write_pipeline_runs(cur: Any, runs: list[dict[str, Any]], now: datetime) -> None:
    """Upsert `runs` (ledger- or report-shaped rows) into `sales.pipeline_runs`: an ended
    status is never overwritten by RUNNING, the earliest start and a known newest change
    are kept."""
    from psycopg2.extras import execute_values

    execute_values(cur, """
        INSERT INTO sales.pipeline_runs AS r (run_id, status, trigger, started_at,
            stopped_at, seconds, failed_state, error, newest_change_ts, recorded_at)
        VALUES %s
        ON CONFLICT (run_id) DO UPDATE SET
          status = CASE WHEN EXCLUDED.status = 'RUNNING' THEN r.status
                        ELSE EXCLUDED.status END,
          trigger = COALESCE(EXCLUDED.trigger, r.trigger),
          started_at = LEAST(EXCLUDED.started_at, r.started_at),
          stopped_at = COALESCE(EXCLUDED.stopped_at, r.stopped_at),
          seconds = COALESCE(EXCLUDED.seconds, r.seconds),
          failed_state = COALESCE(EXCLUDED.failed_state, r.failed_state),
          error = COALESCE(EXCLUDED.error, r.error),
          newest_change_ts = COALESCE(EXCLUDED.newest_change_ts, r.newest_change_ts),
          recorded_at = EXCLUDED.recorded_at""",
                   [(r["run_id"], r["status"], r.get("trigger"), r["started_at"],
                     r.get("stopped_at"), _seconds(r), r.get("failed_state"), r.get("error"),
                     r.get("newest_change_ts"), now) for r in runs])


def _seconds(row: dict[str, Any]) -> float | None:
    if row.get("stopped_at") and row.get("started_at"):
        return round((row["stopped_at"] - row["started_at"]).total_seconds(), 1)
    return None
