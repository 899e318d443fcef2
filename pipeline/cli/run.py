"""`shoplake run`: one pipeline run in this process."""

from __future__ import annotations

import click
from rich.markup import escape

from pipeline.cli.common import OUT, CliContext, pass_cli, progress_for, wait_option


@click.command("run")
@click.option("--local", is_flag=True, help="Run the steps in this process instead of "
              "through the Step Functions state machine (same steps, same order; no retries).")
@click.option("--no-follow", is_flag=True, help="Start the run and print its execution ARN.")
@click.option("--no-reconcile", is_flag=True, help="With --local: skip the source-vs-gold "
              "comparison (for a source that keeps changing).")
@click.option("--full", is_flag=True, help="The load jobs copy the full state of silver "
              "into staging and the procedures merge all of it (a run copies only the "
              "changed keys otherwise).")
@wait_option
@pass_cli
def run_cmd(ctx: CliContext, local: bool, no_follow: bool, no_reconcile: bool,
            full: bool, wait_s: float | None) -> int:
    """One pipeline run: CDC sync, crawl, every Glue job, the load procedures, quality and
    reconcile, through the state machine, followed live as its graph. Exit 1 if it fails."""
    if not local:
        if no_reconcile:
            raise click.UsageError("--no-reconcile is for --local runs; the state machine "
                                   "always runs its quality step")
        from pipeline.cli.orchestration import follow_run
        from pipeline.orchestration.liveness import require_workers
        from pipeline.orchestration.runs import start_run
        from pipeline.stack.workers import check_same_settings

        check_same_settings(ctx.settings)
        require_workers(ctx.settings)  # else the tasks would wait on heartbeat timeouts
        arn = start_run(ctx.settings, "manual", full=full)
        if no_follow:
            click.echo(arn)
            return 0
        return follow_run(ctx, arn)
    from pipeline.orchestration import run_pipeline

    with progress_for(ctx) as progress:
        report = run_pipeline(ctx.settings, progress, reconcile=not no_reconcile,
                              wait_s=wait_s, full=full)
    for path, warning in report.warnings:
        OUT.print(f"[yellow]Warning[/yellow] ({escape(path)}): {escape(warning)}",
                  highlight=False)
    OUT.print(f"pipeline run {report.run_id} finished in {report.seconds:.1f}s")
    if report.reconciled is None:
        return 0
    from pipeline.cli.warehouse import print_behind, reconcile_exit_code, show_reconcile

    rec = report.steps["QualityAndReconcile"]["report"]
    if not rec.ok:
        OUT.print(f"[red]reconcile: {len(rec.differences) + sum(rec.row_counts.values())} "
                  "difference(s)[/red]:")
        return show_reconcile(ctx, rec)
    OUT.print(f"reconcile: all {rec.days} days match, "
              f"{sum(rec.rows_compared.values()):,} rows compared ({rec.kind}: "
              f"{escape(rec.why)})", highlight=False)
    print_behind(ctx, rec)
    return reconcile_exit_code(ctx, rec)
