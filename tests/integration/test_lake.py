"""The lake end to end on real services: CDC -> crawl -> Spark jobs -> warehouse -> reconcile.

One module-scoped source (scale 0.1) runs through the tests in file order: a full run, an
incremental run after live changes, a bad row, re-runs, a schema change.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq
import pymysql
import pytest

from pipeline import cdc
from pipeline.aws.clients import aws_client
from pipeline.aws.secrets import mysql_credentials
from pipeline.catalog import crawl, get_table
from pipeline.catalog.store import table_versions
from pipeline.cdc.bronze import Bronze
from pipeline.cdc.format import OP_COLUMN, SEQ_COLUMN, encode, next_cdc_name
from pipeline.config import Settings
from pipeline.glue import silver
from pipeline.glue.jobs import JOBS, run_job
from pipeline.source.load import seed
from pipeline.source.simulate import simulate
from pipeline.warehouse import apply_ddl, reconcile
from pipeline.warehouse.load import session

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.slow,
              pytest.mark.lake(scale=0.1, seed=21)]

GOLD = {"dim_customer": "customer_sk", "dim_product": "product_sk",
        "fact_orders": "order_id", "fact_order_items": "order_item_id"}


def _sql(settings: Settings, statement: str, args: Any = None) -> list[tuple]:
    c = mysql_credentials(settings)
    with pymysql.connect(host=c.host, port=c.port, user=c.username,
                         password=c.password.reveal(), database=c.dbname,
                         autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement, args)
        return list(cur.fetchall())


def _gold(settings: Settings, statement: str, args: Any = None) -> list[tuple]:
    with session(settings) as conn, conn.cursor() as cur:
        cur.execute(statement, args)
        rows = list(cur.fetchall()) if cur.description else []
        conn.commit()
        return rows


def gold_dump(settings: Settings) -> dict[str, list[tuple]]:
    return {t: _gold(settings, f"SELECT * FROM sales.{t} ORDER BY {k}") for t, k in GOLD.items()}


def sync_and_run(settings: Settings, reset_bookmark: bool = False) -> dict[str, Any]:
    """What the orchestrator will do: drain CDC, crawl, every job in order."""
    cdc.run(settings, once=True)
    crawl(settings)
    return {name: run_job(settings, name, reset_bookmark=reset_bookmark).metrics
            for name in JOBS}


def test_full_run_reconciles_exactly(lake: Settings) -> None:
    metrics = sync_and_run(lake, reset_bookmark=True)
    b2s = {m["table"]: m for m in metrics["bronze_to_silver"]["tables"]}
    source_orders = _sql(lake, "SELECT COUNT(*) FROM orders")[0][0]
    assert b2s["orders"]["rows"] == source_orders == 10_000
    assert all(m["quarantined"] == 0 for m in b2s.values())
    report = reconcile(lake)
    assert report.ok, report.differences[:5]
    assert report.days > 300
    # the catalog the jobs read their schema from
    entry = get_table(lake, "order_items")
    assert entry["TableType"] == "EXTERNAL_TABLE"
    assert entry["Parameters"]["classification"] == "parquet"
    assert {"Name": "unit_price", "Type": "decimal(12,2)"} in \
        entry["StorageDescriptor"]["Columns"]
    # silver is an Iceberg v2 table, merge-on-read, each row stamped with its run, and it
    # holds hashes, not e-mail addresses
    table = silver.load_table(lake, "customers")
    assert table.format_version == 2
    assert table.properties["write.merge.mode"] == "merge-on-read"
    assert table.location() == f"s3a://{lake.lake.silver_bucket}/shop/customers"
    stamped = table.scan(selected_fields=("id", "_run_id")).to_arrow().column("_run_id")
    assert stamped.null_count == 0
    assert silver.current_snapshot(lake, "customers")["settled"]
    email = _sql(lake, "SELECT email FROM customers WHERE id = 1")[0][0]
    stored = _gold(lake, "SELECT email_hash FROM sales.dim_customer WHERE customer_id = 1")
    assert len(stored[0][0]) == 64 and email not in stored[0][0]


def test_incremental_run_reconciles_and_keeps_scd2_history(lake: Settings) -> None:
    product_id = _sql(lake, "SELECT product_id FROM order_items GROUP BY product_id "
                            "ORDER BY COUNT(*) DESC LIMIT 1")[0][0]
    old_sk = _gold(lake, "SELECT product_sk FROM sales.dim_product "
                         "WHERE product_id = %s AND is_current", (product_id,))[0][0]
    _sql(lake, "UPDATE products SET price = price + 10 WHERE id = %s", (product_id,))
    changed_at = _sql(lake, "SELECT updated_at FROM products WHERE id = %s", (product_id,))[0][0]
    _sql(lake, "UPDATE customers SET city = 'Trondheim' WHERE id = 2")
    # an order placed after the price change, with that product
    order_ts = changed_at + timedelta(seconds=1)
    _sql(lake, "INSERT INTO orders (customer_id, status, platform, payment_method, order_ts) "
               "VALUES (2, 'placed', 'Mobile', 'PayPal', %s)", (order_ts,))
    new_order = _sql(lake, "SELECT MAX(id) FROM orders")[0][0]
    _sql(lake, "INSERT INTO order_items (order_id, product_id, quantity, unit_price) "
               "SELECT %s, id, 2, price FROM products WHERE id = %s", (new_order, product_id))
    counts = simulate(lake, rate=60, duration=3, seed=5)
    assert sum(counts.values()) > 100

    metrics = sync_and_run(lake)
    b2s = {m["table"]: m for m in metrics["bronze_to_silver"]["tables"]}
    assert b2s["orders"]["files"] >= 1 and b2s["orders"]["changes"] > 0
    report = reconcile(lake)
    assert report.ok, report.differences[:5]
    # Change-only: staging took the changed keys, not the tables, and each procedure
    # merged only those.
    staged = {s["staging"]: s for name in JOBS if name.startswith("load_")
              for s in metrics[name]["staged"] if s["copied"]}
    assert set(staged) == {"stg_customers", "stg_products", "stg_orders", "stg_order_items"}
    assert {s["mode"] for s in staged.values()} == {"delta"}, staged
    assert 0 < staged["stg_orders"]["keys"] <= b2s["orders"]["changes"]
    assert staged["stg_orders"]["rows"] <= staged["stg_orders"]["keys"] < b2s["orders"]["rows"] / 10
    # (sp_load_fact_orders merges everything once more: the full run's --reset-bookmark made
    # load_fact_order_items copy its staging again, after that procedure had run.)
    merged = {n: metrics[n]["merged"] for n in JOBS if n.startswith("load_")}
    assert {merged[n]["mode"] for n in merged if n != "load_fact_orders"} == {"delta"}, merged

    versions = _gold(lake, "SELECT product_sk, price, record_start_ts, record_end_ts, is_current "
                           "FROM sales.dim_product WHERE product_id = %s "
                           "ORDER BY record_start_ts", (product_id,))
    assert len(versions) >= 2
    old, new = versions[-2], versions[-1]
    assert old[0] == old_sk and not old[4] and old[3] == changed_at
    assert new[4] and new[2] == changed_at and new[1] == old[1] + Decimal("10")
    assert sum(1 for v in versions if v[4]) == 1
    item_sk = _gold(lake, "SELECT product_sk FROM sales.fact_order_items "
                          "WHERE order_id = %s", (new_order,))
    assert item_sk == [(new[0],)]
    old_orders = _gold(lake, "SELECT COUNT(*) FROM sales.fact_order_items f "
                             "JOIN sales.fact_orders o USING (order_id) "
                             "WHERE f.product_id = %s AND o.order_ts < %s AND f.product_sk = %s",
                       (product_id, changed_at, old_sk))[0][0]
    assert old_orders > 0  # history keeps earlier orders on the price they were sold at
    city = _gold(lake, "SELECT city FROM sales.v_sales_mart WHERE order_id = %s", (new_order,))
    assert city and city[0][0] == "Trondheim"


def test_an_update_back_in_time_keeps_scd2_history(lake: Settings) -> None:
    """Versions follow the binlog: an application that sets updated_at back in time must
    not make gold write over the version it replaces."""
    _sql(lake, "UPDATE customers SET city = 'Zürich' WHERE id = 1")
    zurich_at = _sql(lake, "SELECT updated_at FROM customers WHERE id = 1")[0][0]
    sync_and_run(lake)
    _sql(lake, "UPDATE customers SET city = 'Milan', updated_at = '2025-01-01' WHERE id = 1")
    metrics = sync_and_run(lake)
    merged = {n: metrics[n]["merged"] for n in JOBS if n.startswith("load_")}
    assert {m["mode"] for m in merged.values()} == {"delta"}, merged
    cities = _gold(lake, "SELECT city, record_start_ts, record_end_ts, is_current "
                         "FROM sales.dim_customer WHERE customer_id = 1 ORDER BY record_start_ts")
    assert [c[0] for c in cities[-2:]] == ["Zürich", "Milan"], cities
    (_, start, end, current), (_, milan_from, _, now_current) = cities[-2:]
    assert start == zurich_at and end == milan_from > zurich_at and now_current and not current
    warnings = metrics["load_dim_customer"]["warnings"]
    assert len(warnings) == 1 and "customer 1 (updated_at 2025-01-01 00:00:00, committed " \
        in warnings[0], warnings
    report = reconcile(lake)
    assert report.ok, report.rows[:3]


def _commit_bronze_file(bronze: Bronze, table: str, body: bytes) -> None:
    """A change file of `table` committed as the CDC commits one: under the next name
    (after every file of the stream, where the jobs' bookmarks look), then the checkpoint
    naming it (a later CDC start would delete it as uncommitted otherwise)."""
    cp = bronze.load_checkpoint()
    assert cp is not None
    name = next_cdc_name(cp.last_file, datetime.now(UTC), "parquet")
    bronze.put(table, name, body)
    bronze.save_checkpoint(dataclasses.replace(cp, last_file=name))


def test_bad_row_lands_in_quarantine_with_its_reason(lake: Settings) -> None:
    bronze = Bronze(lake, "shop")
    names = (OP_COLUMN, lake.cdc.timestamp_column, "id", "order_id", "product_id", "quantity",
             "unit_price", SEQ_COLUMN)
    import pyarrow as pa

    types = (pa.string(), pa.string(), pa.int64(), pa.int64(), pa.int64(), pa.int64(),
             pa.decimal128(12, 2), pa.string())
    row = ("I", "2026-11-26 10:00:00.000000", 9_999_999, 1, 1, -3, Decimal("1.00"), "9" * 35)
    _commit_bronze_file(bronze, "order_items", encode(names, types, [row], "parquet", "\\N"))
    crawl(lake)
    result = run_job(lake, "bronze_to_silver", table="order_items").metrics
    assert result["files"] == 1 and result["quarantined"] == 1
    prefix = f"quarantine/shop/order_items/run_id={result['run_id']}/"
    s3 = aws_client(lake, "s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=lake.lake.silver_bucket,
                                                 Prefix=prefix)["Contents"]
            if o["Key"].endswith(".parquet")]
    import io

    rows = [r for k in keys for r in pq.read_table(io.BytesIO(
        s3.get_object(Bucket=lake.lake.silver_bucket, Key=k)["Body"].read())).to_pylist()]
    assert [(r["id"], r["quantity"], r["_reason"]) for r in rows] == [
        ("9999999", "-3", "non-positive `quantity`")]
    assert result["rows"] == _sql(lake, "SELECT COUNT(*) FROM order_items")[0][0]


def test_running_the_same_jobs_again_gives_the_same_gold(lake: Settings) -> None:
    before = gold_dump(lake)
    silver_rows = {t: silver.current_snapshot(lake, t)["rows"]
                   for t in ("customers", "products", "orders", "order_items")}
    again = sync_and_run(lake)
    assert all(m["files"] == 0 for m in again["bronze_to_silver"]["tables"])
    assert gold_dump(lake) == before
    # every bronze file replayed from scratch: still the same silver and gold
    replayed = {name: run_job(lake, name, reset_bookmark=True, extra_args={"force": "true"})
                for name in JOBS}
    assert {m["table"]: m["rows"] for m in
            replayed["bronze_to_silver"].metrics["tables"]} == silver_rows
    assert gold_dump(lake) == before
    assert reconcile(lake).ok


def test_a_full_load_on_request_copies_everything_and_changes_nothing(lake: Settings) -> None:
    before = gold_dump(lake)
    out = run_job(lake, "load_fact_orders", extra_args={"full": "true"}).metrics
    assert [(s["staging"], s["mode"]) for s in out["staged"]] == [
        ("stg_orders", "full"), ("stg_order_items", "full")]
    assert out["staged"][0]["rows"] == _sql(lake, "SELECT COUNT(*) FROM orders")[0][0]
    assert out["merged"]["mode"] == "full"
    assert gold_dump(lake) == before
    again = run_job(lake, "load_fact_orders").metrics  # nothing new: nothing copied
    assert not any(s["copied"] for s in again["staged"]) and again["merged"]["mode"] == "delta"


def _silver_rows(settings: Settings, table: str) -> list[dict[str, Any]]:
    """Silver `table`'s current rows by key, read by pyiceberg (deletes applied)."""
    return sorted(silver.load_table(settings, table).scan().to_arrow().to_pylist(),
                  key=lambda r: r["id"])


def test_compaction_and_expiry_keep_silver_and_gold_exact(lake: Settings) -> None:
    from spark_jobs.maintain_silver import table_health

    _sql(lake, "UPDATE orders SET status = 'delivered' WHERE id <= 40")  # position deletes
    _sql(lake, "DELETE FROM order_items WHERE id <= 5")
    sync_and_run(lake)
    before = {t: _silver_rows(lake, t) for t in ("orders", "order_items")}
    health = table_health(lake, "orders")
    assert health["delete_files"] > 0 and health["snapshots"] > 1, health  # the MERGEs'
    keep_one = dataclasses.replace(lake, lake=dataclasses.replace(lake.lake,
                                                                  snapshots_retained=1))
    out = {m["table"]: m for m in run_job(keep_one, "maintain_silver",
                                          extra_args={"force": "true"}).metrics["tables"]}
    after = out["orders"]["after"]
    assert out["orders"]["maintained"] and set(out["orders"]["work"]) == {"compact", "expire"}
    assert after["delete_files"] == 0 and after["position_deletes"] == 0, after
    assert after["data_files"] < health["data_files"] and after["snapshots"] == 1
    assert {t: _silver_rows(lake, t) for t in before} == before  # the same rows, in fewer files
    assert silver.current_snapshot(lake, "orders")["settled"]
    # Below the thresholds nothing is due; the next run is change-only and exact.
    assert not run_job(lake, "maintain_silver", table="orders").metrics["maintained"]
    _sql(lake, "UPDATE orders SET status = 'shipped' WHERE id = 7")
    metrics = sync_and_run(lake)
    staged = {s["staging"]: s for s in metrics["load_fact_orders"]["staged"]}
    assert staged["stg_orders"]["mode"] == "delta" and staged["stg_orders"]["keys"] == 1
    assert reconcile(lake).ok


def _data_files(settings: Settings, table: str) -> set[str]:
    """The objects under silver `table`'s data folder (data and delete files)."""
    s3 = aws_client(settings, "s3")
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=settings.lake.silver_bucket, Prefix=f"{silver.table_prefix(settings, table)}/data/")
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def _kill_when_files_land(settings: Settings, env: dict[str, str], table: str,
                          args: list[str], delay_s: float) -> str:
    """Run `shoplake job run ARGS` in a process group of its own (the Python driver and its
    Spark JVM, as a worker runs a job), and kill -9 the group `delay_s` after the job's
    first new file lands in silver `table`'s data folder: its files are written, its
    Iceberg commit is in progress or just ahead. Returns `written` (killed after the files
    landed) or `finished: OUTPUT` (the job ended first, with that output)."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    before = _data_files(settings, table)
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - read back below
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "job", "run", *args],
                            env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if _data_files(settings, table) - before:
                time.sleep(delay_s)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return "written"
            time.sleep(0.05)
        assert proc.poll() is not None, "the job wrote no file within 300 s"
        log.seek(0)
        return "finished: " + log.read()[-1500:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


def _silver_keys(settings: Settings, table: str) -> list[int]:
    return sorted(silver.load_table(settings, table).scan(selected_fields=("id",))
                  .to_arrow().column("id").to_pylist())


@pytest.mark.parametrize(("delay_s", "first"), [(0.0, 200), (0.5, 400)],
                         ids=["files-written", "committing"])
def test_a_kill_during_the_merge_commit_leaves_the_next_run_exact(
        lake: Settings, cli_env: dict[str, str], delay_s: float, first: int) -> None:
    """kill -9 of the job (driver and JVM) once its MERGE's files are in S3: silver is at
    the snapshot before or the one after, never between, and the next run is exact."""
    sync_and_run(lake)
    before_snapshot = silver.load_table(lake, "orders").current_snapshot().snapshot_id
    before_keys = _silver_keys(lake, "orders")
    gone = first + 100
    _sql(lake, "UPDATE orders SET status = 'shipped', updated_at = %s WHERE id BETWEEN %s "
               "AND %s", (datetime(2026, 11, 27, 9, 0), first, first + 60))
    _sql(lake, "DELETE FROM order_items WHERE order_id = %s", (gone,))
    _sql(lake, "DELETE FROM orders WHERE id = %s", (gone,))
    cdc.run(lake, once=True)
    crawl(lake)
    outcome = _kill_when_files_land(lake, cli_env, "orders",
                                    ["bronze_to_silver", "--table", "orders"], delay_s)
    table = silver.load_table(lake, "orders")
    after_snapshot = table.current_snapshot().snapshot_id
    keys = _silver_keys(lake, "orders")
    assert len(keys) == len(set(keys)), "a key twice in silver after the kill"
    if after_snapshot == before_snapshot:  # the commit did not happen: nothing of it shows
        assert keys == before_keys
    else:  # it did, whole
        assert keys == [k for k in before_keys if k != gone]
    assert outcome == "written" or after_snapshot != before_snapshot, outcome
    sync_and_run(lake)
    assert _silver_keys(lake, "orders") == sorted(
        r[0] for r in _sql(lake, "SELECT id FROM orders"))
    assert _gold(lake, "SELECT count(*) FROM sales.fact_orders WHERE order_id = %s",
                 (gone,)) == [(0,)]
    report = reconcile(lake)
    assert report.ok, report.differences[:5]


def test_a_kill_during_compaction_leaves_silver_whole_and_the_next_run_exact(
        lake: Settings, cli_env: dict[str, str]) -> None:
    """kill -9 of maintain_silver while it rewrites a table's files (its new files are in
    S3, its commit not yet or in progress): the table holds the same rows, a later
    compaction finishes, and the next run is change-only and exact."""
    for i in range(3):  # small MERGEs: data files and delete files to compact
        _sql(lake, f"UPDATE orders SET status = 'delivered' WHERE id % 50 = {i}")
        sync_and_run(lake)
    rows = _silver_rows(lake, "orders")
    outcome = _kill_when_files_land(lake, cli_env, "orders",
                                    ["maintain_silver", "--table", "orders",
                                     "--arg", "force=true"], 0.3)
    assert outcome == "written", outcome
    # before or after the rewrite's commit: the same rows
    assert _silver_rows(lake, "orders") == rows
    out = run_job(lake, "maintain_silver", table="orders", extra_args={"force": "true"})
    assert out.metrics["maintained"] and out.metrics["after"]["delete_files"] == 0, out.metrics
    assert _silver_rows(lake, "orders") == rows
    _sql(lake, "UPDATE orders SET status = 'paid' WHERE id = 11")
    metrics = sync_and_run(lake)
    staged = {s["staging"]: s for s in metrics["load_fact_orders"]["staged"]}
    assert staged["stg_orders"]["mode"] == "delta", staged
    report = reconcile(lake)
    assert report.ok, report.differences[:5]


def test_compaction_and_expiry_while_the_live_dashboards_read_gold(lake: Settings) -> None:
    """Maintenance rewrites silver, never gold: the live server's panels (the stack's
    dashboards service, and its Reader) keep answering with the same numbers throughout."""
    import threading
    import urllib.request

    from pipeline.dashboards import PROJECT_DASHBOARDS
    from pipeline.dashboards.data import Reader
    from pipeline.dashboards.spec import load_all

    dashboards, broken = load_all(PROJECT_DASHBOARDS)
    assert not broken
    _sql(lake, "UPDATE orders SET status = 'paid' WHERE id % 40 = 3")
    sync_and_run(lake)
    reader = Reader(lake)

    def panels() -> dict[str, Any]:
        out = {}
        for d in dashboards:
            for r in reader.run_all(d, {}):
                assert not r.error, f"{d.id}/{r.panel.id}: {r.error}"
                out[f"{d.id}/{r.panel.id}"] = r.rows
        return out

    def health() -> int:
        url = f"http://127.0.0.1:{lake.dashboards.port}/_health"
        with urllib.request.urlopen(url, timeout=15) as response:
            return response.status

    # Pipeline-health panels move with runs; the numbers of gold's sales do not.
    baseline = {k: v for k, v in panels().items() if k.startswith("sales_overview/")}
    seen: list[Any] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                now = {k: v for k, v in panels().items() if k in baseline}
                seen.append(("same" if now == baseline else now, health()))
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                seen.append((repr(exc), None))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        keep_one = dataclasses.replace(lake, lake=dataclasses.replace(
            lake.lake, snapshots_retained=1, snapshot_retention_hours=0))
        out = run_job(keep_one, "maintain_silver", extra_args={"force": "true"}).metrics
    finally:
        stop.set()
        thread.join(timeout=60)
        reader.close()
    assert any(t["maintained"] for t in out["tables"]), out
    assert seen, "the dashboards were not read during maintenance"
    assert all(s == ("same", 200) for s in seen), [s for s in seen if s != ("same", 200)][:3]
    assert reconcile(lake).ok


def test_an_update_to_a_quarantined_row_releases_it(lake: Settings) -> None:
    """A change that fails the rules (quantity -3 for an existing item, as a broken
    producer could write) is held: silver and gold keep the key's last valid row and the
    key is reported as held. The source's next update of that key is newer: it replaces
    the held change, the hold ends, and gold has the new value."""
    import pyarrow as pa

    key = 21
    row = _silver_row(lake, "order_items", key)[0]
    names = (OP_COLUMN, lake.cdc.timestamp_column, "id", "order_id", "product_id", "quantity",
             "unit_price", SEQ_COLUMN)
    types = (pa.string(), pa.string(), pa.int64(), pa.int64(), pa.int64(), pa.int64(),
             pa.decimal128(12, 2), pa.string())
    # Right after the key's last change in the binlog order; the source's next one is later.
    seq = f"{int(row['_change_seq']) + 1:035d}"
    bad = ("U", "2026-11-27 10:00:00.000000", key, row["order_id"], row["product_id"], -3,
           row["unit_price"], seq)
    _commit_bronze_file(Bronze(lake, "shop"), "order_items",
                        encode(names, types, [bad], "parquet", "\\N"))
    sync_and_run(lake)
    held = {h["key"]: h["reason"] for h in reconcile_held(lake, "order_items")}
    assert held.get(str(key)) == "non-positive `quantity`", held
    assert _silver_row(lake, "order_items", key)[0]["quantity"] == row["quantity"]
    assert _gold(lake, "SELECT quantity FROM sales.fact_order_items WHERE order_item_id = %s",
                 (key,)) == [(row["quantity"],)]
    _sql(lake, "UPDATE order_items SET quantity = quantity + 4 WHERE id = %s", (key,))
    sync_and_run(lake)
    assert str(key) not in {h["key"] for h in reconcile_held(lake, "order_items")}
    assert _silver_row(lake, "order_items", key)[0]["quantity"] == row["quantity"] + 4
    assert _gold(lake, "SELECT quantity FROM sales.fact_order_items WHERE order_item_id = %s",
                 (key,)) == [(row["quantity"] + 4,)]
    report = reconcile(lake)
    assert report.ok, report.differences[:5]


def test_an_unchanged_snapshot_is_not_copied_again_after_warehouse_init(lake: Settings) -> None:
    """`shoplake run` applies the DDL every time; that must not make every load job copy
    its staging table again (the stamp of what staging holds survives the DDL)."""
    sync_and_run(lake)
    apply_ddl(lake)
    again = sync_and_run(lake)
    staged = [s for name in JOBS if name.startswith("load_") for s in again[name]["staged"]]
    assert staged and not any(s["copied"] for s in staged), staged


def test_a_crash_between_publish_and_bookmark_is_harmless(lake: Settings) -> None:
    """The retry of a run whose snapshot was published but whose bookmark was not saved
    must keep that snapshot (not overwrite the folder it is reading from)."""
    from pipeline.glue import bookmarks

    before = bookmarks.load_bookmark(lake, "bronze_to_silver", "products")
    _sql(lake, "UPDATE products SET price = price + 1 WHERE id = 2")
    cdc.run(lake, once=True)
    crawl(lake)
    first = run_job(lake, "bronze_to_silver", table="products").metrics
    assert first["files"] == 1
    bookmarks.save_bookmark(lake, before)  # as if the job died right after publishing
    retry = run_job(lake, "bronze_to_silver", table="products").metrics
    assert retry["run_id"] == first["run_id"] and retry.get("already_published")
    snapshot = silver.read_current(lake_spark(lake), lake, "products")
    assert snapshot.count() == first["rows"] == _sql(lake, "SELECT COUNT(*) FROM products")[0][0]
    assert run_job(lake, "bronze_to_silver", table="products").metrics["files"] == 0


def _silver_row(settings: Settings, table: str, key: int) -> list[dict[str, Any]]:
    """The rows of silver `table` with id `key`, read by pyiceberg (no JVM, SQL catalog):
    what a user querying silver from Python sees."""
    from pyiceberg.expressions import EqualTo

    scan = silver.load_table(settings, table).scan(row_filter=EqualTo("id", key))
    return scan.to_arrow().to_pylist()


def test_a_delete_and_reinsert_of_one_key_within_and_across_batches(lake: Settings) -> None:
    """MERGE INTO keeps one row per key whatever the order of deletes and inserts: a key
    deleted and inserted again in one batch, and in two."""
    (order_id, product_id, quantity, price) = _sql(
        lake, "SELECT order_id, product_id, quantity, unit_price FROM order_items "
              "WHERE id = 7")[0]
    c = mysql_credentials(lake)
    with pymysql.connect(host=c.host, port=c.port, user=c.username,
                         password=c.password.reveal(), database=c.dbname) as conn:
        with conn.cursor() as cur:  # one transaction: one CDC batch
            cur.execute("DELETE FROM order_items WHERE id = 7")
            cur.execute("INSERT INTO order_items (id, order_id, product_id, quantity, "
                        "unit_price) VALUES (7, %s, %s, %s, %s)",
                        (order_id, product_id, quantity + 1, price))
        conn.commit()
    metrics = sync_and_run(lake)
    b2s = {m["table"]: m for m in metrics["bronze_to_silver"]["tables"]}
    assert b2s["order_items"]["mode"] == "merge", b2s["order_items"]
    rows = _silver_row(lake, "order_items", 7)
    assert [r["quantity"] for r in rows] == [quantity + 1], rows
    assert rows[0]["_run_id"], rows
    # across batches: deleted in one run, back in the next
    _sql(lake, "DELETE FROM order_items WHERE id = 7")
    sync_and_run(lake)
    assert _silver_row(lake, "order_items", 7) == []
    assert _gold(lake, "SELECT count(*) FROM sales.fact_order_items WHERE order_item_id = 7"
                 ) == [(0,)]
    _sql(lake, "INSERT INTO order_items (id, order_id, product_id, quantity, unit_price) "
               "VALUES (7, %s, %s, %s, %s)", (order_id, product_id, quantity + 2, price))
    sync_and_run(lake)
    assert [r["quantity"] for r in _silver_row(lake, "order_items", 7)] == [quantity + 2]
    assert _gold(lake, "SELECT quantity FROM sales.fact_order_items WHERE order_item_id = 7"
                 ) == [(quantity + 2,)]
    state = silver.current_snapshot(lake, "order_items")
    assert state["settled"] and state["rows"] == _sql(
        lake, "SELECT COUNT(*) FROM order_items")[0][0]
    assert reconcile(lake).ok


def test_a_pre_iceberg_silver_table_is_rebuilt_from_bronze_and_says_so(lake: Settings) -> None:
    """Silver in the format before Iceberg (snapshots + `_current.json`) is never misread:
    the job rebuilds the table from bronze, says so, and removes the old objects."""
    from pipeline.glue import iceberg

    s3 = aws_client(lake, "s3")
    bucket = lake.lake.silver_bucket
    iceberg.forget_table(lake, "shop", "products")  # as if Iceberg had never written it
    s3.put_object(Bucket=bucket, Key="shop/products/_current.json",
                  Body=b'{"run_id": "old", "snapshot": "old-1", "rows": 3}')
    s3.put_object(Bucket=bucket, Key="shop/products/snapshots/old-1/part-0.parquet", Body=b"x")
    result = run_job(lake, "bronze_to_silver", table="products").metrics
    assert "pre-Iceberg" in result["notice"] and result["mode"] == "rebuild", result
    assert result["rows"] == _sql(lake, "SELECT COUNT(*) FROM products")[0][0]
    left = s3.list_objects_v2(Bucket=bucket, Prefix="shop/products/").get("Contents", [])
    assert not [o["Key"] for o in left if "/snapshots/" in o["Key"] or
                o["Key"].endswith("_current.json")], left
    again = run_job(lake, "bronze_to_silver", table="products").metrics
    assert again["files"] == 0 and "notice" not in again


def test_a_table_whose_files_s3_lost_is_rebuilt_not_read(lake: Settings,
                                                         cli_env: dict[str, str]) -> None:
    """LocalStack forgets objects on restart while the catalog (PostgreSQL) keeps its rows:
    readers refuse the table, naming it, and the next run rebuilds it from bronze."""
    import subprocess
    import sys

    s3 = aws_client(lake, "s3")
    bucket = lake.lake.silver_bucket
    metadata = [o["Key"] for o in s3.list_objects_v2(
        Bucket=bucket, Prefix="shop/products/metadata/")["Contents"]]
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in metadata]})
    with pytest.raises(silver.SilverFilesLostError, match="`products`"):
        silver.current_snapshot(lake, "products")
    shown = subprocess.run([sys.executable, "-m", "pipeline.cli.main", "lake", "show",
                            "products"], env=cli_env, capture_output=True, text=True)
    assert shown.returncode == 1 and "gone from S3" in shown.stdout + shown.stderr, shown
    assert "Traceback" not in shown.stdout + shown.stderr
    result = run_job(lake, "bronze_to_silver", table="products").metrics
    assert "lost its files" in result["notice"] and result["mode"] == "rebuild", result
    assert silver.current_snapshot(lake, "products")["rows"] == \
        _sql(lake, "SELECT COUNT(*) FROM products")[0][0]


def lake_spark(settings: Settings):  # noqa: ANN201 - SparkSession
    from pipeline.glue.session import get_spark

    return get_spark(settings)


def test_a_job_runs_under_spark_submit_too(lake: Settings, cli_env: dict[str, str]) -> None:
    import subprocess
    import sys
    from pathlib import Path

    venv_bin = str(Path(sys.executable).parent)
    env = {**cli_env, "PATH": f"{venv_bin}:{cli_env['PATH']}", "PYSPARK_PYTHON": sys.executable}
    done = subprocess.run(["spark-submit", "spark_jobs/load_gold.py",
                           "--JOB_NAME", "load_dim_product", "--force", "true"],
                          env=env, capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "'procedure': 'sp_merge_dim_product'" in done.stdout
    assert "'copied': True" in done.stdout


def test_schema_change_gives_a_new_catalog_version_not_a_failure(lake: Settings) -> None:
    version = int(get_table(lake, "customers")["Parameters"]["schemaVersion"])
    glue_versions = len(table_versions(lake, "customers"))
    _sql(lake, "ALTER TABLE customers ADD COLUMN loyalty_tier VARCHAR(10) NULL")
    try:
        _sql(lake, "UPDATE customers SET loyalty_tier = 'gold', updated_at = %s WHERE id = 3",
             (datetime(2026, 11, 26, 12, 0),))
        cdc.run(lake, once=True)
        results = {r.table: r for r in crawl(lake)}
        assert results["customers"].changed
        entry = get_table(lake, "customers")
        assert int(entry["Parameters"]["schemaVersion"]) == version + 1
        # Glue itself kept the definition before the change as a table version
        assert len(table_versions(lake, "customers")) > glue_versions
        assert "loyalty_tier" in [c["Name"] for c in entry["StorageDescriptor"]["Columns"]]
        metrics = run_job(lake, "bronze_to_silver", table="customers").metrics
        assert metrics["changes"] >= 1 and metrics["quarantined"] == 0
        assert metrics["rows"] == _sql(lake, "SELECT COUNT(*) FROM customers")[0][0]
    finally:
        _sql(lake, "ALTER TABLE customers DROP COLUMN loyalty_tier")


def test_a_renamed_column_is_named_and_its_held_rows_come_back(lake: Settings) -> None:
    """`RENAME COLUMN city TO town`: changes are held (gold keeps the old city), reconcile
    says which column the source lost and how to restore it; renaming it back releases the
    held rows without any new change to them (the CDC reloads an altered table)."""
    from pipeline.errors import SourceDriftError

    _sql(lake, "ALTER TABLE customers RENAME COLUMN city TO town")
    try:
        _sql(lake, "UPDATE customers SET town = 'Bergen' WHERE id = 3")
        sync_and_run(lake)
        held = {h["key"]: h["reason"] for h in reconcile_held(lake, "customers")}
        assert held["3"] == "the change has no column `city`: renamed or dropped at the source"
        assert _gold(lake, "SELECT city FROM sales.dim_customer WHERE customer_id = 3 "
                           "AND is_current")[0][0] != "Bergen"
        with pytest.raises(SourceDriftError) as err:
            reconcile(lake)
        assert "source table `shop.customers` lost column `city`, which gold carries " \
               "(`sales.dim_customer.city`); it now has `town`" in str(err.value)
        assert "ALTER TABLE customers RENAME COLUMN town TO city" in err.value.hint
    finally:
        _sql(lake, "ALTER TABLE customers RENAME COLUMN town TO city")
    sync_and_run(lake)  # nothing changed row 3 since: the ALTER's reload brings it
    assert reconcile_held(lake, "customers") == []
    assert _gold(lake, "SELECT city FROM sales.dim_customer WHERE customer_id = 3 "
                       "AND is_current") == [("Bergen",)]
    report = reconcile(lake)
    assert report.ok and not [h for h in report.held if h["table"] == "customers"], \
        report.rows[:3]


def reconcile_held(settings: Settings, table: str) -> list[dict[str, Any]]:
    return silver.held_rows(settings, table)


def test_an_alter_that_changes_values_opens_versions_when_it_ran(lake: Settings) -> None:
    """`MODIFY price DECIMAL(10,0)` rounds every price without a row event or a new
    updated_at: the reload brings the rounded prices, and their versions open when the
    ALTER ran, so orders placed before it keep the prices they were sold at."""
    [(alter_at,)] = _sql(lake, "SELECT UTC_TIMESTAMP(6)")
    _sql(lake, "ALTER TABLE products MODIFY price DECIMAL(10,0) NOT NULL")
    try:
        metrics = sync_and_run(lake)
        [(moved, earlier)] = _gold(
            lake, "SELECT count(*) FILTER (WHERE o.order_ts >= %s), count(*) FILTER (WHERE "
                  "o.order_ts < %s) FROM sales.fact_order_items i JOIN sales.fact_orders o "
                  "USING (order_id) JOIN sales.dim_product p USING (product_sk) "
                  "WHERE p.record_start_ts >= %s", (alter_at, alter_at, alter_at))
        assert earlier == 0, f"{earlier} earlier order items moved to the rounded prices"
        rounded = _gold(lake, "SELECT count(*) FROM sales.dim_product WHERE is_current AND "
                              "record_start_ts >= %s", (alter_at,))[0][0]
        assert rounded > 0 and moved >= 0
        assert any("carry an updated_at that is not when they were committed" in w
                   for w in metrics["load_dim_product"]["warnings"])
        report = reconcile(lake)
        assert report.ok, report.rows[:3]
    finally:
        _sql(lake, "ALTER TABLE products MODIFY price DECIMAL(12,2) NOT NULL")


def test_a_rebuilt_bronze_flows_through_to_gold(lake: Settings) -> None:
    """A re-seeded source and a new full load reuse bronze's file names with new content:
    bookmarks, silver snapshots and staging stamps must all notice (no warehouse reset)."""
    for scale, orders in ((0.05, 5000), (0.03, 3000)):  # the 2nd rebuild: same file names
        seed(lake, scale=scale, seed=99, reset=True)
        cdc.reset(lake)
        metrics = sync_and_run(lake)
        b2s = {m["table"]: m for m in metrics["bronze_to_silver"]["tables"]}
        assert b2s["orders"]["files"] == 1
        assert b2s["orders"]["rows"] == _sql(lake, "SELECT COUNT(*) FROM orders")[0][0] == orders
    assert all(s["copied"] for m in ("load_dim_customer", "load_fact_orders")
               for s in metrics[m]["staged"])
    # Gold is what a fresh load of the new dataset gives: one version per key, of the new
    # snapshot, so Sales by city (the version each order points at) is the source's.
    for dim, key, table in (("dim_customer", "customer_id", "customers"),
                            ("dim_product", "product_id", "products")):
        assert _gold(lake, f"SELECT count(*) FROM (SELECT {key} FROM sales.{dim} GROUP BY 1 "
                           "HAVING count(*) > 1) AS history")[0][0] == 0, dim
        assert _gold(lake, f"SELECT DISTINCT generation FROM sales.{dim}") == [
            (silver.current_snapshot(lake, table)["generation"],)]
    by_city = ("SELECT c.city, sum(i.quantity * i.unit_price) FROM orders o JOIN customers c "
               "ON c.id = o.customer_id JOIN order_items i ON i.order_id = o.id "
               "GROUP BY c.city ORDER BY 2 DESC, 1 LIMIT 10")
    gold_by_city = ("SELECT c.city, sum(o.order_total) FROM sales.fact_orders o "
                    "JOIN sales.dim_customer c USING (customer_sk) "
                    "GROUP BY c.city ORDER BY 2 DESC, 1 LIMIT 10")
    assert _gold(lake, gold_by_city) == [tuple(r) for r in _sql(lake, by_city)]
    assert any("rebuilt from a new bronze full load" in w
               for w in metrics["load_dim_customer"]["warnings"])
    report = reconcile(lake)
    assert report.ok, report.differences[:5] + report.rows[:5]
    assert report.facts_checked > 0
    # A version of the earlier dataset left behind would be named by reconcile.
    _gold(lake, "INSERT INTO sales.dim_customer (customer_id, name, city, attr_hash, "
                "record_start_ts, record_end_ts, is_current, generation) VALUES (1, 'x', "
                "'Palermo', 'h', '0001-01-01', '0001-01-02', false, 'earlier')")
    try:
        said = [r.describe() for r in reconcile(lake).rows]
        assert "dim_customer (versions): 1 version(s) derive from another bronze full load " \
               "(earlier)" in "\n".join(said), said
    finally:
        _gold(lake, "DELETE FROM sales.dim_customer WHERE generation = 'earlier'")


def test_one_pipeline_run_does_every_step_in_order(lake: Settings,
                                                   cli_env: dict[str, str]) -> None:
    import subprocess
    import sys

    from pipeline.orchestration import STEPS, run_pipeline

    simulate(lake, rate=50, duration=2, seed=23)
    report = run_pipeline(lake)
    assert list(report.steps) == [name for name, _ in STEPS]
    assert report.steps["WaitForCdcSync"]["changes"] > 0
    assert report.reconciled is True
    # from the command line too: the new change flows through and the run exits 0
    _sql(lake, "UPDATE order_items SET quantity = quantity + 1 WHERE id = 1")
    done = subprocess.run([sys.executable, "-m", "pipeline.cli.main", "-q", "run", "--local"],
                          env=cli_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "days match" in done.stdout


def test_the_workers_warm_up_leaves_the_lake_as_it_was(lake: Settings) -> None:
    """A worker's warm-up (a clean + rebuild + MERGE on scratch tables) touches no silver
    table and leaves no scratch file behind, on disk or in S3."""
    import glob
    import os
    import tempfile
    from pathlib import Path

    from pipeline.glue.jobs import job_session
    from pipeline.glue.session import get_spark
    from spark_jobs.bronze_to_silver import warm_up

    before = {t: silver.snapshot_id(silver.current_snapshot(lake, t))
              for t in ("customers", "products", "orders", "order_items")}
    # a worker killed -9 during its warm-up (no such pid) left its folder behind
    stale = Path(tempfile.gettempdir()) / "shoplake-warm-999999999-x"
    stale.mkdir(exist_ok=True)
    get_spark(lake)
    seconds = warm_up(job_session(lake), lake)
    assert seconds > 0
    assert {t: silver.snapshot_id(silver.current_snapshot(lake, t)) for t in before} == before
    assert not glob.glob(f"{tempfile.gettempdir()}/shoplake-warm-{os.getpid()}-*")
    assert not stale.exists(), "the dead worker's folder is removed"
    s3 = aws_client(lake, "s3")
    assert s3.list_objects_v2(Bucket=lake.lake.artifacts_bucket,
                              Prefix="spark-warm-up/").get("KeyCount", 0) == 0
