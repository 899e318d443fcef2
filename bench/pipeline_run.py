"""Pipeline run: time every Glue job of the lake, full then incremental, in one process.

Prepares a fresh lake: seeds the source at `--scale` (reset), rebuilds bronze with a CDC full
load, crawls, and recreates the warehouse (`apply_ddl(reset=True)`: the staging stamps are
the load jobs' bookmarks, so a full run starts with none). Then, in one process and one
SparkSession:

  full run         bronze_to_silver per table (bookmarks reset), the two dims, the two facts;
                   `reconcile` must be exact
  incremental run  `--changes` simulator transactions (default 1% of the orders), CDC, crawl,
                   every job again; their total is held against the 30 s goal; `reconcile`
                   must be exact

Each bronze_to_silver table is also done in DuckDB on the same input (the same bronze files,
plus the previous silver snapshot in the incremental run): the files are fetched with boto3
(httpfs cannot be downloaded here), then `clean` + `merge` run as SQL. Read, SQL and a
Parquet write to a local temp file are timed separately, and the result is compared with
the snapshot Spark published (rows, keys and values). Peak RSS is reported for this process
(driver, pyarrow, DuckDB) and for Spark's JVM.

Needs a running stack (`shoplake stack up`). It replaces the source, bronze, silver and the
`sales` schema.

    .venv/bin/python bench/pipeline_run.py --scale 1 [--changes 1000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import cdc  # noqa: E402
from pipeline.aws.clients import aws_client  # noqa: E402
from pipeline.aws.s3 import list_objects  # noqa: E402
from pipeline.catalog import crawl  # noqa: E402
from pipeline.config import Settings, load_settings  # noqa: E402
from pipeline.glue import bookmarks, silver  # noqa: E402
from pipeline.glue.jobs import JOBS, SOURCE_TABLES, run_job  # noqa: E402
from pipeline.glue.session import get_spark  # noqa: E402
from pipeline.progress import LogProgress  # noqa: E402
from pipeline.source.generate import Pools, default_profile  # noqa: E402
from pipeline.source.load import connect, seed  # noqa: E402
from pipeline.source.simulate import Simulator  # noqa: E402
from pipeline.warehouse import apply_ddl, reconcile  # noqa: E402
from pipeline.warehouse.load import session  # noqa: E402
from spark_jobs.silver_model import TABLES, SilverTable  # noqa: E402

TARGET_INCREMENTAL_S = 30.0
"""Goal: the whole incremental run (every job, one process) under this many seconds."""

B2S = "bronze_to_silver"
GOLD_TABLES = {"load_dim_customer": "dim_customer", "load_dim_product": "dim_product",
               "load_fact_orders": "fact_orders", "load_fact_order_items": "fact_order_items"}
"""Load job -> the gold table whose rows it reports."""

DUCK_TYPES = {"int": "INTEGER", "bigint": "BIGINT", "string": "VARCHAR", "double": "DOUBLE",
              "timestamp": "TIMESTAMP", "date": "DATE", "boolean": "BOOLEAN"}
META = ["_change_seq", "_commit_ts", "ingest_date"]
BEGAN = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - BEGAN:7.1f}s] {text}", flush=True)


@dataclass
class Duck:
    read_s: float
    sql_s: float
    write_s: float
    rows: int
    quarantined: int
    agrees: bool
    verdict: str


@dataclass
class Row:
    job: str
    table: str
    spark_s: float
    rows: int
    note: str = ""
    duck: Duck | None = None


# -- DuckDB: the same clean + merge as spark_jobs/bronze_to_silver.py ----------------------
def _q(name: str) -> str:
    return f'"{name}"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def duck_type(glue: str) -> str:
    return glue.upper() if glue.startswith("decimal(") else DUCK_TYPES[glue]


def clean_sql(spec: SilverTable, columns: list[str], salt: str, ingest_date: str,
              ts_column: str) -> str:
    """`clean` as one SELECT over `bronze`: typed silver columns, meta, `_op`, `_reason`."""
    fill = [f"NULL::VARCHAR AS {_q(c)}" for c in
            sorted({spec.source_column(n) for n in spec.names} | set(spec.required))
            if c not in columns]
    if "Op" not in columns:
        fill.append("'I' AS \"Op\"")
    typed: dict[str, str] = {}
    reasons: list[str] = []
    for name, typ in spec.columns:
        src = spec.source_column(name)
        if name.endswith("_hash"):
            continue
        raw = _q(src)
        value = (rf"regexp_replace(trim(CAST({raw} AS VARCHAR)), '\s+', ' ', 'g')"
                 if typ == "string" else raw)
        if src in spec.lowercase:
            value = f"lower({value})"
        if typ != "string":
            value = f"TRY_CAST({value} AS {duck_type(typ)})"
            reasons.append(f"CASE WHEN {raw} IS NOT NULL AND {value} IS NULL THEN "
                           f"{_lit(f'unparsable `{src}`: ')} || '''' || CAST({raw} AS VARCHAR)"
                           " || '''' END")
        typed[name] = value
    upsert = "\"Op\" <> 'D'"
    reasons += [f"CASE WHEN {_q(k)} IS NULL THEN {_lit(f'null primary key `{k}`')} END"
                for k in spec.primary_key]
    for col in spec.required:
        target = typed.get(col, _q(col))
        reasons.append(f"CASE WHEN {upsert} AND ({target}) IS NULL AND {_q(col)} IS NULL "
                       f"THEN {_lit(f'missing `{col}`')} END")
    for col, allowed in spec.enums.items():
        t = typed[col]
        reasons.append(f"CASE WHEN {upsert} AND ({t}) IS NOT NULL AND ({t}) NOT IN "
                       f"({', '.join(_lit(a) for a in allowed)}) THEN "
                       f"{_lit(f'unknown {col} ')} || '''' || ({t}) || '''' END")
    for col in spec.non_negative:
        reasons.append(f"CASE WHEN {upsert} AND ({typed[col]}) < 0 "
                       f"THEN {_lit(f'negative `{col}`')} END")
    for col in spec.positive:
        reasons.append(f"CASE WHEN {upsert} AND ({typed[col]}) <= 0 "
                       f"THEN {_lit(f'non-positive `{col}`')} END")
    for col in spec.pii:
        normalised = (f"lower(trim({_q(col)}))" if col == "email"
                      else f"regexp_replace({_q(col)}, '[^0-9+]', '', 'g')")
        typed[f"{col}_hash"] = (f"CASE WHEN {_q(col)} IS NULL THEN NULL "
                                f"ELSE sha256({_lit(salt)} || {normalised}) END")
    reason = f"NULLIF(concat_ws('; ', {', '.join(reasons)}), '')" if reasons else "NULL"
    source = f"(SELECT *, {', '.join(fill)} FROM bronze)" if fill else "bronze"
    return (f"SELECT {', '.join(f'{typed[n]} AS {_q(n)}' for n in spec.names)}, "
            f"\"AR_H_CHANGE_SEQ\" AS _change_seq, "
            f"TRY_CAST(CAST({_q(ts_column)} AS VARCHAR) AS TIMESTAMP) AS _commit_ts, "
            f"DATE {_lit(ingest_date)} AS ingest_date, \"Op\" AS _op, {reason} AS _reason "
            f"FROM {source}")


def merge_sql(spec: SilverTable, has_current: bool) -> str:
    """`merge`: the latest change per key wins, the current row on a tie; deletes drop it."""
    cols = ", ".join(_q(c) for c in spec.names + META)
    incoming = f"SELECT {cols}, _op, 0 AS _src FROM checked WHERE _reason IS NULL"
    if has_current:
        incoming += f" UNION ALL BY NAME SELECT {cols}, 'I' AS _op, 1 AS _src FROM current"
    keys = ", ".join(_q(k) for k in spec.primary_key)
    return (f"SELECT {cols} FROM ({incoming}) QUALIFY row_number() OVER "
            f"(PARTITION BY {keys} ORDER BY _change_seq DESC, _src DESC) = 1 AND _op <> 'D'")


def scalar(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """The one value `sql` returns (fetched to the end, as DuckDB 2 requires)."""
    return con.execute(sql).fetchall()[0][0]


def _naive(table: pa.Table) -> pa.Table:
    """Spark writes TimestampType as UTC instants; bronze and DuckDB use naive UTC."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type) and f.type.tz is not None:
            table = table.set_column(i, f.name, table.column(i).cast(pa.timestamp(f.type.unit)))
    return table


