"""Runs as seen from Step Functions: start one, read one back, write its HTML report.

The report is one self-contained HTML file per run under `<state>/reports/` (no script,
no network): the run's graph in definition order, each state coloured by its outcome,
its attempts, duration on a shared timeline, and the rows it reported.
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.aws.clients import aws_client
from pipeline.config import Settings
from pipeline.orchestration import history

COLOURS = {history.PENDING: "#d0d4da", history.RUNNING: "#4a90d9",
           history.SUCCEEDED: "#3c9a5f", history.FAILED: "#c94040",
           history.RETRIED: "#e0a030", history.CAUGHT: "#a05cc8",
           history.SKIPPED: "#d0d4da"}


def reports_dir(settings: Settings) -> Path:
    return settings.state_dir / "reports"


def report_path(settings: Settings, run_name: str) -> Path:
    return reports_dir(settings) / f"{run_name}.html"


def load_run(settings: Settings, execution_arn: str) -> history.Run:
    """The run graph of an execution, from LocalStack's (or AWS's) Step Functions."""
    sfn = aws_client(settings, "stepfunctions")
    execution = sfn.describe_execution(executionArn=execution_arn)
    definition = json.loads(sfn.describe_state_machine_for_execution(
        executionArn=execution_arn)["definition"])
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(
            executionArn=execution_arn, PaginationConfig={"PageSize": 1000}):
        events += page["events"]
    return history.build(definition, execution, events)


def write_report(settings: Settings, execution_arn: str, outcome: str | None = None,
                 run: history.Run | None = None) -> Path:
    run = run or load_run(settings, execution_arn)
    path = report_path(settings, run.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_html(run, outcome), encoding="utf-8")
    tmp.replace(path)
    return path


def _fmt(ts: datetime | None) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "-"


def render_html(run: history.Run, outcome: str | None = None) -> str:
    status = run.status if run.status != "RUNNING" or not outcome else outcome
    start = run.started
    total = max(1.0, run.seconds or 1.0)
    rows = []
    for node in run.nodes:
        if node.type in ("Pass", "Choice", "Wait") and node.status == history.PENDING:
            continue  # plumbing a run did not take: noise in a report
        offset = ((node.started - start).total_seconds() / total * 100
                  if node.started and start else 0)
        width = max(0.5, (node.seconds or 0) / total * 100) if node.started else 0
        colour = COLOURS.get(node.status, "#999")
        rows.append(
            f"<tr><td style='padding-left:{8 + node.depth * 18}px'>"
            f"<span class='dot' style='background:{colour}'></span>{html.escape(node.path)}</td>"
            f"<td>{node.type}</td><td>{node.status}</td><td>{node.attempts or ''}</td>"
            f"<td>{'' if node.seconds is None else f'{node.seconds:.1f}s'}</td>"
            f"<td class='bar'><div style='margin-left:{offset:.2f}%;width:{width:.2f}%;"
            f"background:{colour}'></div></td>"
            f"<td>{html.escape(node.summary)}</td></tr>")
    failed = run.failed_node()
    failure = ""
    if failed is not None:
        failure = (f"<p class='fail'>failed in <b>{html.escape(failed.path)}</b>: "
                   f"{html.escape(failed.error)}<br><code>{html.escape(failed.cause)}</code></p>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>shoplake run {html.escape(run.name)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border-bottom: 1px solid #eee; padding: 4px 8px; text-align: left;
          vertical-align: middle; white-space: nowrap; }}
td.bar {{ width: 30%; }} td.bar div {{ height: 10px; border-radius: 3px; }}
.dot {{ display: inline-block; width: 10px; height: 10px; border-radius: 5px;
        margin-right: 6px; }}
.fail {{ background: #fbeaea; padding: 8px; border-left: 4px solid #c94040; }}
</style></head><body>
<h1>run {html.escape(run.name)}: {html.escape(status)}</h1>
<p>trigger {html.escape(run.trigger or '-')}, started {_fmt(run.started)}, took
{'' if run.seconds is None else f'{run.seconds:.1f}s'} (tasks {run.task_seconds():.1f}s)</p>
{failure}
<table><tr><th>state</th><th>type</th><th>outcome</th><th>attempts</th><th>time</th>
<th>timeline</th><th>result</th></tr>
{''.join(rows)}
</table></body></html>
"""
