"""One pipeline run, in order, in this process: sync -> crawl -> jobs -> reconcile."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.config import Settings
from pipeline.errors import first_line
from pipeline.progress import Progress, SilentProgress


@dataclass
class RunReport:
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    reconciled: bool | None = None
    seconds: float = 0.0


def _cdc_sync(settings: Settings, progress: Progress) -> dict[str, Any]:
    from pipeline import cdc

    report = cdc.run(settings, once=True, progress=progress)  # waits for a running follower
    return {"changes": report.changes, "full_load": report.full_load,
            "position": report.position}


def _crawl(settings: Settings, progress: Progress) -> dict[str, Any]:
    from pipeline.catalog import crawl

    results = crawl(settings, progress)
    return {"tables": len(results), "schema_changes": sum(r.changed for r in results)}


def _warehouse(settings: Settings, progress: Progress) -> dict[str, Any]:
    from pipeline.warehouse import apply_ddl

    apply_ddl(settings)  # idempotent: creates what is missing
    return {}


def _jobs(names: list[str]) -> Callable[[Settings, Progress], dict[str, Any]]:
    def run(settings: Settings, progress: Progress) -> dict[str, Any]:
        from pipeline.glue.jobs import run_job

        return {name: run_job(settings, name, progress=progress).metrics for name in names}
    return run


def _reconcile(settings: Settings, progress: Progress) -> dict[str, Any]:
    from pipeline.warehouse import reconcile

    report = reconcile(settings, progress)
    return {"ok": report.ok, "days": report.days,
            "differences": len(report.differences) + sum(report.row_counts.values()),
            "held": len(report.held), "report": report}


STEPS: list[tuple[str, Callable[[Settings, Progress], dict[str, Any]]]] = [
    ("cdc-sync", _cdc_sync),  # "wait for DMS sync"
    ("crawl", _crawl),
    ("warehouse-init", _warehouse),
    ("transform", _jobs(["bronze_to_silver"])),
    ("load-dims", _jobs(["load_dim_customer", "load_dim_product"])),
    ("load-facts", _jobs(["load_fact_orders", "load_fact_order_items"])),
    ("reconcile", _reconcile),
]
"""The pipeline's steps in order: what the state machine will run."""


def run_pipeline(settings: Settings, progress: Progress | None = None,
                 reconcile: bool = True, wait_s: float | None = None) -> RunReport:
    """Every step in order, holding the run lease (see `lease.run_lease`) throughout."""
    from pipeline.orchestration.lease import run_lease

    progress = progress or SilentProgress()
    began = time.monotonic()
    report = RunReport()
    with run_lease(settings, "shoplake run", wait_s, progress):
        _run_steps(settings, progress, reconcile, report)
    if reconcile:
        report.reconciled = bool(report.steps["reconcile"]["ok"])
    report.seconds = time.monotonic() - began
    return report


def _run_steps(settings: Settings, progress: Progress, reconcile: bool,
               report: RunReport) -> None:
    for name, step in STEPS:
        if name == "reconcile" and not reconcile:
            continue
        progress.start(f"step:{name}", name)
        try:
            report.steps[name] = step(settings, progress)
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
