"""The pipeline's steps as a public registry: what a Step Functions task does, by name.

Each step is a function (settings, task input as JSON, progress) -> JSON result with what a
graph should show (rows, files, seconds). Each stands in for the AWS integration its state
uses when the state machine is bound for AWS, and takes the same Parameters:

  wait_for_cdc_sync     DMS task status (aws-sdk:databasemigration:describeReplicationTasks)
  replicate_now         a DMS sync now (aws-sdk:databasemigration:startReplicationTask)
  start_crawler         glue:startCrawler
  get_crawler           glue:getCrawler (the crawl ran in start_crawler: READY at once)
  glue_job              glue:startJobRun.sync (JobName, Arguments with --table etc.)
  execute_statement     redshift-data:executeStatement (the CALL of a load procedure)
  describe_statement    redshift-data:describeStatement
  quality_and_reconcile a quality gate: reconcile, and no rows held in quarantine
  check_arrivals        did bronze get new files since this run crawled (on-arrival mode)?
  write_run_report      the run's HTML report, from its execution history

Every step is idempotent: retried with the same input it does its work once. Errors map to
Step Functions error names (`error_name`): Shoplake.Transient (retried), Shoplake.Terminal
(not retried), Shoplake.QualityFailed, and States.TaskFailed for anything unexpected, with
the traceback's last line as the cause.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.config import Settings
from pipeline.errors import QualityFailedError, TerminalError, first_line
from pipeline.progress import Progress

LOG = logging.getLogger(__name__)

StepFunc = Callable[[Settings, dict[str, Any], Progress], dict[str, Any]]


@dataclass(frozen=True)
class Step:
    name: str
    func: StepFunc
    doc: str


TRANSIENT, TERMINAL, QUALITY = "Shoplake.Transient", "Shoplake.Terminal", "Shoplake.QualityFailed"
UNEXPECTED = "States.TaskFailed"
MAX_CAUSE = 32768
"""Step Functions' limit on a failure's cause."""


def error_name(exc: BaseException, settings: Settings | None = None) -> tuple[str, str]:
    """(Step Functions error name, cause) for an exception raised by a step."""
    from pipeline.classify import typed_error

    if isinstance(exc, QualityFailedError):
        return QUALITY, str(exc)[:MAX_CAUSE]
    typed = typed_error(exc, settings)
    if typed is not None:
        return (TRANSIENT if typed.transient else TERMINAL), str(typed)[:MAX_CAUSE]
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return UNEXPECTED, last[:MAX_CAUSE]


def _run_id(task: dict[str, Any]) -> str | None:
    return task.get("run_id") or (task.get("Arguments") or {}).get("--run_id")


# -- the DMS stand-in ----------------------------------------------------------------------------
def wait_for_cdc_sync(settings: Settings, task: dict[str, Any],
                      progress: Progress) -> dict[str, Any]:
    """A follower runs: wait until it has replicated what is committed now. No follower:
    `{"follower": false}` at once (the state machine then goes to ReplicateNow)."""
    from pipeline.cdc import sync_with_follower

    report = sync_with_follower(settings, progress)
    if report is None:
        return {"follower": False, "synced": False}
    return {"follower": True, "synced": True, "position": report.position,
            "seconds": round(report.seconds, 3)}


def replicate_now(settings: Settings, task: dict[str, Any], progress: Progress
                  ) -> dict[str, Any]:
    """Replicate what is committed now (`shoplake cdc --once`): a full load if no checkpoint."""
    from pipeline import cdc

    report = cdc.run(settings, once=True, progress=progress)
    return {"changes": report.changes, "files": report.files, "full_load": report.full_load,
            "full_load_rows": sum(report.full_load_rows.values()),
            "position": report.position, "seconds": round(report.seconds, 3)}


# -- the Glue stand-ins ---------------------------------------------------------------------------
def start_crawler(settings: Settings, task: dict[str, Any], progress: Progress
                  ) -> dict[str, Any]:
    from pipeline.catalog import crawl

    began = time.monotonic()
    results = crawl(settings, progress)
    return {"Crawler": task.get("Name", settings.glue.crawler), "tables": len(results),
            "schema_changes": sum(r.changed for r in results),
            "files": sum(r.files for r in results),
            "rejected": sum(len(r.rejected) for r in results),
            "crawled_at": time.time(), "seconds": round(time.monotonic() - began, 3)}


def get_crawler(settings: Settings, task: dict[str, Any], progress: Progress
                ) -> dict[str, Any]:
    """glue:getCrawler's answer: the crawl ran inside start_crawler, so it is READY."""
    return {"Crawler": {"Name": task.get("Name", settings.glue.crawler), "State": "READY",
                        "LastCrawl": {"Status": "SUCCEEDED"}}}


