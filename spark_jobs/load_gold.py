"""Glue jobs `load_dim_customer`, `load_dim_product`, `load_fact_orders`,
`load_fact_order_items`: one script, silver -> staging (COPY) -> `CALL sales.<procedure>()`.
The job's name (`--JOB_NAME`) picks its staging tables and procedure from the warehouse
model (`pipeline.warehouse.model.LOADS`), so adding a load is a row there, not a file here.

    spark-submit spark_jobs/load_gold.py --JOB_NAME load_dim_customer
    shoplake job run load_dim_customer

Staging holds the current state of a silver table, kept up to date by change: each run
stages only the keys silver's change log names since the last batch (their current rows;
a key without one was deleted), and the procedures merge only those keys. A delta is read
without Spark (pyiceberg: the log's new data files, then those keys' rows), so a small change
costs no Spark job. The full state (read with Spark) is copied on the first load, after a
new bronze full load or a rebuilt silver, or on request (`--full`). `sales.load_state`
records which silver (Iceberg) snapshot each staging table holds (written in the COPY's
transaction), so a job whose input has not changed skips the COPY, and two jobs that need
the same staging table load it once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipeline.errors import ConfigError, TerminalError
from pipeline.glue import silver
from pipeline.glue.jobs import JobContext, submit_main
from pipeline.warehouse import STAGING_COLUMNS, call, load_staging, procedure_state, staging_state
from pipeline.warehouse.model import load_of
from pipeline.warehouse.model import table as table_model
from pipeline.warehouse.schema import widen_for_staging
from pipeline.warehouse.widen import Numeric

LOG = logging.getLogger(__name__)

# The change's place in the binlog and its commit time: the SCD2 merges order versions by it.
_CHANGE = {"change_seq": "_change_seq", "commit_ts": "_commit_ts"}

# staging table -> (silver table, {staging column: silver column})
STAGING: dict[str, tuple[str, dict[str, str]]] = {
    "stg_customers": ("customers", {"customer_id": "id", **_CHANGE}),
    "stg_products": ("products", {"product_id": "id", **_CHANGE}),
    "stg_orders": ("orders", {"order_id": "id"}),
    "stg_order_items": ("order_items", {"order_item_id": "id"}),
}


TIMESTAMP_TEXT = "yyyy-MM-dd HH:mm:ss.SSSSSS"
"""How timestamps leave Spark for COPY: text, rendered in the session's time zone (UTC)."""


def as_text_timestamps(df: DataFrame) -> DataFrame:
    """Timestamps as UTC text. Collected as Python datetimes they would be converted to the
    driver's local time zone (pyspark uses the process's TZ), shifting every value."""
    return df.select(*[
        F.date_format(F.col(f.name), TIMESTAMP_TEXT).alias(f.name)
        if isinstance(f.dataType, T.TimestampType | T.TimestampNTZType) else F.col(f.name)
        for f in df.schema.fields])


