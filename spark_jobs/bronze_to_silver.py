"""Glue job `bronze_to_silver`: apply DMS change files to a table's current silver state.

    spark-submit spark_jobs/bronze_to_silver.py --JOB_NAME bronze_to_silver --table orders
    shoplake job run bronze_to_silver --table orders [--reset-bookmark]

Reads only bronze files its bookmark has not seen (all of them with --reset-bookmark, or
when bronze was rebuilt), validates and cleans them (`clean`: casts, trims, hashes PII,
sends failing rows to quarantine with the reason), cuts them to the latest change per key
by binlog order, and MERGE INTOs the table's Iceberg table (pipeline.glue.silver): the
latest change per key wins, deletes remove the key, a replayed file changes nothing. A
first run, a rebuilt bronze or a widened source column replaces the table in one commit
(`merge` over the whole state) instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipeline.aws.secrets import pii_salt
from pipeline.catalog.files import FileIndex, behind_the_crawler, list_table_files
from pipeline.catalog.store import find_table, get_table
from pipeline.cdc.format import is_load_key, write_order
from pipeline.errors import TerminalError
from pipeline.glue import bookmarks, iceberg, silver
from pipeline.glue.errors import java_line
from pipeline.glue.jobs import SOURCE_TABLES, JobContext, submit_main
from spark_jobs.silver_model import TABLES, SilverTable

LOG = logging.getLogger(__name__)

OP, TS, SEQ = "Op", "commit_ts", "AR_H_CHANGE_SEQ"


# -- pure transformations (unit-testable on local DataFrames) -------------------------------
def clean(changes: DataFrame, spec: SilverTable, salt: str, ingest_date: str,
          ts_column: str = TS) -> tuple[DataFrame, DataFrame]:
    """(valid rows in silver shape plus `_op`, quarantined rows with `_reason`)."""
    df = changes
    source_cols = {spec.source_column(n) for n in spec.names} | set(spec.required)
    absent = {col for col in source_cols if col not in df.columns}
    for col in absent:  # files written before the column existed, or after it went
        df = df.withColumn(col, F.lit(None).cast("string"))
    if OP not in df.columns:  # full-load files without IncludeOpForFullLoad
        df = df.withColumn(OP, F.lit("I"))
    reasons: list[Column] = []
    typed: dict[str, Column] = {}
    for name, typ in spec.columns:
        src = spec.source_column(name)
        raw = F.col(src)
        if name.endswith("_hash"):
            continue
        value = F.regexp_replace(F.trim(raw.cast("string")), r"\s+", " ") \
            if typ == "string" else raw
        if src in spec.lowercase:
            value = F.lower(value)
        if typ != "string":
            value = value.cast(typ)
            # a value present in bronze that does not cast (e.g. a bad date) is an error
            reasons.append(F.when(raw.isNotNull() & value.isNull(),
                                  F.concat(F.lit(f"unparsable `{src}`: '"),
                                           raw.cast("string"), F.lit("'"))))
        typed[name] = value
    for key in spec.primary_key:
        reasons.append(F.when(F.col(key).isNull(), F.lit(f"null primary key `{key}`")))
    upsert = F.col(OP) != "D"
    types = dict(spec.columns)
    for col in spec.required:
        if col in absent:  # the source table lost it (`ALTER TABLE ... RENAME COLUMN`)
            reasons.append(F.when(upsert, F.lit(f"the change has no column `{col}`: renamed "
                                                "or dropped at the source")))
            continue
        target = typed.get(col, F.col(col))
        # A NOT NULL DATETIME arrives NULL only as a zero date ('0000-00-00', which the
        # source's sql_mode may accept): say so, it is what the user must look for.
        why = (f"missing `{col}` (NULL, or a zero date such as '0000-00-00' at the source)"
               if types.get(col) in ("timestamp", "date") else f"missing `{col}`")
        reasons.append(F.when(upsert & target.isNull() & F.col(col).isNull(), F.lit(why)))
    for col, allowed in spec.enums.items():
        reasons.append(F.when(upsert & typed[col].isNotNull() & ~typed[col].isin(*allowed),
                              F.concat(F.lit(f"unknown {col} '"), typed[col], F.lit("'"))))
    for col in spec.non_negative:
        reasons.append(F.when(upsert & (typed[col] < 0), F.lit(f"negative `{col}`")))
    for col in spec.positive:
        reasons.append(F.when(upsert & (typed[col] <= 0), F.lit(f"non-positive `{col}`")))
    for col in spec.pii:
        normalised = F.lower(F.trim(F.col(col))) if col == "email" else \
            F.regexp_replace(F.col(col), r"[^0-9+]", "")
        typed[f"{col}_hash"] = F.when(F.col(col).isNull(), F.lit(None)).otherwise(
            F.sha2(F.concat(F.lit(salt), normalised), 256))
    reason = F.concat_ws("; ", F.array_compact(F.array(*reasons))) if reasons else F.lit("")
    df = df.withColumn("_reason", F.when(reason == "", None).otherwise(reason))
    meta = [F.col(SEQ).alias("_change_seq"),
            F.to_timestamp(F.col(ts_column).cast("string")).alias("_commit_ts"),
            F.lit(ingest_date).cast("date").alias("ingest_date")]
    valid = df.filter(F.col("_reason").isNull()).select(
        *[typed[n].alias(n) for n in spec.names], *meta, F.col(OP).alias("_op"))
    raw_cols = list(changes.columns)
    quarantined = df.filter(F.col("_reason").isNotNull()).select(
        *[F.col(c).cast("string").alias(c) for c in raw_cols if c not in spec.pii],
        F.col("_reason"), F.lit(ingest_date).alias("ingest_date"))
    return valid, quarantined


def merge(current: DataFrame | None, valid: DataFrame, spec: SilverTable) -> DataFrame:
    """Latest change per key wins (binlog order); deletes drop the key; on equal sequence
    (a replayed file) the current row is kept, so a replay changes nothing."""
    # `_run_id` (the pipeline run that wrote the row) when the changes carry it.
    meta_names = ["_change_seq", "_commit_ts", "ingest_date"] + \
        (["_run_id"] if "_run_id" in valid.columns else [])
    cols = spec.names + meta_names
    # Both sides in the spec's types: a widened decimal makes the old state's column
    # narrower than the new changes', and the state takes the wider one.
    typed = [F.col(n).cast(t).alias(n) for n, t in spec.columns]
    meta = [F.col(c) for c in meta_names]
    incoming = valid.select(*typed, *meta, "_op", F.lit(0).alias("_src"))
    if current is not None:
        old = current if "_run_id" in current.columns or "_run_id" not in meta_names else \
            current.withColumn("_run_id", F.lit(None).cast("string"))
        incoming = old.select(*typed, *meta, F.lit("I").alias("_op"),
                              F.lit(1).alias("_src")).unionByName(incoming)
    w = Window.partitionBy(*spec.primary_key).orderBy(F.col("_change_seq").desc(),
                                                      F.col("_src").desc())
    return (incoming.withColumn("_rn", F.row_number().over(w))
            .filter((F.col("_rn") == 1) & (F.col("_op") != "D"))
            .select(*cols))


HELD_COLUMNS = ("key", "change_seq", "op", "reason", "quarantined_run", "quarantined_at")
"""One row per key whose latest change is held in quarantine (gold is behind for it)."""


def hold(previous: DataFrame | None, quarantined: DataFrame, valid: DataFrame,
         spec: SilverTable, run_id: str, at: str) -> DataFrame:
    """The keys still held after this batch: those held before or quarantined now, whose
    latest quarantined change no valid change (update or delete) has superseded since.

    A quarantined update leaves silver (and gold) on the key's previous value; this is the
    list reconcile reports as "gold is behind the source". Rows without a key cannot be
    superseded or loaded and are left out (they stay in the quarantine files).
    """
    key = spec.primary_key[0]
    fresh = (quarantined.filter(F.col(key).isNotNull())
             .select(F.col(key).cast("string").alias("key"), F.col(SEQ).alias("change_seq"),
                     F.col(OP).alias("op"), F.col("_reason").alias("reason"),
                     F.lit(run_id).alias("quarantined_run"),
                     F.lit(at).alias("quarantined_at")))
    held = fresh if previous is None else previous.select(*HELD_COLUMNS).unionByName(fresh)
    latest = Window.partitionBy("key").orderBy(F.col("change_seq").desc())
    held = held.withColumn("_rn", F.row_number().over(latest)).filter("_rn = 1").drop("_rn")
    applied = valid.groupBy(F.col(key).cast("string").alias("key")).agg(
        F.max("_change_seq").alias("_applied"))
    return (held.join(applied, "key", "left")
            .filter(F.col("_applied").isNull() | (F.col("_applied") < F.col("change_seq")))
            .select(*HELD_COLUMNS))


# -- reading bronze ---------------------------------------------------------------------------
_SPARK_TYPES = {"bigint": T.LongType(), "int": T.IntegerType(), "double": T.DoubleType(),
                "string": T.StringType(), "timestamp": T.TimestampNTZType(),
                "date": T.DateType(), "boolean": T.BooleanType()}


def spark_type(glue: str) -> T.DataType:
    if glue.startswith("decimal("):
        p, s = glue[8:-1].split(",")
        return T.DecimalType(int(p), int(s))
    return _SPARK_TYPES.get(glue, T.StringType())


def read_bronze(spark: SparkSession, ctx: JobContext, table: str, keys: list[str],
                index: dict[str, Any]) -> DataFrame:
    """Crawled bronze files (`index`: the crawler's per-file columns) as one DataFrame, in
    the catalog table's column order. Files are read in groups of equal columns and types
    (CSV is positional), then unioned by name."""
    settings = ctx.settings
    catalog = [c["Name"] for c in get_table(settings, table)["StorageDescriptor"]["Columns"]]
    # Each group is read with its files' own types (an ALTER may have widened a column
    # since); unionByName then widens to the common type.
    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for key in keys:
        groups.setdefault(tuple((c[0], c[1]) for c in index[key]["columns"]), []).append(key)
    frames = []
    bucket = settings.lake.bronze_bucket
    for columns, group in groups.items():
        csv = group[0].endswith(".csv")
        # CSV stays text here: `clean` casts it and quarantines what does not parse, where a
        # typed CSV read would silently turn a bad value into NULL.
        schema = T.StructType([T.StructField(n, T.StringType() if csv else spark_type(t))
                               for n, t in columns])
        paths = [silver.s3a(bucket, k) for k in group]
        reader = spark.read.schema(schema)
        if csv:
            frames.append(reader.option("header", True)
                          .option("nullValue", settings.cdc.csv_null_value).csv(paths))
        else:
            frames.append(reader.parquet(*paths))
    df = frames[0]
    for other in frames[1:]:
        df = df.unionByName(other, allowMissingColumns=True)
    return df.select(*[c for c in catalog if c in df.columns])


# -- the job ----------------------------------------------------------------------------------
COMMIT_ATTEMPTS = 3
"""MERGE attempts when another writer's commit conflicts (Iceberg retries its own commit
first; a conflict it cannot resolve means the base changed under the MERGE)."""


def run_table(ctx: JobContext, table: str) -> dict[str, Any]:
    settings, spark = ctx.settings, ctx.spark
    entry = find_table(settings, table)
    spec = TABLES[table].with_source_types(
        {c["Name"]: c["Type"] for c in entry["StorageDescriptor"]["Columns"]} if entry else {})
    schema = settings.mysql.database
    bookmark = bookmarks.load_bookmark(settings, ctx.name, table)
    if ctx.args.get("reset-bookmark") == "true":
        bookmark = bookmarks.Bookmark(ctx.name, table)
    state, notice = _silver_state(settings, table)
    if state is None and bookmark.known():
        # No silver to apply the new files to (migrated, or its files lost): from the start.
        bookmark = bookmarks.Bookmark(ctx.name, table)
    # Bounded: the full-load files, and the files after the bookmark's watermark.
    current_files = list_table_files(settings, schema, table, bookmark.after,
                                     [bookmark.after, *bookmark.skipped])
    index = FileIndex.load(settings, table)
    entries = index.entries(settings, current_files)
    # A processed file that has since become unreadable (the crawler rejected its new
    # content) is damage, not a rebuilt bronze: its changes are in silver already, so the
    # table goes on, and the file is reported (it could not rebuild silver any more).
    damaged = {k: etag for k, etag in bookmark.known().items()
               if k in current_files and current_files[k] != etag
               and entries.get(k, {}).get("rejected") and entries[k]["etag"] == current_files[k]}
    keys, rebuilt = bookmarks.new_files(bookmark, current_files | damaged)
    if rebuilt:  # from nothing: the watermark's file is gone or of another bronze
        bookmark = bookmarks.Bookmark(ctx.name, table)
        current_files = list_table_files(settings, schema, table)
        entries = index.entries(settings, current_files)
        keys = sorted(current_files)
    # A follower keeps writing bronze; files the crawler has not seen (in this version)
    # wait for the next run, and so do the files after them (the bookmark keeps the
    # newest processed change file: nothing before it may be left out).
    unseen = behind_the_crawler(keys, entries, index.watermark)
    for key in unseen:
        LOG.warning("`%s` leaves out s3://%s/%s: put into bronze behind the crawler (its name "
                    "sorts before the newest file crawled), so never cataloged", table,
                    settings.lake.bronze_bucket, key)
    keys = [k for k in keys if k not in unseen]
    waiting = [k for k in keys if entries.get(k, {}).get("etag") != current_files.get(k)]
    if waiting:
        LOG.info("%d new file(s) of `%s` are not crawled yet; left for the next run",
                 len(waiting), table)
        first = min(write_order(k) for k in waiting)
        keys = [k for k in keys if write_order(k) < first]
    left_out = [k for k in keys if entries.get(k, {}).get("rejected")
                and not entries[k].get("blocks")]
    keys, blocked = _before_rejected(settings, table, keys, entries)
    # A rebuilt bronze (or --reset-bookmark, or no silver yet) starts from nothing rather
    # than a stale state; the current snapshot stays readable until the replace commits, so
    # a crash (or Ctrl-C) in between leaves the table as it was, not gone.
    rebuild = rebuilt or not bookmark.known()
    base = None if rebuild else state
    extra = {**blocked, **({"notice": notice} if notice else {})}
    if not keys:
        return {"table": table, "files": 0, "changes": 0, "quarantined": 0,
                "held": (state or {}).get("held", 0), "rows": (state or {}).get("rows", 0),
                "mode": "unchanged", **extra}
    # The same input gives the same run id. ETags count: a rebuilt bronze reuses the names
    # (LOAD00000001...) with other content.
    run_id = hashlib.sha256("\n".join(f"{k} {current_files[k]}" for k in keys)
                            .encode()).hexdigest()[:16]
    if base is not None and base["run_id"] == run_id and base["settled"]:
        # A crash came between the commit of this input and saving the bookmark: done.
        _save_bookmark(settings, bookmark, current_files, keys, run_id, left_out)
        return {"table": table, "files": len(keys), "changes": 0, "quarantined": 0,
                "held": base["held"], "rows": base["rows"], "run_id": run_id,
                "already_published": True, "mode": "unchanged", **extra}
    pipeline_run = ctx.args.get("run_id") or run_id
    ingest_date = datetime.now(timezone.utc).date().isoformat()
    ctx.progress.update(ctx.name, description=f"{table}: {len(keys)} new file(s)")
    clock = _Clock()
    changes = read_bronze(spark, ctx, table, keys, entries).cache()
    try:
        valid, quarantined = clean(changes, spec, pii_salt(settings), ingest_date,
                                   settings.cdc.timestamp_column)
        valid = valid.withColumn("_run_id", F.lit(pipeline_run))
        n_changes = changes.count()
        newest = newest_change(changes, settings.cdc.timestamp_column,
                               (base or {}).get("newest_change"))
        quarantined = quarantined.cache()
        n_bad = quarantined.count()
        clock.lap("read")
        if n_bad:
            quarantined.write.mode("overwrite").parquet(
                silver.quarantine_path(settings, table, run_id))
            LOG.warning("%d row(s) of `%s` quarantined in run %s", n_bad, table, run_id)
        name = iceberg.table_name(settings, table)
        if base is None:
            mode = "rebuild"
        elif _schema_differs(spark, name, valid, spec):
            mode = "rewrite"  # the source widened a column: the table takes the new types
        else:
            mode = "merge"
        gen = (base or {}).get("generation") or generation(
            {**current_files, **({} if rebuild else bookmark.loads)},
            [k for k in current_files if k in keys or (not rebuild and k in bookmark.loads)])
        clock.lap("plan")
        if mode == "merge":
            batch = latest_changes(valid, spec).cache()
            merged = _merge_into(spark, name, batch, spec, table)
        else:
            batch = None
            current = silver.read_current(spark, settings, table, base) if base else None
            # Clustered by key: each data file holds a key range, so a later MERGE of a
            # few keys (new ones at the top, recent ones changing) reads only the files
            # whose range holds them (`_merge_into`'s key bounds), not the whole table.
            (key,) = spec.primary_key
            rows = merge(current, valid, spec)
            rows = rows.repartitionByRange(settings.spark.shuffle_partitions, key) \
                .sortWithinPartitions(key)
            _replace(rows, name, iceberg.table_location(settings, table),
                     {"generation": gen or ""})
            merged = None
        clock.lap("commit")
        n_held = 0
        previous = None if rebuild else silver.read_held(spark, settings, table)
        if n_bad or previous is not None:  # nothing held before or now: nothing to track
            held = hold(previous, quarantined, valid, spec, pipeline_run,
                        datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")).cache()
            n_held = held.count()
            _replace(held, iceberg.held_table_name(settings, table),
                     iceberg.table_location(settings, table,
                                            f"{settings.mysql.database}_held"), {})
            held.unpersist()
        elif rebuild:  # a rebuilt table holds nothing: the keys held before go with it
            spark.sql(f"DROP TABLE IF EXISTS {iceberg.held_table_name(settings, table)} PURGE")
        # The change log after the commit (a reader that sees an entry finds its change in
        # silver) and before the properties (a settled table has its entries logged; a
        # crash in between re-runs the input, and a logged key twice is harmless).
        _log_changes(spark, settings, table, spec, batch, pipeline_run)
        if batch is not None:
            batch.unpersist()
        clock.lap("held_and_log")
    finally:
        changes.unpersist()
    after = silver.current_snapshot(settings, table)
    _set_properties(spark, name, {"snapshot": after["snapshot"], "run_id": run_id,
                                  "pipeline_run": pipeline_run, "held": str(n_held),
                                  "newest_change": newest or "", "generation": gen or ""})
    _save_bookmark(settings, bookmark, current_files, keys, run_id, left_out)  # after the commit
    quarantined.unpersist()
    clock.lap("properties")
    if notice and notice.startswith("migrat"):
        removed = silver.remove_legacy(settings, table)
        LOG.info("removed %d object(s) of `%s`'s pre-Iceberg silver", removed, table)
    return {"table": table, "files": len(keys), "changes": n_changes, "quarantined": n_bad,
            "held": n_held, "rows": after["rows"], "run_id": run_id,
            "snapshot": after["snapshot"], "mode": mode, "seconds": clock.laps,
            **({"merged": merged} if merged is not None else {}), **extra}


class _Clock:
    """Seconds per phase of a run (read, plan, commit, held_and_log, properties), for the run
    report and the bench."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self._last, 3)
        self._last = now


