"""`shoplake warehouse init` and `shoplake reconcile`: the Redshift stand-in and its check."""

from __future__ import annotations

import json

import click
from rich.markup import escape

from pipeline.cli.common import (
    OUT,
    CliContext,
    format_option,
    pass_cli,
    print_rows,
    progress_for,
    wait_option,
)


@click.group("warehouse")
def warehouse_group() -> None:
    """The Gold warehouse: PostgreSQL schema `sales` standing in for Redshift."""


@warehouse_group.command("init")
@click.option("--reset", is_flag=True,
              help="Drop schema `sales` and every row in it first (the next run reloads it).")
@wait_option
@pass_cli
def init_cmd(ctx: CliContext, reset: bool, wait_s: float | None) -> int:
    """Create the schema, tables, procedures and mart view (idempotent)."""
    from pipeline.orchestration.lease import run_lease
    from pipeline.warehouse import apply_ddl

    with run_lease(ctx.settings, "shoplake warehouse init", wait_s):  # not under a load
        result = apply_ddl(ctx.settings, reset=reset)
    if result.reset:
        OUT.print("dropped schema `sales`")
        from pipeline.orchestration import ledger

        ledger.publish(ctx.settings)  # the run history lives on: the dashboards keep it
    if result.created:
        OUT.print(f"created {len(result.created)} tables: {', '.join(result.created)}")
    if result.existing:
        OUT.print(f"kept {len(result.existing)} existing tables")
    for change in result.widened:
        OUT.print(f"widened {change}")
    OUT.print("[green]warehouse ready[/green]: procedures and `sales.v_sales_mart` applied")
    return 0


@click.command("reconcile")
@click.option("--full", is_flag=True,
              help="Check everything, not only what the loads changed since the last check.")
@format_option
@pass_cli
def reconcile_cmd(ctx: CliContext, full: bool, fmt: str) -> int:
    """Compare the source with gold per day, in total and row by row; exit 1 on any
    difference, or while rows are held in quarantine (unless reconcile.on_quarantine=warn).

    Incremental by default: the days and keys the loads changed since the last reconcile
    that passed. Full with --full, on the first reconcile of each UTC day, and after a full
    staging copy."""
    from pipeline.warehouse.reconcile import reconcile_run

    with progress_for(ctx) as progress:
        report = reconcile_run(ctx.settings, progress=progress, full=full)
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
        return reconcile_exit_code(ctx, report)
    return show_reconcile(ctx, report)


def reconcile_exit_code(ctx: CliContext, report) -> int:  # noqa: ANN001 - ReconcileReport
    behind_fails = report.behind and ctx.settings.reconcile.on_quarantine == "fail"
    return 1 if not report.ok or behind_fails else 0


def show_reconcile(ctx: CliContext, report) -> int:  # noqa: ANN001 - ReconcileReport
    """Print a reconcile report for people; the exit code it means."""
    src, gold = report.source_totals, report.gold_totals
    compared = sum(report.rows_compared.values())
    OUT.print(f"{report.kind} reconcile: {escape(report.why)}" if report.why else
              f"{report.kind} reconcile", highlight=False)
    if report.ok and report.kind == "incremental":
        OUT.print(f"[green]all {report.days} day(s) the changes reach match[/green]: "
                  f"{src['orders']:,} orders and {src['items']:,} items on them; "
                  f"{compared:,} changed (or reached) rows compared, all equal; "
                  f"{report.facts_checked:,} facts point at the dimension version valid at "
                  "their order time (`shoplake reconcile --full` checks everything)")
    elif report.ok:
        OUT.print(f"[green]all {report.days} days match[/green]: {src['orders']:,} orders, "
                  f"{src['items']:,} items ({src['quantity']:,} units), revenue "
                  f"{src['revenue']:,}; {src['customers']:,} customers, "
                  f"{src['products']:,} products; {compared:,} rows compared, all equal; "
                  f"{report.facts_checked:,} facts point at the dimension "
                  "version valid at their order time")
    else:
        if report.differences:
            rows = [{"day": d.key if d.scope == "day" else "(total)", "metric": d.metric,
                     "source": d.source, "gold": d.gold, "delta": d.delta}
                    for d in report.differences]
            print_rows(rows, ["day", "metric", "source", "gold", "delta"], "table",
                       title=f"{len(report.differing_days)} of {report.days} days differ")
            totals = [{"metric": m, "source": src[m], "gold": gold[m]} for m in src]
            print_rows(totals, ["metric", "source", "gold"], "table", title="totals")
        for table, n in sorted(report.row_counts.items()):
            compared = report.rows_compared.get(table) or report.versions_checked.get(table, 0)
            OUT.print(f"[red]{n} row(s) of `{table}` differ[/red] (of {compared:,} compared):")
            for row in report.rows:
                if row.table == table:
                    OUT.print(f"  {row.describe()}", highlight=False)
        OUT.print("[red]gold does not match the source[/red]")
    print_behind(ctx, report)
    return reconcile_exit_code(ctx, report)


def print_behind(ctx: CliContext, report) -> None:  # noqa: ANN001 - ReconcileReport
    """The rows held in quarantine, as gold being behind the source (nothing when none)."""
    if not report.behind:
        return
    colour = "red" if ctx.settings.reconcile.on_quarantine == "fail" else "yellow"
    OUT.print(f"[{colour}]gold is behind the source[/{colour}]: {report.held_summary()} held "
              "in quarantine; `shoplake quarantine` lists them (fix them at the source, then "
              "run again)", highlight=False)
