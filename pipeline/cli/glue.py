"""`shoplake crawl` and `shoplake job run|list`: the Glue crawler and ETL jobs."""

from __future__ import annotations

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


@click.command("crawl")
@format_option
@wait_option
@pass_cli
def crawl_cmd(ctx: CliContext, fmt: str, wait_s: float | None) -> int:
    """Infer bronze tables' schemas and write them to the catalog (the Glue crawler)."""
    from pipeline.catalog import crawl
    from pipeline.orchestration.lease import run_lease

    with progress_for(ctx) as progress, run_lease(ctx.settings, "shoplake crawl", wait_s,
                                                  progress):
        results = crawl(ctx.settings, progress)
    print_rows([r.__dict__ | {"rejected": len(r.rejected)} for r in results],
               ["table", "version", "columns", "records", "files", "rejected", "changed"], fmt,
               title=f"catalog database {ctx.settings.glue.database}")
    if fmt == "table":
        bucket = ctx.settings.lake.bronze_bucket
        for r in results:
            for key, why in r.rejected:
                OUT.print(f"[yellow]rejected[/yellow] s3://{bucket}/{key} (table `{r.table}`): "
                          f"{why}", highlight=False)
        if any(r.rejected for r in results):
            OUT.print("rejected files are left out of the catalog; their tables wait at them "
                      "(`shoplake quarantine` lists them): replace or delete each file, or "
                      "rebuild bronze with `shoplake cdc reset`")
    return 0


@click.group("job")
def job_group() -> None:
    """Glue-style Spark jobs (bronze -> silver -> gold)."""


@job_group.command("list")
def list_cmd() -> int:
    """The jobs, in pipeline order."""
    from pipeline.glue.jobs import JOBS

    for name, module in JOBS.items():
        OUT.print(f"{name:<24} {module.replace('.', '/')}.py")
    return 0


@job_group.command("run")
@click.argument("names", nargs=-1, required=True)
@click.option("--table", help="Only this source table (bronze_to_silver).")
@click.option("--reset-bookmark", is_flag=True, help="Reprocess all input, not just new files.")
@click.option("--arg", "extra", multiple=True, metavar="KEY=VALUE",
              help="Extra Glue argument, as --KEY VALUE would be on AWS.")
@wait_option
@pass_cli
def run_cmd(ctx: CliContext, names: tuple[str, ...], table: str | None, reset_bookmark: bool,
            extra: tuple[str, ...], wait_s: float | None) -> int:
    """Run NAMES (or `all`) in this process, sharing one SparkSession."""
    from pipeline.glue.jobs import JOBS, check_job_args, run_job, summarize

    jobs = list(JOBS) if names == ("all",) else list(names)
    for name in jobs:
        check_job_args(name, table)
    bad = [e for e in extra if "=" not in e or not e.split("=", 1)[0]]
    if bad:
        raise click.BadParameter(f"`{bad[0]}` is not KEY=VALUE (e.g. --arg force=true)",
                                 param_hint="--arg")
    args = dict(e.split("=", 1) for e in extra)
    rows, warnings = [], []
    from pipeline.orchestration.lease import run_lease

    with progress_for(ctx) as progress, run_lease(ctx.settings, "shoplake job run", wait_s,
                                                  progress):
        for name in jobs:
            result = run_job(ctx.settings, name, table=table, reset_bookmark=reset_bookmark,
                             extra_args=args, progress=progress)
            rows.append({"job": name, "seconds": f"{result.seconds:.1f}",
                         "result": summarize(result.metrics)})
            warnings += [(name, w) for w in result.metrics.get("warnings") or []]
    print_rows(rows, ["job", "seconds", "result"], "table")
    for job, warning in warnings:
        OUT.print(f"[yellow]Warning[/yellow] ({job}): {escape(warning)}", highlight=False)
    return 0


@click.command("quarantine")
@format_option
@pass_cli
def quarantine_cmd(ctx: CliContext, fmt: str) -> int:
    """The rows held in quarantine, for which gold is behind the source: table, key, why,
    since which run. They stay held until a later valid change of the key supersedes them."""
    from pipeline.warehouse.reconcile import read_held

    held = read_held(ctx.settings)
    rows = [{"table": h["table"], "key": h["key"], "reason": h["reason"],
             "since": h.get("quarantined_at"), "run": h.get("quarantined_run"),
             "change": h.get("op")} for h in held]
    if fmt == "json":
        print_rows(rows, [], fmt)
        return 0
    if not rows:
        OUT.print("no rows held in quarantine: gold is not behind the source for any key")
        return 0
    print_rows(rows, ["table", "key", "reason", "since", "run", "change"], fmt,
               title=f"{len(rows)} row(s) held in quarantine (gold is behind the source)")
    return 0