def _silver_state(settings: Any, table: str) -> tuple[dict[str, Any] | None, str | None]:
    """(the table's current state, a notice when there is no usable one: an old-format
    table to migrate, or a table whose files S3 lost)."""
    try:
        state = silver.current_snapshot(settings, table)
    except silver.SilverFilesLostError as exc:
        iceberg.forget_table(settings, settings.mysql.database, table)
        iceberg.forget_table(settings, f"{settings.mysql.database}_held", table)
        iceberg.forget_table(settings, iceberg.changes_namespace(settings), table)
        notice = (f"silver `{table}` lost its files in S3 (LocalStack forgets objects on "
                  f"restart): rebuilt from bronze")
        LOG.warning("%s (%s)", notice, exc.message)
        return None, notice
    if state is None and silver.legacy_pointer(settings, table) is not None:
        notice = (f"migrated silver `{table}` from the pre-Iceberg snapshot format: rebuilt "
                  f"from bronze as an Iceberg table")
        LOG.warning("%s", notice)
        return None, notice
    return state, None


def latest_changes(valid: DataFrame, spec: SilverTable) -> DataFrame:
    """One change per key, the latest by binlog order (MERGE INTO refuses a source with two
    rows for one key). A delete stays a delete: the MERGE removes the key."""
    w = Window.partitionBy(*spec.primary_key).orderBy(F.col("_change_seq").desc())
    return valid.withColumn("_rn", F.row_number().over(w)).filter("_rn = 1").drop("_rn")


