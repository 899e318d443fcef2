"""Pipeline runs through Step Functions: start one, follow it, list recent ones.

A run is an execution of the state machine; its id is the execution's name
(`run-20261201-213000-1a2b`), which every step receives and records where it writes
(silver snapshots, quarantine, staging stamps).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from pipeline.aws.clients import aws_client, ensure_answering
from pipeline.config import Settings
from pipeline.errors import TerminalError
from pipeline.orchestration import asl, history
from pipeline.orchestration.names import state_machine_arn
from pipeline.orchestration.report import load_run, write_report


def new_run_id() -> str:
    return f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def start_run(settings: Settings, trigger: str = "manual", run_id: str | None = None,
              full: bool = False) -> str:
    """Start an execution; its ARN. `full`: staging takes the full state (`run --full`)."""
    ensure_answering(settings)  # never a start_execution that lands after we gave up
    sfn = aws_client(settings, "stepfunctions")
    try:
        return sfn.start_execution(
            stateMachineArn=state_machine_arn(settings), name=run_id or new_run_id(),
            input=json.dumps(asl.execution_input(trigger, full=full)))["executionArn"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "StateMachineDoesNotExist":
            raise TerminalError(f"the state machine `{settings.orchestration.state_machine}` "
                                "does not exist", hint="`shoplake stack up` provisions it "
                                "(LocalStack forgets it when it restarts)") from exc
        raise


def follow(settings: Settings, execution_arn: str, on_update: Callable[[history.Run], None],
           interval_s: float = 0.5, timeout_s: float | None = None,
           on_note: Callable[[str], None] | None = None) -> history.Run:
    """Call `on_update` with the run's graph until the execution ends; the final graph.
    The run's report is written again once it ended (complete). `on_note` hears when the
    workers die and when they come back (`liveness.WorkerWatch`)."""
    from pipeline.orchestration.liveness import WorkerWatch

    deadline = time.monotonic() + (timeout_s or settings.orchestration.task_timeout_s * 4)
    watch = WorkerWatch(settings) if on_note is not None else None
    while True:
        run = load_run(settings, execution_arn)
        on_update(run)
        note = watch.check() if watch is not None and run.status == "RUNNING" else None
        if note:
            on_note(note)
        if run.status != "RUNNING":
            write_report(settings, execution_arn)
            return run
        if time.monotonic() > deadline:
            raise TerminalError(f"run `{run.name}` is still running after "
                                f"{timeout_s or 0:.0f}s", hint="follow it with "
                                f"`shoplake runs show {run.name}`")
        time.sleep(interval_s)


def execution_arn(settings: Settings, run_id: str) -> str:
    if run_id.startswith("arn:"):
        return run_id
    o = settings.orchestration
    return (f"arn:aws:states:{settings.localstack.region}:{o.account_id}:execution:"
            f"{o.state_machine}:{run_id}")


def executions(settings: Settings, limit: int = 20) -> list[dict[str, Any]]:
    """The latest executions as Step Functions reports them, newest first: name, status,
    trigger, start and stop (aware datetimes; stop None while running), error, and
    `skipped`: the older run in progress when this one ended as AlreadyRunning, or None."""
    sfn = aws_client(settings, "stepfunctions")
    try:
        listed = sfn.list_executions(stateMachineArn=state_machine_arn(settings),
                                     maxResults=limit)["executions"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "StateMachineDoesNotExist":
            return []
        raise
    out = []
    for ex in listed:
        described = sfn.describe_execution(executionArn=ex["executionArn"])
        out.append({"name": ex["name"], "status": ex["status"],
                    "skipped": already_running(ex["name"],
                                               json.loads(described.get("output") or "{}")),
                    "trigger": json.loads(described.get("input") or "{}").get("trigger", ""),
                    "start": ex["startDate"], "stop": ex.get("stopDate"),
                    "error": described.get("error") or None})
    return out


def already_running(name: str, output: Any) -> str | None:
    """The older run `name` found in progress (its Guard's result), if it did nothing."""
    guard = output.get("guard") if isinstance(output, dict) else None
    oldest = (guard or {}).get("oldest") if isinstance(guard, dict) else None
    other = oldest.get("Name") if isinstance(oldest, dict) else None
    return other if other and other != name else None


def recent_runs(settings: Settings, limit: int = 20) -> list[dict[str, Any]]:
    """The latest executions, newest first: id, status, trigger, start, duration."""
    return [{"run": ex["name"],
             "status": "SKIPPED" if ex["skipped"] else ex["status"], "trigger": ex["trigger"],
             "started": ex["start"].strftime("%Y-%m-%d %H:%M:%S"),
             "seconds": round((ex["stop"] - ex["start"]).total_seconds(), 1)
             if ex["stop"] else None} for ex in executions(settings, limit)]
