"""`shoplake run`: one pipeline run in this process."""

from __future__ import annotations

import click

from pipeline.cli.common import OUT, CliContext, pass_cli, progress_for, wait_option


@click.command("run")
@click.option("--no-reconcile", is_flag=True, help="Skip the source-vs-gold comparison "
              "(for a source that keeps changing).")
@wait_option
@pass_cli
def run_cmd(ctx: CliContext, no_reconcile: bool, wait_s: float | None) -> int:
    """CDC sync, crawl, warehouse DDL, every Glue job, reconcile; exit 1 on a difference."""
    from pipeline.orchestration import run_pipeline

    with progress_for(ctx) as progress:
        report = run_pipeline(ctx.settings, progress, reconcile=not no_reconcile,
                              wait_s=wait_s)
    OUT.print(f"pipeline run finished in {report.seconds:.1f}s")
    if report.reconciled is False:
        rec = report.steps["reconcile"]
        OUT.print(f"[red]reconcile: {rec['differences']} difference(s)[/red]: run "
                  "`shoplake reconcile` for the details")
        return 1
    if report.reconciled:
        OUT.print(f"reconcile: all {report.steps['reconcile']['days']} days match")
    return 0