def _merge_into(spark: SparkSession, name: str, batch: DataFrame, spec: SilverTable,
                table: str) -> dict[str, int]:
    """MERGE the batch into the table with today's semantics: a change newer (by binlog
    position) than the row's replaces it, a newer delete removes it, a key not present is
    inserted unless deleted; an equal or older change (a replayed file) changes nothing."""
    cols = spec.names + ["_change_seq", "_commit_ts", "ingest_date", "_run_id"]
    typed = [F.col(n).cast(t).alias(n) for n, t in spec.columns]
    batch = batch.select(*typed, "_change_seq", "_commit_ts", "ingest_date", "_run_id", "_op")
    (key,) = spec.primary_key
    stats = batch.groupBy("_op").agg(F.count("*").alias("n"), F.min(key).alias("lo"),
                                     F.max(key).alias("hi")).collect()
    counts = {r["_op"]: r["n"] for r in stats}
    if not stats:  # every change of the run was quarantined: nothing to merge
        return {"inserts_or_updates": 0, "deletes": 0}
    # The batch's key range on the target side: MERGE then reads only the data files whose
    # key bounds overlap it (Iceberg prunes them by their column metrics), not every file.
    # It changes no match: every source key lies in the range.
    lo, hi = min(r["lo"] for r in stats), max(r["hi"] for r in stats)
    on = f"t.`{key}` = s.`{key}` AND t.`{key}` BETWEEN {int(lo)} AND {int(hi)}"
    view = f"_changes_{table}"
    batch.createOrReplaceTempView(view)
    sets = ", ".join(f"t.`{c}` = s.`{c}`" for c in cols)
    newer = "s._change_seq > t._change_seq"
    statement = (f"MERGE INTO {name} t USING {view} s ON {on} "
                 f"WHEN MATCHED AND {newer} AND s._op = 'D' THEN DELETE "
                 f"WHEN MATCHED AND {newer} THEN UPDATE SET {sets} "
                 f"WHEN NOT MATCHED AND s._op <> 'D' THEN INSERT "
                 f"({', '.join(f'`{c}`' for c in cols)}) "
                 f"VALUES ({', '.join(f's.`{c}`' for c in cols)})")
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            spark.sql(statement)
            break
        except Exception as exc:  # noqa: BLE001 - py4j wraps the JVM's exceptions
            text = str(exc)
            if not any(m in text for m in ("CommitFailedException", "ValidationException",
                                           "Found conflicting files")):
                raise
            if attempt == COMMIT_ATTEMPTS:
                raise silver.SilverConflictError(table, java_line(text)) from None
            LOG.warning("silver `%s`: commit conflict (attempt %d of %d), merging again",
                        table, attempt, COMMIT_ATTEMPTS)
    spark.catalog.dropTempView(view)
    return {"inserts_or_updates": counts.get("I", 0) + counts.get("U", 0),
            "deletes": counts.get("D", 0)}