def fetch(settings: Settings, bucket: str, keys: list[str]) -> pa.Table | None:
    """Parquet objects as one table; Hive partition values (`k=v/`) become columns."""
    s3 = aws_client(settings, "s3")

    def one(key: str) -> pa.Table:
        t = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        for part in key.split("/")[:-1]:
            if part.startswith("ingest_date="):
                day = datetime.strptime(part.split("=", 1)[1], "%Y-%m-%d").date()
                t = t.append_column("ingest_date", pa.array([day] * t.num_rows, pa.date32()))
        return t

    if not keys:
        return None
    with ThreadPoolExecutor(max_workers=4) as pool:
        tables = list(pool.map(one, keys))
    return _naive(pa.concat_tables(tables, promote_options="permissive"))


def snapshot(settings: Settings, table: str, snapshot_id: str) -> pa.Table | None:
    """A silver Iceberg snapshot's rows (deletes applied), read by pyiceberg."""
    table_ = silver.load_table(settings, table)
    if table_ is None:
        return None
    return _naive(table_.scan(snapshot_id=int(snapshot_id)).to_arrow())


def pii_salt(settings: Settings) -> str:
    sm = aws_client(settings, "secretsmanager")
    return json.loads(sm.get_secret_value(
        SecretId=settings.glue.pii_salt_secret)["SecretString"])["salt"]


