"""Glue job `maintain_silver`: compaction and snapshot expiry of a silver Iceberg table,
when its thresholds are passed.

Each run's MERGE adds a few small data files and, merge-on-read, position-delete files
that every reader applies; snapshots pile up one per run. This job, a state of its own in
the state machine (the `Maintain` map, after the run's reconcile, so never at the same time
as a MERGE on the table: runs hold the run lease), checks each table's metadata (without
Spark) and only works when a threshold is passed:

- more than `lake.compact_min_files` data files, or position deletes covering more than
  `lake.compact_delete_ratio` of the rows: `rewrite_data_files` (every file with a delete,
  small files binned together), then `rewrite_position_delete_files`;
- snapshots older than `lake.snapshot_retention_hours`: `expire_snapshots`, keeping the
  last `lake.snapshots_retained` whatever their age.

Each is one Iceberg commit: a crash (kill -9) leaves the table at its last snapshot, with
at most some unreferenced files. The change logs (`<schema>_changes`) are left alone: the
load jobs read them from the snapshot they last took.

    spark-submit spark_jobs/maintain_silver.py --JOB_NAME maintain_silver --table orders
    shoplake job run maintain_silver [--table orders] [--arg force=true]
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.errors import TerminalError
from pipeline.glue import iceberg, silver
from pipeline.glue.jobs import SOURCE_TABLES, JobContext, submit_main
from spark_jobs.silver_model import TABLES


def table_health(settings: Any, table: str) -> dict[str, Any] | None:
    """Data files, delete files, rows, position deletes and snapshots of the table's current
    state, read from its metadata (pyiceberg)."""
    tbl = silver.load_table(settings, table)
    snap = tbl.current_snapshot() if tbl is not None else None
    if snap is None:
        return None
    summary = snap.summary.additional_properties if snap.summary else {}
    snapshots = tbl.metadata.snapshots
    return {"data_files": int(summary.get("total-data-files", 0)),
            "delete_files": int(summary.get("total-delete-files", 0)),
            "rows": int(summary.get("total-records", 0)),
            "position_deletes": int(summary.get("total-position-deletes", 0)),
            "snapshots": len(snapshots),
            "oldest_snapshot_ms": min(s.timestamp_ms for s in snapshots)}


def due(settings: Any, health: dict[str, Any], force: bool = False) -> dict[str, str]:
    """Which work is due and why: {"compact": reason, "expire": reason}."""
    lake = settings.lake
    out: dict[str, str] = {}
    ratio = health["position_deletes"] / max(health["rows"], 1)
    if force and (health["data_files"] > 1 or health["delete_files"]):
        out["compact"] = "requested"
    elif health["data_files"] > lake.compact_min_files:
        out["compact"] = f"{health['data_files']} data files > {lake.compact_min_files}"
    elif health["delete_files"] and ratio > lake.compact_delete_ratio:
        out["compact"] = (f"position deletes {ratio:.1%} of rows > "
                          f"{lake.compact_delete_ratio:.0%}")
    age_h = (time.time() * 1000 - health["oldest_snapshot_ms"]) / 3_600_000
    if health["snapshots"] > lake.snapshots_retained and (
            force or age_h > lake.snapshot_retention_hours):
        out["expire"] = ("requested" if force else
                         f"oldest snapshot {age_h:.1f} h old > {lake.snapshot_retention_hours} h")
    return out


def maintain_table(ctx: JobContext, table: str) -> dict[str, Any]:
    settings, spark = ctx.settings, ctx.spark
    before = table_health(settings, table)
    if before is None:
        return {"table": table, "maintained": False, "why": "no silver table yet"}
    settled = (silver.current_snapshot(settings, table) or {}).get("settled", False)
    work = due(settings, before, force=ctx.args.get("force") == "true")
    out: dict[str, Any] = {"table": table, "before": before, "work": work, "seconds": {}}
    if not work:
        return {**out, "maintained": False}
    iceberg.attach(spark, settings)
    ident = f"{settings.mysql.database}.{table}"
    catalog = settings.lake.catalog_name
    if "compact" in work:
        ctx.progress.update(ctx.name, description=f"{table}: compacting ({work['compact']})")
        began = time.monotonic()
        # Sorted by key, as a rebuild writes the table: each file a key range again, which
        # the MERGEs' key bounds prune by (spark_jobs/bronze_to_silver.py `_merge_into`).
        (key,) = TABLES[table].primary_key
        spark.sql(f"CALL {catalog}.system.rewrite_data_files(table => '{ident}', "
                  f"strategy => 'sort', sort_order => '{key} ASC NULLS LAST', options => "
                  "map('delete-file-threshold', '1', 'min-input-files', '2', "
                  "'remove-dangling-deletes', 'true'))").collect()
        if (table_health(settings, table) or {}).get("delete_files"):
            spark.sql(f"CALL {catalog}.system.rewrite_position_delete_files(table => "
                      f"'{ident}', options => map('rewrite-all', 'true'))").collect()
        out["seconds"]["compact"] = round(time.monotonic() - began, 3)
    if "expire" in work:
        ctx.progress.update(ctx.name, description=f"{table}: expiring snapshots")
        began = time.monotonic()
        older = datetime.now(UTC) - timedelta(hours=settings.lake.snapshot_retention_hours)
        if ctx.args.get("force") == "true":
            # Every snapshot so far, including the compaction's own commits of this second
            # (a literal cut to whole seconds would keep them).
            older = datetime.now(UTC) + timedelta(seconds=1)
        spark.sql(f"CALL {catalog}.system.expire_snapshots(table => '{ident}', older_than => "
                  f"TIMESTAMP '{older.strftime('%Y-%m-%d %H:%M:%S.%f')}', retain_last => "
                  f"{settings.lake.snapshots_retained})").collect()
        out["seconds"]["expire"] = round(time.monotonic() - began, 3)
    out["after"] = table_health(settings, table)
    after = silver.current_snapshot(settings, table)
    if settled and after is not None and not after["settled"]:
        # The properties describe the rows, which compaction keeps: they describe its
        # snapshot now. (A table whose last run had not settled stays unsettled.)
        spark.sql(f"ALTER TABLE {iceberg.table_name(settings, table)} SET TBLPROPERTIES "
                  f"('{silver.PROPERTY}snapshot' = '{after['snapshot']}')")
    return {**out, "maintained": True}


def run(ctx: JobContext) -> dict[str, Any]:
    tables = [ctx.args["table"]] if ctx.args.get("table") else list(SOURCE_TABLES)
    unknown = [t for t in tables if t not in SOURCE_TABLES]
    if unknown:
        raise TerminalError(f"unknown table `{unknown[0]}`",
                            hint=f"tables: {', '.join(SOURCE_TABLES)}")
    results = [maintain_table(ctx, t) for t in tables]
    return results[0] if len(results) == 1 else {"tables": results}


def main() -> int:
    return submit_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