CHANGE_LOG_COLUMNS = "key BIGINT, _change_seq STRING, _op STRING, _run_id STRING"


def _log_changes(spark: SparkSession, settings: Any, table: str, spec: SilverTable,
                 batch: DataFrame | None, pipeline_run: str) -> None:
    """Append the keys this run changed to the table's change log (`silver.logged_keys`);
    a replace (`batch` None) appends the full-state marker instead."""
    name = iceberg.changes_table_name(settings, table)
    location = iceberg.table_location(settings, table, iceberg.changes_namespace(settings))
    spark.sql(f"CREATE TABLE IF NOT EXISTS {name} ({CHANGE_LOG_COLUMNS}) USING iceberg "
              f"LOCATION '{location}' "
              f"TBLPROPERTIES ('format-version' = '2')")
    if batch is None:
        rows = spark.createDataFrame([(None, None, silver.FULL_MARKER, pipeline_run)],
                                     CHANGE_LOG_COLUMNS)
    else:
        (key,) = spec.primary_key
        rows = batch.select(F.col(key).cast("bigint").alias("key"), "_change_seq", "_op",
                            "_run_id")
    rows.writeTo(name).append()


def _replace(df: DataFrame, name: str, location: str | None, props: dict[str, str]) -> None:
    """Create or replace table `name` with `df`'s rows in one commit (the old snapshot stays
    readable until it lands); at `location`, or where its catalog puts it (None)."""
    writer = df.writeTo(name).using("iceberg")
    if location is not None:
        writer = writer.tableProperty("location", location)
    for key, value in {**iceberg.TABLE_PROPERTIES,
                       **{silver.PROPERTY + k: v for k, v in props.items()}}.items():
        writer = writer.tableProperty(key, value)
    writer.createOrReplace()