def stage(ctx: JobContext, staging: str) -> dict[str, Any]:
    """Bring `staging` up to its silver table's current snapshot: the rows of the keys the
    change log names since the last batch (a delta), or the full state on the first load,
    a new bronze full load, a rebuilt silver, or on request (`--full`)."""
    table, renames = STAGING[staging]
    # The change log first: every entry it covers is then in the snapshot read after it.
    log = silver.changes_snapshot(ctx.settings, table)
    pointer = silver.current_snapshot(ctx.settings, table)
    if pointer is None:
        raise TerminalError(f"silver table `{table}` does not exist yet",
                            hint=f"run `shoplake job run bronze_to_silver --table {table}`")
    # --reset-bookmark (or --force) reloads staging even from an unchanged snapshot.
    reload = ctx.args.get("force") == "true" or ctx.args.get("reset-bookmark") == "true"
    if not pointer["rows"] and pointer.get("held"):
        # Every row is held in quarantine (the source lost a column, say): an empty staging
        # table would read as a source that lost every row. Staging keeps what it holds, so
        # gold keeps its rows, and reconcile says why gold is behind.
        reasons = sorted({h["reason"] for h in silver.held_rows(ctx.settings, table)})
        return {"staging": staging, "rows": 0, "copied": False, "mode": "unchanged",
                "warning": f"silver table `{table}` has no valid row: all {pointer['held']} "
                           f"of its rows are held in quarantine ({'; '.join(reasons[:2])}); "
                           f"`{staging}` and gold keep their rows"}
    snapshot = silver.snapshot_id(pointer)
    state = staging_state(ctx.settings, staging)
    if (not reload and ctx.args.get("full") != "true" and state is not None
            and state["silver_snapshot"] == snapshot and state["changes_snapshot"] == log):
        return {"staging": staging, "rows": 0, "copied": False, "mode": "unchanged"}
    columns = STAGING_COLUMNS[staging]
    key = table_model(staging).primary_key[0]
    silver_key = renames.get(key, key)
    reason = _full_reason(ctx, state, pointer, log, reload)
    keys: list[int] | None = None
    if reason is None and state["changes_snapshot"] == log:
        keys = []  # silver moved without new log entries: nothing to stage
    elif reason is None:
        # A delta is read without Spark (pyiceberg): the log's new files, then the rows of
        # those keys; a few hundred rows cost milliseconds, not a Spark job's seconds.
        try:
            keys, full = silver.logged_keys(ctx.settings, table, state["changes_snapshot"], log)
        except silver.ChangeLogGap as exc:
            reason = f"the change log of `{table}` does not reach back to the last batch ({exc})"
        else:
            if full:
                keys = None
                reason = f"silver `{table}` was rebuilt or rewritten since the last batch"
    names = [renames.get(c, c) for c in columns]
    if keys is None:
        LOG.info("`%s`: full copy (%s)", staging, reason)
        df = silver.read_current(ctx.spark, ctx.settings, table, pointer)  # that snapshot's
        df = df.select(*[F.col(n).alias(c) for n, c in zip(names, columns)])
        decimals = [(f.name, f.dataType.precision, f.dataType.scale) for f in df.schema.fields
                    if isinstance(f.dataType, T.DecimalType)]
        rows: Iterable[tuple] = (tuple(r) for r in as_text_timestamps(df).toLocalIterator(
            prefetchPartitions=True))
    else:
        found = (silver.rows_of_keys(ctx.settings, table, snapshot, silver_key, keys)
                 if keys else None)
        decimals = [] if found is None else [
            (c, f.type.precision, f.type.scale) for c, f in
            zip(columns, (found.schema.field(n) for n in names)) if pa.types.is_decimal(f.type)]
        rows = iter(()) if found is None or not found.num_rows else \
            zip(*(found.column(n).to_pylist() for n in names))
    # A decimal silver carries wider than staging (the source widened it): widen staging
    # and the gold columns computed from it first, or COPY would round every value.
    for column, precision, scale in decimals:
        for change in widen_for_staging(ctx.settings, staging, column,
                                        Numeric(precision, scale)):
            ctx.progress.update(ctx.name, description=f"widened {change}")
    count = load_staging(ctx.settings, staging, columns, rows, snapshot=snapshot,
                         run_id=ctx.args.get("run_id"), generation=pointer.get("generation"),
                         keys=keys, changes_snapshot=log)
    out = {"staging": staging, "rows": count, "copied": True,
           "mode": "full" if keys is None else "delta"}
    if keys is not None:
        out["keys"] = len(keys)
    else:
        out["why"] = reason
    return out


def _full_reason(ctx: JobContext, state: dict[str, Any] | None, pointer: dict[str, Any],
                 log: str | None, reload: bool) -> str | None:
    """Why staging takes the full state this time (None: only the changed keys)."""
    if ctx.args.get("full") == "true":
        return "requested (--full)"
    if reload:
        return "requested (--force or --reset-bookmark)"
    if state is None:
        return "first load"
    if state["generation"] != pointer.get("generation"):
        return "a new bronze full load"
    if log is None or state["changes_snapshot"] is None:
        return "no change log to follow yet"
    return None


def load(ctx: JobContext, stagings: Sequence[str], procedure: str) -> dict[str, Any]:
    """Stage, then CALL the procedure, unless `--call_procedure false`: the state machine
    runs the CALL itself (redshift-data:executeStatement on AWS), as its own state."""
    staged = [stage(ctx, s) for s in stagings]
    warnings = [s.pop("warning") for s in staged if "warning" in s]
    if ctx.args.get("call_procedure", "true").lower() == "false":
        return {"procedure": None, "staged": staged, "warnings": warnings}
    ctx.progress.update(ctx.name, description=f"CALL sales.{procedure}()")
    warnings += call(ctx.settings, procedure, ctx.args.get("run_id"))
    return {"procedure": procedure, "staged": staged, "warnings": warnings,
            "merged": procedure_state(ctx.settings, procedure)}


def run(ctx: JobContext) -> dict[str, Any]:
    try:
        job = load_of(ctx.name)
    except ValueError as exc:
        raise ConfigError(str(exc), hint="pass `--JOB_NAME` with one of those names") from None
    return load(ctx, job.staging, job.procedure)


def main() -> int:
    return submit_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