def glue_job(settings: Settings, task: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """glue:startJobRun.sync: run JobName with its Arguments (`--key value`): a Spark job in
    this process's warm SparkSession, or one of the Python shell jobs of `PYTHON_JOBS`."""
    from pipeline.glue.jobs import run_job, summarize

    name = task["JobName"]
    args = {k.removeprefix("--"): str(v) for k, v in (task.get("Arguments") or {}).items()}
    if name in PYTHON_JOBS:
        out = PYTHON_JOBS[name](settings, args, progress)
        return {"JobName": name, "JobRunId": f"jr_{uuid.uuid4().hex}",
                "JobRunState": "SUCCEEDED", **out}
    result = run_job(settings, name, extra_args=args, progress=progress)
    metrics = result.metrics
    out: dict[str, Any] = {"JobName": name, "JobRunId": f"jr_{uuid.uuid4().hex}",
                           "JobRunState": "SUCCEEDED", "seconds": round(result.seconds, 3),
                           "summary": summarize(metrics)}
    if "table" in metrics:
        out |= {k: metrics.get(k) for k in ("table", "files", "changes", "quarantined",
                                             "held", "rows", "mode")}
        if metrics.get("seconds"):
            out["phases"] = metrics["seconds"]  # read, plan, commit, held_and_log, properties
        out["rows_in"], out["rows_out"] = metrics.get("changes"), metrics.get("rows")
    if "staged" in metrics:
        out["staged"] = [{k: s[k] for k in ("staging", "rows", "copied", "mode", "keys", "why")
                          if k in s} for s in metrics["staged"]]
        out["rows_out"] = sum(s["rows"] for s in metrics["staged"])
    if metrics.get("warnings"):
        out["warnings"] = metrics["warnings"]
    return out


# -- the Redshift Data API stand-in ---------------------------------------------------------------
def _statement_key(statement_id: str) -> str:
    return f"_shoplake/redshift-data/{statement_id}.json"


def execute_statement(settings: Settings, task: dict[str, Any], progress: Progress
                      ) -> dict[str, Any]:
    """redshift-data:executeStatement of `CALL sales.<procedure>(:run_id)` (the run id among
    the statement's Parameters, as the Data API takes it), run to completion here
    (the warehouse is local); describe_statement then reports it FINISHED."""
    from pipeline.aws.s3 import put_json
    from pipeline.warehouse import PROCEDURES, call, procedure_state
    from pipeline.warehouse.model import SCHEMA

    sql = " ".join(str(task.get("Sql", "")).split()).removesuffix(";")
    params = {p.get("name"): p.get("value") for p in task.get("Parameters") or []}
    match = re.fullmatch(rf"CALL {SCHEMA}\.(\w+)\((:run_id)?\)", sql)
    if match is None or match.group(1) not in PROCEDURES:
        raise TerminalError(f"executeStatement may only CALL a load procedure, got `{sql}`",
                            hint=f"`CALL {SCHEMA}.<procedure>(:run_id)` with one of: "
                                 f"{', '.join(PROCEDURES)}")
    procedure = match.group(1)
    run_id = params.get("run_id") if match.group(2) else None
    if match.group(2) and not run_id:
        raise TerminalError(f"`{sql}` names :run_id but the statement's Parameters have none")
    began = time.monotonic()
    progress.update("statement", description=sql.replace(":run_id", f"'{run_id}'"))
    warnings = call(settings, procedure, run_id)
    statement_id = str(uuid.uuid4())
    seconds = round(time.monotonic() - began, 3)
    put_json(settings, settings.lake.artifacts_bucket, _statement_key(statement_id),
             {"Id": statement_id, "Status": "FINISHED", "QueryString": sql,
              "Duration": seconds, "run_id": _run_id(task)})
    out: dict[str, Any] = {"Id": statement_id, "procedure": procedure, "seconds": seconds}
    merged = procedure_state(settings, procedure)
    if merged:  # full, or delta with the keys it merged
        out["mode"] = merged["mode"]
        if merged["keys"] is not None:
            out["keys"] = merged["keys"]
    if warnings:
        out["warnings"] = warnings  # the run prints them (`shoplake run`, `runs show`)
    return out


def describe_statement(settings: Settings, task: dict[str, Any], progress: Progress
                       ) -> dict[str, Any]:
    from pipeline.aws.s3 import get_json

    statement = get_json(settings, settings.lake.artifacts_bucket,
                         _statement_key(str(task.get("Id", ""))))
    if statement is None:
        raise TerminalError(f"no statement `{task.get('Id')}` was executed",
                            hint="describeStatement follows executeStatement in the run")
    return statement


# -- quality, arrivals, reporting ----------------------------------------------------------------
def quality_and_reconcile(settings: Settings, task: dict[str, Any], progress: Progress
                          ) -> dict[str, Any]:
    """Gold equals the source (reconcile), and no row waits in quarantine (unless
    reconcile.on_quarantine is `warn`); Shoplake.QualityFailed otherwise."""
    from pipeline.warehouse.reconcile import reconcile_run

    report = reconcile_run(settings, progress, run_id=_run_id(task))
    out = {"ok": report.ok, "reconcile": report.kind, "why": report.why, "days": report.days,
           "rows": sum(report.rows_compared.values()),
           "differences": len(report.differences) + sum(report.row_counts.values()),
           "held": len(report.held)}
    if not report.ok:
        shown = "; ".join([f"{d.scope} {d.key} {d.metric}: source {d.source}, gold {d.gold}"
                           for d in report.differences[:5]]
                          + [r.describe() for r in report.rows[:5]])
        raise QualityFailedError(f"gold does not match the source: {out['differences']} "
                                 f"difference(s): {shown}",
                                 hint="`shoplake reconcile` lists them")
    if report.behind and settings.reconcile.on_quarantine == "fail":
        raise QualityFailedError(f"gold is behind the source: {report.held_summary()} held "
                                 "in quarantine", hint="`shoplake quarantine` lists them")
    return out


def _epoch(value: Any) -> float:
    """Seconds since the epoch from the local crawl's number or Glue's LastCrawl.StartTime
    (an ISO 8601 timestamp on AWS); nothing given is 0, so every file counts as newer."""
    if value in (None, ""):
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    from datetime import UTC, datetime

    ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


def check_arrivals(settings: Settings, task: dict[str, Any], progress: Progress
                   ) -> dict[str, Any]:
    """Whether bronze got files after this run's crawl (`crawled_at`): then the run goes
    round again, so no change waits for another trigger once files stop arriving."""
    from pipeline.aws.clients import aws_client

    since = _epoch(task.get("crawled_at"))
    s3 = aws_client(settings, "s3")
    newer = 0
    for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=settings.lake.bronze_bucket, Prefix=f"{settings.mysql.database}/"):
        newer += sum(1 for o in page.get("Contents", [])
                     if o["LastModified"].timestamp() > since)
    return {"more": newer > 0, "new_files": newer}