def _schema_differs(spark: SparkSession, name: str, valid: DataFrame,
                    spec: SilverTable) -> bool:
    """Whether the table's columns are not those the changes now carry (a widened decimal,
    a column silver did not have): then the table is rewritten with the new types."""
    have = {f.name: f.dataType for f in spark.table(name).schema.fields}
    wanted = {f.name: f.dataType for f in
              valid.select(*[F.col(n).cast(t).alias(n) for n, t in spec.columns],
                           "_change_seq", "_commit_ts", "ingest_date", "_run_id").schema.fields}
    return have != wanted


def _set_properties(spark: SparkSession, name: str, props: dict[str, str]) -> None:
    pairs = ", ".join(f"'{silver.PROPERTY}{k}' = '{str(v).replace(chr(39), '')}'"
                      for k, v in props.items())
    spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ({pairs})")


def generation(etags: dict[str, str], processed: list[str]) -> str | None:
    """The bronze full load a silver state derives from: a digest of the full-load files
    (LOAD00000001, ...) among `processed`, with their ETags. A new full load (a re-snapshot)
    rewrites them with other content, so it gives a new generation, and gold rebuilds its
    SCD2 dimensions from it; reprocessing the same bronze (`--reset-bookmark`) gives the same.
    None when no full-load file was processed."""
    loads = sorted(f"{k} {etags[k]}" for k in processed
                   if k in etags and is_load_key(k))
    if not loads:
        return None
    return hashlib.sha256("\n".join(loads).encode()).hexdigest()[:16]


