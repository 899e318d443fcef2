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
    if report.reconciled is None:
        return 0
    from pipeline.cli.warehouse import print_behind, reconcile_exit_code, show_reconcile

    rec = report.steps["reconcile"]["report"]
    if not rec.ok:
        OUT.print(f"[red]reconcile: {len(rec.differences) + sum(rec.row_counts.values())} "
                  "difference(s)[/red]:")
        return show_reconcile(ctx, rec)
    OUT.print(f"reconcile: all {rec.days} days match, "
              f"{sum(rec.rows_compared.values()):,} rows compared")
    print_behind(ctx, rec)
    return reconcile_exit_code(ctx, rec)
