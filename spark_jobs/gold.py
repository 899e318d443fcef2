"""What the load_* jobs share: silver snapshot -> staging (COPY) -> stored procedure.

Staging holds the full current state of a silver table. `sales.load_state` records which
silver (Iceberg) snapshot each staging table holds (written in the COPY's transaction), so a job
whose input has not changed skips the COPY, and two jobs that need the same staging table
load it once.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipeline.errors import TerminalError
from pipeline.glue import silver
from pipeline.glue.jobs import JobContext
from pipeline.warehouse import STAGING_COLUMNS, call, load_staging, loaded_snapshot
from pipeline.warehouse.schema import widen_for_staging
from pipeline.warehouse.widen import Numeric

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
    """Load `staging` from its silver table's current snapshot unless already loaded."""
    table, renames = STAGING[staging]
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
        return {"staging": staging, "rows": 0, "copied": False,
                "warning": f"silver table `{table}` has no valid row: all {pointer['held']} "
                           f"of its rows are held in quarantine ({'; '.join(reasons[:2])}); "
                           f"`{staging}` and gold keep their rows"}
    snapshot = silver.snapshot_id(pointer)
    if not reload and loaded_snapshot(ctx.settings, staging) == snapshot:
        return {"staging": staging, "rows": pointer["rows"], "copied": False}
    columns = STAGING_COLUMNS[staging]
    df = silver.read_current(ctx.spark, ctx.settings, table, pointer)  # that snapshot's rows
    df = df.select(*[F.col(renames.get(c, c)).alias(c) for c in columns])
    # A decimal silver carries wider than staging (the source widened it): widen staging
    # and the gold columns computed from it first, or COPY would round every value.
    for f in df.schema.fields:
        if isinstance(f.dataType, T.DecimalType):
            incoming = Numeric(f.dataType.precision, f.dataType.scale)
            for change in widen_for_staging(ctx.settings, staging, f.name, incoming):
                ctx.progress.update(ctx.name, description=f"widened {change}")
    rows = (tuple(r) for r in as_text_timestamps(df).toLocalIterator(prefetchPartitions=True))
    count = load_staging(ctx.settings, staging, columns, rows, snapshot=snapshot,
                         run_id=ctx.args.get("run_id"), generation=pointer.get("generation"))
    return {"staging": staging, "rows": count, "copied": True}


def load(ctx: JobContext, stagings: list[str], procedure: str) -> dict[str, Any]:
    """Stage, then CALL the procedure, unless `--call_procedure false`: the state machine
    runs the CALL itself (redshift-data:executeStatement on AWS), as its own state."""
    staged = [stage(ctx, s) for s in stagings]
    warnings = [s.pop("warning") for s in staged if "warning" in s]
    if ctx.args.get("call_procedure", "true").lower() == "false":
        return {"procedure": None, "staged": staged, "warnings": warnings}
    ctx.progress.update(ctx.name, description=f"CALL sales.{procedure}()")
    warnings += call(ctx.settings, procedure, ctx.args.get("run_id"))
    return {"procedure": procedure, "staged": staged, "warnings": warnings}