def newest_change(changes: DataFrame, ts_column: str, before: str | None) -> str | None:
    """The latest commit time among `changes` and the snapshot they apply to (`before`),
    as `yyyy-MM-dd HH:mm:ss.SSSSSS` UTC: how fresh the table's silver (and gold) can be."""
    newest = changes.agg(F.date_format(F.max(F.to_timestamp(F.col(ts_column).cast("string"))),
                                       "yyyy-MM-dd HH:mm:ss.SSSSSS")).first()[0]
    return max((t for t in (newest, before) if t), default=None)


def _before_rejected(settings: Any, table: str, keys: list[str], index: dict[str, Any]
                     ) -> tuple[list[str], dict[str, Any]]:
    """The new files to process, given the files the crawler rejected.

    An unreadable file with a DMS name is part of the table's change stream (truncated,
    say): applying later changes without it could resurrect a deleted row, so the table
    stops before it and its later files wait. A file that is not DMS output (a foreign
    name or foreign columns) is not part of the stream and is only left out. Either way
    it is reported (as held, by `shoplake quarantine` and reconcile) until it is replaced
    or removed.
    """
    bad = {k: index[k]["rejected"] for k in keys if index[k].get("rejected")}
    if not bad:
        return keys, {}
    in_stream = sorted((k for k in bad if index[k].get("blocks")), key=write_order)
    ordered = sorted((k for k in keys if k not in bad), key=write_order)
    if in_stream:
        stop = write_order(in_stream[0])
        ordered = [k for k in ordered if write_order(k) < stop]
    bucket = settings.lake.bronze_bucket
    for key, why in bad.items():
        LOG.warning("`%s` skips s3://%s/%s: %s%s", table, bucket, key, why,
                    "; later files wait for it" if key == (in_stream or [None])[0] else "")
    return ordered, {"rejected_files": len(bad),
                     "blocked_at": f"s3://{bucket}/{in_stream[0]}" if in_stream else None}


