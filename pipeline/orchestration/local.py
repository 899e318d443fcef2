"""`shoplake run --local`: one pipeline run in this process, without Step Functions.

The documented fallback (no LocalStack Step Functions, or debugging a step in one
process): it runs the same registry (pipeline/orchestration/steps.py) in the same order as
the state machine, holding the run lease, with bronze_to_silver for the tables side by
side as the Map state runs them. What it does not have is the state machine's retries,
catches and history: a failing step ends the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import Settings
from pipeline.errors import first_line
from pipeline.orchestration.asl import DIMS, FACTS, TABLES, _flag, glue_paths, statement_sql
from pipeline.orchestration.steps import run_step
from pipeline.progress import Progress, SilentProgress


@dataclass
class RunReport:
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    reconciled: bool | None = None
    seconds: float = 0.0
    run_id: str = ""
    warnings: list[tuple[str, str]] = field(default_factory=list)
    """(step, warning) as the steps reported them (see `history.Run.warnings`)."""
    full: bool = False
    """`--full`: the load jobs copy the full state into staging (not the changed keys)."""


def _cdc_sync(settings: Settings, progress: Progress, run: RunReport) -> dict[str, Any]:
    synced = run_step(settings, "wait_for_cdc_sync", {"run_id": run.run_id}, progress)
    if synced["follower"]:
        return synced
    return run_step(settings, "replicate_now", {"run_id": run.run_id}, progress)


def _crawl(settings: Settings, progress: Progress, run: RunReport) -> dict[str, Any]:
    return run_step(settings, "start_crawler", {"Name": settings.glue.crawler,
                                                "run_id": run.run_id}, progress)


def _per_table(settings: Settings, progress: Progress, run: RunReport, job: str
               ) -> dict[str, Any]:
    """Glue job `job` for every table side by side, as a Map state runs it."""
    def one(table: str) -> dict[str, Any]:
        return run_step(settings, "glue_job", {"JobName": job, "Arguments": {
            "--table": table, "--run_id": run.run_id, **glue_paths(settings)}}, progress)

    with ThreadPoolExecutor(max_workers=len(TABLES)) as pool:
        return {r["table"]: r for r in pool.map(one, TABLES)}


def _transform(settings: Settings, progress: Progress, run: RunReport) -> dict[str, Any]:
    return _per_table(settings, progress, run, "bronze_to_silver")


def _load(settings: Settings, progress: Progress, run: RunReport, job: str,
          procedure: str) -> dict[str, Any]:
    run_id = run.run_id
    staged = run_step(settings, "glue_job", {"JobName": job, "Arguments": {
        "--run_id": run_id, "--call_procedure": "false", "--full": _flag(run.full),
        **glue_paths(settings)}}, progress)
    merged = run_step(settings, "execute_statement", {
        "Sql": statement_sql(procedure), "Parameters": [{"name": "run_id", "value": run_id}]},
        progress)
    return {**staged, "warnings": (staged.get("warnings") or []) + (merged.get("warnings") or [])}


def _dims(settings: Settings, progress: Progress, run: RunReport) -> dict[str, Any]:
    return {job: _load(settings, progress, run, job, procedure)
            for _, job, procedure in DIMS}


def _facts(settings: Settings, progress: Progress, run: RunReport) -> dict[str, Any]:
    return {job: _load(settings, progress, run, job, procedure)
            for _, job, procedure in FACTS}


def _reconcile(settings: Settings, progress: Progress, run: RunReport) -> dict[str, Any]:
    from pipeline.warehouse.reconcile import reconcile_run

    report = reconcile_run(settings, progress, run_id=run.run_id)
    return {"ok": report.ok, "reconcile": report.kind, "why": report.why, "days": report.days,
            "differences": len(report.differences) + sum(report.row_counts.values()),
            "held": len(report.held), "report": report}


def _maintain(settings: Settings, progress: Progress, run: RunReport) -> dict[str, Any]:
    return _per_table(settings, progress, run, "maintain_silver")


Step = Callable[[Settings, Progress, RunReport], dict[str, Any]]

STEPS: list[tuple[str, Step]] = [
    ("WaitForCdcSync", _cdc_sync),  # and ReplicateNow when no follower runs
    ("StartCrawler", _crawl),
    ("Transform", _transform),
    ("LoadDims", _dims),
    ("LoadFacts", _facts),
    ("QualityAndReconcile", _reconcile),
    ("Maintain", _maintain),
]
"""The state machine's task states, in its order, grouped as its top level is."""


def run_pipeline(settings: Settings, progress: Progress | None = None,
                 reconcile: bool = True, wait_s: float | None = None,
                 run_id: str | None = None, full: bool = False) -> RunReport:
    """Every step in order, holding the run lease (see `lease.run_lease`) throughout."""
    from pipeline.orchestration.lease import run_lease
    from pipeline.orchestration.runs import new_run_id

    progress = progress or SilentProgress()
    began = time.monotonic()
    report = RunReport(run_id=run_id or new_run_id(), full=full)
    from pipeline.orchestration import ledger

    with run_lease(settings, f"shoplake run --local {report.run_id}", wait_s, progress):
        ledger.begin(settings, report.run_id, "local", "local")
        status, failed, error = "FAILED", None, None
        try:
            _run_steps(settings, progress, reconcile, report)
            status = "SUCCEEDED"
        except BaseException as exc:
            failed = next((n for n, _ in STEPS if n not in report.steps), None)
            error = first_line(exc) or type(exc).__name__
            raise
        finally:  # still holding the lease: no run writes silver while it is copied
            from pipeline.stack.lake import save_after_run

            save_after_run(settings, f"run {report.run_id}", shared=False)
            if ledger.end(settings, report.run_id, status, kind="local", trigger="local",
                          failed_state=failed, error=error):
                ledger.publish(settings)  # the dashboards count it now, not at a report
    if reconcile:
        report.reconciled = bool(report.steps["QualityAndReconcile"]["ok"])
    report.seconds = time.monotonic() - began
    return report


def _run_steps(settings: Settings, progress: Progress, reconcile: bool,
               report: RunReport) -> None:
    for name, step in STEPS:
        if name == "QualityAndReconcile" and not reconcile:
            continue
        progress.start(f"step:{name}", name)
        try:
            report.steps[name] = step(settings, progress, report)
            report.warnings += [(f"{name}/{job}", w)
                                for job, out in report.steps[name].items()
                                if isinstance(out, dict) for w in out.get("warnings") or []]
        except Exception as exc:
            from pipeline.classify import typed_error

            typed = typed_error(exc, settings)
            progress.finish(f"step:{name}", ok=False, message=first_line(typed or exc))
            if typed is not None and typed is not exc:
                raise typed from exc
            raise
        progress.finish(f"step:{name}", message=", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in report.steps[name].items()
            if isinstance(v, str | int | float | bool)))