def write_run_report(settings: Settings, task: dict[str, Any], progress: Progress
                     ) -> dict[str, Any]:
    """The run's HTML report (written again, complete, by `runs show` and `run`), and the
    pipeline's health as the run ends, recorded in the warehouse for the dashboards."""
    from pipeline.orchestration import health
    from pipeline.orchestration.report import load_run, write_report

    run = load_run(settings, task["execution_arn"])
    path = write_report(settings, task["execution_arn"], outcome=task.get("outcome"), run=run)
    try:
        recorded = health.record(settings, run, task.get("outcome"))
    except Exception as exc:  # noqa: BLE001 - the report is written; health is a bonus
        LOG.warning("pipeline health of run %s not recorded: %s", run.name, first_line(exc))
        recorded = {"not_recorded": first_line(exc)}
    from pipeline.stack.lake import save_after_run

    return {"report": str(path), "health": recorded,
            **save_after_run(settings, f"run {run.name}", shared=True)}


PYTHON_JOBS: dict[str, StepFunc] = {
    "shoplake_quality_and_reconcile": quality_and_reconcile,
    "shoplake_check_arrivals": check_arrivals,
    "shoplake_write_run_report": write_run_report,
}
"""Glue Python shell jobs (no Spark) the AWS binding would deploy beside the Spark jobs."""


STEPS: dict[str, Step] = {s.name: s for s in (
    Step("wait_for_cdc_sync", wait_for_cdc_sync, "wait until a CDC follower caught up"),
    Step("replicate_now", replicate_now, "replicate the binlog now (no follower runs)"),
    Step("start_crawler", start_crawler, "crawl bronze into the catalog"),
    Step("get_crawler", get_crawler, "the crawler's state"),
    Step("glue_job", glue_job, "a Glue job (JobName, Arguments)"),
    Step("execute_statement", execute_statement, "CALL a load procedure"),
    Step("describe_statement", describe_statement, "a statement's state"),
    Step("quality_and_reconcile", quality_and_reconcile, "reconcile; the quality gate"),
    Step("check_arrivals", check_arrivals, "new bronze files since the crawl?"),
    Step("write_run_report", write_run_report, "the run's HTML report"),
)}
"""Step name -> step; the local binding has one activity per step."""


def run_step(settings: Settings, name: str, task: dict[str, Any], progress: Progress
             ) -> dict[str, Any]:
    """Run step `name` on `task`; the JSON-safe result."""
    if name not in STEPS:
        raise TerminalError(f"unknown step `{name}`", hint=f"steps: {', '.join(STEPS)}")
    began = time.monotonic()
    result = STEPS[name].func(settings, task, progress)
    result.setdefault("seconds", round(time.monotonic() - began, 3))
    return json.loads(json.dumps(result, default=str))