def _save_bookmark(settings: Any, bookmark: bookmarks.Bookmark, current: dict[str, str],
                   keys: list[str], run_id: str, left_out: list[str]) -> None:
    bookmark.advance(current, keys, left_out)
    bookmark.run_id = run_id
    bookmarks.save_bookmark(settings, bookmark)


# -- warm-up ---------------------------------------------------------------------------------
WARM_CATALOG = "shoplake_warm"
WARM_TABLES = ("orders", "customers")
"""The widest table, and the one with PII hashing: between them every expression the job
compiles for a batch."""


def _warm_changes(spark: SparkSession, spec: SilverTable, first: int, last: int,
                  seq_base: int) -> DataFrame:
    """Bronze-shaped changes of keys first..last-1: DMS columns, each source column with a
    value that passes the silver rules; every seventh key a delete."""
    cols = []
    for name, typ in spec.columns:
        if name.endswith("_hash"):
            continue
        src, key = spec.source_column(name), F.col("id")
        if name in spec.primary_key:
            value = key.cast(typ)
        elif name in spec.enums:
            value = F.lit(spec.enums[name][0])
        elif typ == "string":
            value = F.concat(F.lit("w"), key.cast("string"))
        elif typ in ("timestamp", "date"):
            value = F.lit("2026-01-01 00:00:00").cast(typ)
        elif typ == "boolean":
            value = key % 2 == 0
        else:
            value = (key % 97 + 1).cast(typ)
        cols.append(value.alias(src))
    cols += [F.concat(F.lit("w"), F.col("id").cast("string"), F.lit("@example.com")).alias(c)
             for c in spec.pii]
    return spark.range(first, last).select(
        F.when(F.col("id") % 7 == 0, F.lit("D")).otherwise(F.lit("U")).alias(OP),
        F.lit("2026-01-01 00:00:00.000000").alias(TS), *cols,
        F.format_string("%035d", F.col("id") + seq_base).alias(SEQ))


