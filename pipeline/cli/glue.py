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


@click.group("lake")
def lake_group() -> None:
    """Silver's Apache Iceberg tables (snapshots, data files, delete files)."""


@lake_group.command("list")
@format_option
@pass_cli
def lake_list_cmd(ctx: CliContext, fmt: str) -> int:
    """Every table of silver's Iceberg catalog, with its current snapshot."""
    from pipeline.glue import iceberg, silver

    rows = []
    for entry in iceberg.catalog_tables(ctx.settings):
        row = {"table": f"{entry['namespace']}.{entry['table']}", "snapshot": None,
               "rows": None, "held": None}
        if entry["namespace"] == ctx.settings.mysql.database:
            try:
                state = silver.current_snapshot(ctx.settings, entry["table"]) or {}
            except silver.SilverFilesLostError:
                state = {"snapshot": "files lost"}
            row |= {k: state.get(k) for k in ("snapshot", "rows", "held")}
        rows.append(row)
    if fmt == "table" and not rows:
        OUT.print(f"silver's catalog (`{ctx.settings.lake.catalog_database}`) holds no table "
                  "yet: `shoplake run` creates them")
        return 0
    print_rows(rows, ["table", "snapshot", "rows", "held"], fmt,
               title=f"Iceberg catalog `{ctx.settings.lake.catalog_name}` (PostgreSQL "
                     f"database `{ctx.settings.lake.catalog_database}`)")
    return 0


@lake_group.command("show")
@click.argument("table")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Newest snapshots to list.")
@format_option
@pass_cli
def lake_show_cmd(ctx: CliContext, table: str, limit: int, fmt: str) -> int:
    """A silver table's snapshots (newest first), data files and delete files.

    TABLE is a source table (`orders`) or `NAMESPACE.TABLE` (`shop_held.orders`)."""
    import json

    from pipeline.errors import ConfigError
    from pipeline.glue import iceberg, silver

    namespace, _, name = table.rpartition(".")
    tbl = silver.load_table(ctx.settings, name, namespace or None)
    if tbl is None:
        known = ", ".join(sorted(f"{t['namespace']}.{t['table']}"
                                 for t in iceberg.catalog_tables(ctx.settings))) or "none yet"
        raise ConfigError(f"silver has no Iceberg table `{table}`",
                          hint=f"tables: {known} (`shoplake lake list`)")
    snapshots = sorted(tbl.inspect.snapshots().to_pylist(), key=lambda r: r["committed_at"],
                       reverse=True)[:limit]
    current = tbl.current_snapshot()
    snap_rows = []
    for s in snapshots:
        summary = dict(s["summary"] or [])
        snap_rows.append({
            "snapshot": s["snapshot_id"], "committed_at": s["committed_at"],
            "operation": s["operation"], "current": s["snapshot_id"] == current.snapshot_id,
            "added_rows": summary.get("added-records", "0"),
            "position_deletes": summary.get("added-position-deletes", "0"),
            "rows": int(summary.get("total-records", 0))
            - int(summary.get("total-position-deletes", 0)),
            "data_files": summary.get("total-data-files"),
            "delete_files": summary.get("total-delete-files")})
    files = [{"kind": {0: "data", 1: "position deletes", 2: "equality deletes"}
              .get(f["content"], str(f["content"])), "path": f["file_path"],
              "records": f["record_count"], "bytes": f["file_size_in_bytes"]}
             for f in tbl.inspect.files().select(
                 ["content", "file_path", "record_count", "file_size_in_bytes"]).to_pylist()]
    if fmt == "json":
        click.echo(json.dumps(
            {"table": table, "location": tbl.location(), "format_version": tbl.format_version,
             "properties": dict(tbl.properties), "snapshots": snap_rows, "files": files},
            indent=2, default=str))
        return 0
    OUT.print(f"[bold]{escape(table)}[/bold] at {escape(tbl.location())} (Iceberg format "
              f"v{tbl.format_version}, {tbl.properties.get('write.merge.mode', 'copy-on-write')}"
              f" merges)", highlight=False)
    print_rows(snap_rows, ["snapshot", "committed_at", "operation", "current", "added_rows",
                           "position_deletes", "rows", "data_files", "delete_files"], fmt,
               title=f"snapshots (newest {len(snap_rows)})")
    print_rows(files, ["kind", "path", "records", "bytes"], fmt,
               title=f"files of the current snapshot: "
                     f"{sum(f['kind'] == 'data' for f in files)} data, "
                     f"{sum(f['kind'] != 'data' for f in files)} delete")
    return 0


@click.group("catalog")
def catalog_group() -> None:
    """The Glue Data Catalog (moto's server here, Glue on AWS)."""


@catalog_group.command("show")
@click.option("--database", default=None,
              help="Catalog database [default: glue.database, bronze's].")
@format_option
@pass_cli
def catalog_show_cmd(ctx: CliContext, database: str | None, fmt: str) -> int:
    """The tables the catalog holds: schema version, Glue versions, columns, location."""
    from pipeline.catalog.store import list_tables, table_versions

    database = database or ctx.settings.glue.database
    rows = []
    for t in list_tables(ctx.settings, database):
        params = t.get("Parameters") or {}
        rows.append({"table": t["Name"], "schema_version": params.get("schemaVersion", ""),
                     "glue_versions": len(table_versions(ctx.settings, t["Name"], database)),
                     "columns": len(t["StorageDescriptor"]["Columns"]),
                     "format": params.get("classification", ""),
                     "records": params.get("recordCount", ""),
                     "location": t["StorageDescriptor"].get("Location", "")})
    print_rows(rows, ["table", "schema_version", "glue_versions", "columns", "format",
                      "records", "location"], fmt,
               title=f"Glue Data Catalog `{database}` at {ctx.settings.glue.endpoint_url}")
    if not rows and fmt == "table":
        OUT.print(f"no tables in `{escape(database)}` yet: `shoplake crawl` registers them")
    return 0