def duck_table(settings: Settings, table: str, keys: list[str], previous: str | None,
               salt: str, workdir: Path) -> tuple[duckdb.DuckDBPyConnection, Duck]:
    """Run `table` through DuckDB on the input Spark just had; returns the connection
    (holding `result`) and the timings."""
    spec = TABLES[table]
    began = time.monotonic()
    bronze = fetch(settings, settings.lake.bronze_bucket, keys)
    current = snapshot(settings, table, previous) if previous else None
    read_s = time.monotonic() - began
    con = duckdb.connect()
    began = time.monotonic()
    if current is not None:
        con.register("current", current)
    if bronze is None:  # nothing new: the state is the previous one
        con.execute("CREATE TABLE result AS SELECT * FROM current")
        quarantined = 0
    else:
        con.register("bronze", bronze)
        ingest_date = datetime.now(UTC).date().isoformat()
        con.execute("CREATE TABLE checked AS " + clean_sql(
            spec, bronze.column_names, salt, ingest_date, settings.cdc.timestamp_column))
        con.execute("CREATE TABLE result AS " + merge_sql(spec, current is not None))
        quarantined = scalar(con, "SELECT count(*) FROM checked WHERE _reason IS NOT NULL")
    sql_s = time.monotonic() - began
    began = time.monotonic()
    con.execute(f"COPY result TO {_lit(str(workdir / f'{table}.parquet'))} (FORMAT parquet)")
    write_s = time.monotonic() - began
    rows = scalar(con, "SELECT count(*) FROM result")
    return con, Duck(read_s, sql_s, write_s, rows, quarantined, False, "")


def compare(con: duckdb.DuckDBPyConnection, spark_rows: pa.Table | None,
            spec: SilverTable) -> tuple[bool, str]:
    """Does DuckDB's `result` hold the rows of Spark's snapshot (keys and values)?"""
    if spark_rows is None:
        return False, "Spark published no snapshot"
    con.register("spark", spark_rows)
    keys = ", ".join(_q(k) for k in spec.primary_key)
    cols = ", ".join(_q(c) for c in spec.names + ["_change_seq"])

    def count(sql: str) -> int:
        return scalar(con, f"SELECT count(*) FROM ({sql})")

    duck_n, spark_n = count("SELECT * FROM result"), spark_rows.num_rows
    only_duck = count(f"SELECT {keys} FROM result EXCEPT SELECT {keys} FROM spark")
    only_spark = count(f"SELECT {keys} FROM spark EXCEPT SELECT {keys} FROM result")
    differ = count(f"SELECT {cols} FROM result EXCEPT ALL SELECT {cols} FROM spark")
    if duck_n == spark_n and not (only_duck or only_spark or differ):
        return True, "agree: rows, keys, values"
    return False, (f"DIFFER: rows {duck_n} vs {spark_n}, keys only in duckdb {only_duck}, "
                   f"only in spark {only_spark}, rows not in spark {differ}")