WARM_PREFIX = "shoplake-warm-"
"""Local warm-up folders: shoplake-warm-<pid>-<random>, under the system's temp folder."""


def _remove_stale_warm_folders() -> None:
    """The folders of warm-ups whose worker was killed before it could remove its own
    (kill -9 during the warm-up): those of processes no longer alive."""
    import shutil
    import tempfile
    from pathlib import Path

    for folder in Path(tempfile.gettempdir()).glob(f"{WARM_PREFIX}*-*"):
        pid = folder.name.removeprefix(WARM_PREFIX).split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass  # alive, another user's


def warm_up(spark: SparkSession, settings: Any) -> float:
    """A fresh JVM's first batch took 15-30 s where a warm one takes 2-3 s: class loading,
    Catalyst's rules and the JIT, not the data. Run the job's clean, rebuild and MERGE once
    on scratch tables outside the lake (a Hadoop catalog under a scratch prefix), so a
    worker pays that before its first task instead of during it. Seconds taken."""
    import shutil
    import tempfile
    import uuid

    from pipeline.aws.s3 import delete_keys, list_objects

    started = time.monotonic()
    # A local folder when Spark runs in this process; on a cluster (compose) the executors
    # write the files, so the artifacts bucket.
    local = settings.spark.master.startswith("local")
    if local:
        _remove_stale_warm_folders()
    folder = tempfile.mkdtemp(prefix=f"{WARM_PREFIX}{os.getpid()}-") if local else ""
    bucket, prefix = settings.lake.artifacts_bucket, f"spark-warm-up/{uuid.uuid4().hex}/"
    spark.conf.set(f"spark.sql.catalog.{WARM_CATALOG}", "org.apache.iceberg.spark.SparkCatalog")
    spark.conf.set(f"spark.sql.catalog.{WARM_CATALOG}.type", "hadoop")
    spark.conf.set(f"spark.sql.catalog.{WARM_CATALOG}.warehouse",
                   f"file://{folder}" if local else silver.s3a(bucket, prefix))
    try:
        # The lake's catalog and S3 reads, read-only: a silver table, if there is one yet.
        for table in WARM_TABLES:
            try:
                spark.table(iceberg.table_name(settings, table)).limit(1).collect()
            except Exception:  # noqa: BLE001 - no silver yet: nothing to read
                pass
        for table in WARM_TABLES:
            spec = TABLES[table]
            (key,) = spec.primary_key
            name = f"{WARM_CATALOG}.warm.{table}"
            valid, _ = clean(_warm_changes(spark, spec, 1, 400, 0), spec, "warm-up",
                             "2026-01-01")
            rows = merge(None, valid.withColumn("_run_id", F.lit("warm-up")), spec)
            _replace(rows.repartitionByRange(2, key).sortWithinPartitions(key), name, None, {})
            valid, _ = clean(_warm_changes(spark, spec, 300, 500, 1000), spec, "warm-up",
                             "2026-01-01")
            batch = latest_changes(valid.withColumn("_run_id", F.lit("warm-up")), spec)
            _merge_into(spark, name, batch, spec, f"warm_{table}")
            spark.table(name).count()
    finally:
        if local:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            delete_keys(settings, bucket, sorted(list_objects(settings, bucket, prefix)))
    return time.monotonic() - started


def run(ctx: JobContext) -> dict[str, Any]:
    tables = [ctx.args["table"]] if ctx.args.get("table") else list(SOURCE_TABLES)
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise TerminalError(f"no silver model for table `{unknown[0]}`",
                            hint=f"tables: {', '.join(TABLES)}")
    results = [run_table(ctx, t) for t in tables]
    return results[0] if len(results) == 1 else {"tables": results}


def main() -> int:
    return submit_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