# -- the runs -----------------------------------------------------------------------------
def gold_rows(settings: Settings, table: str) -> int:
    with session(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM sales.{table}")
        return int(cur.fetchone()[0])


def run_pipeline(settings: Settings, full: bool, salt: str, workdir: Path) -> list[Row]:
    rows: list[Row] = []
    for table in SOURCE_TABLES:
        prefix = f"{settings.mysql.database}/{table}/"
        files = list_objects(settings, settings.lake.bronze_bucket, prefix)
        if full:
            keys, previous = sorted(files), None
        else:
            keys, rebuilt = bookmarks.new_files(
                bookmarks.load_bookmark(settings, B2S, table), files)
            pointer = None if rebuilt else silver.current_snapshot(settings, table)
            previous = silver.snapshot_id(pointer) if pointer else None
        say(f"{B2S} {table}: {len(keys)} file(s)")
        result = run_job(settings, B2S, table=table, reset_bookmark=full)
        m = result.metrics
        con, duck = duck_table(settings, table, keys, previous, salt, workdir)
        pointer = silver.current_snapshot(settings, table)
        spark_rows = snapshot(settings, table, silver.snapshot_id(pointer)) if pointer else None
        duck.agrees, duck.verdict = compare(con, spark_rows, TABLES[table])
        if duck.quarantined != m["quarantined"]:
            duck.agrees = False
            duck.verdict += f"; quarantined {duck.quarantined} vs {m['quarantined']}"
        con.close()
        rows.append(Row(B2S, table, result.seconds, m["rows"],
                        f"{m['changes']} changes, {m['quarantined']} quarantined; duckdb "
                        f"{duck.verdict}", duck))
    for job in list(JOBS)[1:]:
        say(job)
        result = run_job(settings, job)
        staged = ", ".join(f"{s['staging']} {s['rows']}{'' if s['copied'] else ' (unchanged)'}"
                           for s in result.metrics["staged"])
        rows.append(Row(job, GOLD_TABLES[job], result.seconds,
                        gold_rows(settings, GOLD_TABLES[job]), f"staged {staged}"))
    return rows


def check_reconcile(settings: Settings) -> bool:
    report = reconcile(settings)
    src, gold = report.source_totals, report.gold_totals
    print(f"reconcile: {report.days} days; source/gold orders {src['orders']}/{gold['orders']}, "
          f"items {src['items']}/{gold['items']}, revenue {src['revenue']}/{gold['revenue']}, "
          f"customers {src['customers']}/{gold['customers']}, "
          f"products {src['products']}/{gold['products']}; "
          f"{len(report.differences)} difference(s): {'exact' if report.ok else 'NOT exact'}")
    for d in report.differences[:10]:
        print(f"  {d.scope} {d.key} {d.metric}: source {d.source}, gold {d.gold}")
    return report.ok


def peak_rss(jvm_pid: int) -> str:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    jvm = "?"
    try:
        for line in Path(f"/proc/{jvm_pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                jvm = f"{int(line.split()[1]) / 1024:.0f} MB"
    except OSError:
        pass
    return (f"peak RSS: python process (driver, pyarrow, DuckDB) {own:.0f} MB, "
            f"Spark JVM (pid {jvm_pid}) {jvm}; {load_average()}")


def load_average() -> str:
    """Other work on the machine skews the timings; say how busy it was."""
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def print_table(title: str, session_s: float | None, rows: list[Row]) -> float:
    print(f"\n== {title} ==")
    head = (f"{'job':<22} {'table':<16} {'spark s':>8} {'duck read':>9} {'duck sql':>9} "
            f"{'duck wr':>8} {'duck tot':>8} {'rows':>8}  notes")
    print(head)
    print("-" * len(head))
    if session_s is not None:
        print(f"{'spark session start':<39} {session_s:>8.2f}")
    for r in rows:
        d = r.duck
        duck = (f"{d.read_s:>9.2f} {d.sql_s:>9.2f} {d.write_s:>8.2f} "
                f"{d.read_s + d.sql_s + d.write_s:>8.2f}" if d else " " * 37)
        print(f"{r.job:<22} {r.table:<16} {r.spark_s:>8.2f} {duck} {r.rows:>8}  {r.note}")
    total = sum(r.spark_s for r in rows)
    b2s = [r for r in rows if r.duck]
    print(f"{'total (jobs)':<39} {total:>8.2f}")
    print(f"{'bronze_to_silver only':<39} {sum(r.spark_s for r in b2s):>8.2f} "
          f"{sum(r.duck.read_s for r in b2s):>9.2f} {sum(r.duck.sql_s for r in b2s):>9.2f} "
          f"{sum(r.duck.write_s for r in b2s):>8.2f} "
          f"{sum(r.duck.read_s + r.duck.sql_s + r.duck.write_s for r in b2s):>8.2f}")
    return total


def apply_changes(settings: Settings, n: int, seed_value: int) -> tuple[Counter[str], float]:
    """`n` simulator transactions back to back (unpaced), each committed on its own."""
    conn = connect(settings)
    try:
        sim = Simulator(conn, random.Random(seed_value), Pools.build(seed_value))
        began = time.monotonic()
        counts = Counter(sim.step() for _ in range(n))
        return counts, time.monotonic() - began
    finally:
        conn.close()


def prepare(settings: Settings, scale: float) -> dict[str, int]:
    say(f"seeding the source at scale {scale} (reset)")
    counts = seed(settings, scale=scale, reset=True, progress=LogProgress(sys.stdout))
    say(f"seeded {counts}")
    say(f"cdc reset: {cdc.reset(settings)} bronze object(s) removed; full load")
    report = cdc.run(settings, once=True)
    say(f"cdc full load {report.full_load_rows} in {report.seconds:.1f}s")
    say(f"crawled {sum(r.files for r in crawl(settings))} file(s)")
    apply_ddl(settings, reset=True)
    say("warehouse recreated (apply_ddl reset): no staging stamps, empty gold")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--changes", type=int, default=None,
                        help="simulator transactions of the incremental run "
                             "(default: 1%% of the orders)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the simulator")
    args = parser.parse_args()
    settings = load_settings()
    base_orders = default_profile().base_counts["orders"]
    changes = args.changes or max(1, round(base_orders * args.scale / 100))
    say(f"duckdb {duckdb.__version__}, pyarrow {pa.__version__}, spark master "
        f"{settings.spark.master}, {os.cpu_count()} cpu(s), {load_average()}")
    counts = prepare(settings, args.scale)
    salt = pii_salt(settings)

    began = time.monotonic()
    spark = get_spark(settings)
    session_s = time.monotonic() - began
    jvm_pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
    say(f"spark session started in {session_s:.1f}s")
    ok = True
    with tempfile.TemporaryDirectory(prefix="shoplake-bench-") as tmp:
        rows = run_pipeline(settings, True, salt, Path(tmp))
        print_table(f"full run: scale {args.scale}, {counts['orders']} orders, "
                    f"{counts['order_items']} items", session_s, rows)
        print(peak_rss(jvm_pid))
        ok &= check_reconcile(settings)
        ok &= all(r.duck.agrees for r in rows if r.duck)

        say(f"applying {changes} simulator transactions (unpaced)")
        kinds, took = apply_changes(settings, changes, args.seed)
        say(f"{sum(kinds.values())} transactions in {took:.1f}s "
            f"({sum(kinds.values()) / took:.0f} tx/s): {dict(kinds.most_common())}")
        report = cdc.run(settings, once=True)
        say(f"cdc: {report.changes} row changes in {report.files} file(s), "
            f"{report.seconds:.1f}s")
        began = time.monotonic()
        crawled = crawl(settings)
        say(f"crawled {sum(r.files for r in crawled)} file(s) in "
            f"{time.monotonic() - began:.1f}s")
        rows = run_pipeline(settings, False, salt, Path(tmp))
    total = print_table(f"incremental run: {changes} transactions, {report.changes} row "
                        f"changes", None, rows)
    met = total < TARGET_INCREMENTAL_S
    print(f"goal: whole incremental run (all jobs) under {TARGET_INCREMENTAL_S:.0f} s: "
          f"{total:.1f} s, {'met' if met else 'NOT met'}")
    print(peak_rss(jvm_pid))
    ok &= check_reconcile(settings)
    ok &= all(r.duck.agrees for r in rows if r.duck)
    return 0 if ok and met else 1


if __name__ == "__main__":
    sys.exit(main())
