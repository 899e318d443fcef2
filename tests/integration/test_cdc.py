"""The CDC service against real MariaDB and LocalStack: bronze replayed equals the source."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pymysql
import pytest

from pipeline import cdc
from pipeline.aws.secrets import mysql_credentials
from pipeline.cdc.bronze import Bronze
from pipeline.cdc.errors import BinlogPositionLostError, NoPrimaryKeyError, UnsupportedColumnError
from pipeline.cdc.format import OP_COLUMN, SEQ_COLUMN, is_cdc_file
from pipeline.cdc.replay import read_changes, replay
from pipeline.config import Settings
from pipeline.source.load import seed
from pipeline.source.simulate import simulate
from pipeline.stack.mariadb import MariaDBService

pytestmark = pytest.mark.integration

TABLES = ("customers", "products", "orders", "order_items")


# -- helpers -------------------------------------------------------------------------------
def _conn(settings: Settings) -> pymysql.connections.Connection:
    c = mysql_credentials(settings)
    return pymysql.connect(host=c.host, port=c.port, user=c.username,
                           password=c.password.reveal(), database=c.dbname, autocommit=True,
                           charset="utf8mb4")


def _sql(settings: Settings, *statements: str, args: Any = None) -> None:
    with _conn(settings) as conn, conn.cursor() as cur:
        for st in statements:
            cur.execute(st, args)


def source_state(settings: Settings, table: str) -> dict[tuple, dict]:
    with _conn(settings) as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT * FROM `{table}`")
        return {(row["id"],): row for row in cur.fetchall()}


def bronze_state(settings: Settings, table: str) -> dict[tuple, dict]:
    changes = read_changes(Bronze(settings, settings.mysql.database), table)
    return replay(changes, ["id"], drop=(OP_COLUMN, settings.cdc.timestamp_column, SEQ_COLUMN))


def assert_bronze_equals_source(settings: Settings, tables: tuple[str, ...] = TABLES) -> None:
    for table in tables:
        src, brz = source_state(settings, table), bronze_state(settings, table)
        assert len(brz) == len(src), table
        assert brz == src, table


def cdc_keys(settings: Settings, table: str) -> list[str]:
    return [k for k in Bronze(settings, settings.mysql.database).keys()
            if k.split("/")[1] == table and is_cdc_file(k.rsplit("/", 1)[-1])]


@pytest.fixture()
def source(stack_settings: Settings) -> Settings:
    """A freshly seeded `shop` (scale 0.01) and no CDC checkpoint or bronze files."""
    seed(stack_settings, scale=0.01, seed=7, reset=True)
    cdc.reset(stack_settings)
    return stack_settings


class Follower:
    """`shoplake cdc` (follow mode) in a thread, stopped like SIGTERM would stop it."""

    def __init__(self, settings: Settings) -> None:
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(settings,), daemon=True)

    def _run(self, settings: Settings) -> None:
        try:
            cdc.run(settings, once=False, stop=self.stop)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            self.error = exc

    def __enter__(self) -> Follower:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error


# -- tests ---------------------------------------------------------------------------------
def test_full_load_files_and_checkpoint(source: Settings) -> None:
    report = cdc.run(source, once=True)
    assert report.full_load
    assert report.full_load_rows["orders"] == 1000
    keys = Bronze(source, "shop").keys()
    for table in TABLES:
        assert f"shop/{table}/LOAD00000001.parquet" in keys
    assert "_shoplake_cdc/shop/checkpoint.json" not in keys  # beside the data, not in it
    assert_bronze_equals_source(source)
    status = cdc.cdc_status(source)
    assert status is not None and status.lag_bytes == 0
    assert status.rows["order_items"]["L"] == report.full_load_rows["order_items"]


def test_full_load_under_concurrent_writes_then_cdc_is_exact(source: Settings) -> None:
    stop = threading.Event()
    counts: Counter[str] = Counter()

    def writer() -> None:
        counts.update(simulate(source, rate=80, duration=None, seed=11, stop_event=stop))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.5)
        first = cdc.run(source, once=True)  # the snapshot is taken while writes go on
        _sql(source, "DELETE FROM order_items WHERE id = 2")  # at least one delete in CDC
        time.sleep(1.5)
    finally:
        stop.set()
        thread.join()
    cdc.run(source, once=True)
    assert first.full_load
    assert sum(counts.values()) > 50
    assert_bronze_equals_source(source)
    ops = Counter(r[OP_COLUMN] for t in TABLES
                  for r in read_changes(Bronze(source, "shop"), t))
    assert ops["U"] > 0 and ops["D"] > 0 and ops["I"] > 1000


def test_types_nulls_updates_and_deletes(source: Settings) -> None:
    _sql(source, "DROP TABLE IF EXISTS cdc_types",
         "CREATE TABLE cdc_types (id INT PRIMARY KEY, amount DECIMAL(18,6), ratio DOUBLE, "
         "at DATETIME(6), day DATE, label VARCHAR(100), note TEXT, big BIGINT, "
         "flag TINYINT(1), tier ENUM('a','b')) DEFAULT CHARSET=utf8mb4")
    try:
        cdc.run(source, once=True)
        rows = [
            (1, Decimal("-12345678.123456"), 1.5, datetime(2026, 2, 28, 23, 59, 59, 999999),
             date(2024, 2, 29), "Zoë 😀 ünïcødé", "long " * 200, 2**62, 1, "a"),
            (2, None, None, None, None, None, None, None, None, None),
            (3, Decimal("0.000001"), -0.0, datetime(1970, 1, 1), date(1000, 1, 1), "",
             "", -(2**63), 0, "b"),
        ]
        with _conn(source) as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO cdc_types VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", rows)
            cur.execute("UPDATE cdc_types SET amount = 42.5, label = NULL WHERE id = 1")
            cur.execute("UPDATE cdc_types SET label = 'was null' WHERE id = 2")
            cur.execute("DELETE FROM cdc_types WHERE id = 3")
        cdc.run(source, once=True)
        changes = read_changes(Bronze(source, "shop"), "cdc_types")
        by_op = [(r[OP_COLUMN], r["id"]) for r in changes]
        # the empty table's LOAD file has no rows; then the changes in commit order
        assert by_op == [("I", 1), ("I", 2), ("I", 3), ("U", 1), ("U", 2), ("D", 3)]
        inserted = changes[0]
        assert inserted["amount"] == rows[0][1] and inserted["label"] == "Zoë 😀 ünïcødé"
        assert inserted["at"] == rows[0][3] and inserted["day"] == rows[0][4]
        assert inserted["big"] == 2**62 and inserted["note"] == "long " * 200
        update = changes[3]  # the after image
        assert update["amount"] == Decimal("42.5") and update["label"] is None
        assert update["at"] == rows[0][3]  # unchanged columns are in the after image too
        assert all(v is None for k, v in changes[1].items()
                   if k not in ("id", OP_COLUMN, SEQ_COLUMN, source.cdc.timestamp_column))
        deleted = changes[5]
        assert deleted["amount"] == Decimal("0.000001") and deleted["big"] == -(2**63)
        assert deleted["label"] == ""  # empty string is not NULL
        assert bronze_state(source, "cdc_types") == source_state(source, "cdc_types")
        ts = changes[3][source.cdc.timestamp_column]
        assert datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f")  # DMS timestamp format
    finally:
        _sql(source, "DROP TABLE IF EXISTS cdc_types")


def test_csv_format_with_header_replays_the_same(source: Settings) -> None:
    csv_settings = replace(source, cdc=replace(source.cdc, data_format="csv"))
    cdc.run(csv_settings, once=True)
    _sql(source, "UPDATE customers SET city = 'Zürich' WHERE id = 1",
         "DELETE FROM order_items WHERE id = 1")
    cdc.run(csv_settings, once=True)
    keys = Bronze(source, "shop").keys()
    assert "shop/customers/LOAD00000001.csv" in keys
    body = Bronze(source, "shop").s3.get_object(
        Bucket=source.lake.bronze_bucket, Key=cdc_keys(source, "customers")[0])["Body"].read()
    header = body.decode().splitlines()[0].split(",")
    assert header[:3] == ["Op", "commit_ts", "id"] and header[-1] == SEQ_COLUMN
    changes = read_changes(Bronze(source, "shop"), "customers")
    state = replay(changes, ["id"])
    assert state[("1",)]["city"] == "Zürich"


def test_alter_table_add_column_mid_stream(source: Settings) -> None:
    with Follower(source):
        time.sleep(1.0)
        _sql(source, "UPDATE customers SET city = 'Before' WHERE id = 2")
        # A DEFAULT fills every existing row without a row event: the reload of the altered
        # table is what brings those values to bronze.
        _sql(source, "ALTER TABLE customers ADD COLUMN loyalty_tier VARCHAR(10) NOT NULL "
                     "DEFAULT 'bronze'")
        _sql(source, "UPDATE customers SET loyalty_tier = 'gold', city = 'After' WHERE id = 2",
             "INSERT INTO customers (name, email, city, country, loyalty_tier) "
             "VALUES ('New Person', 'new.person@example.com', 'Oslo', 'Norway', 'silver')")
        time.sleep(source.cdc.batch_interval_s + 2.5)
    try:
        changes = read_changes(Bronze(source, "shop"), "customers")
        before = [r for r in changes if r["id"] == 2 and r.get("city") == "Before"]
        after = [r for r in changes if r["id"] == 2 and r.get("city") == "After"]
        assert before and "loyalty_tier" not in before[0]
        assert after and after[0]["loyalty_tier"] == "gold"
        # Every row's default reached bronze, through the reload written after the ALTER.
        src = source_state(source, "customers")
        columns = next(iter(src.values())).keys()
        brz = {k: {c: row.get(c) for c in columns}
               for k, row in bronze_state(source, "customers").items()}
        assert brz == src
    finally:
        _sql(source, "ALTER TABLE customers DROP COLUMN loyalty_tier")


def _savepoint_writer(settings: Settings, stop: threading.Event) -> None:
    """Transactions the way ORMs write them: with savepoints inside."""
    c = mysql_credentials(settings)
    conn = pymysql.connect(host=c.host, port=c.port, user=c.username,
                           password=c.password.reveal(), database=c.dbname)
    with conn, conn.cursor() as cur:
        n = 0
        while not stop.is_set():
            n += 1
            conn.begin()
            for part in ("a", "b"):  # a row before the savepoint, one after it
                cur.execute("INSERT INTO customers (name, email, city, country) VALUES "
                            "('Save Point', %s, 'Lyon', 'France')",
                            (f"sp{n}{part}.{time.time()}@x.io",))
                if part == "a":
                    cur.execute("SAVEPOINT sp1")
            cur.execute("RELEASE SAVEPOINT sp1")
            conn.commit()
            time.sleep(0.02)


def test_kill_9_at_random_points_still_exactly_once(source: Settings,
                                                    cli_env: dict[str, str]) -> None:
    """SIGKILL the CDC process six times during a busy stream (with savepoints in it):
    once at a random moment (start-up or full load), then each time right after it has
    moved its checkpoint, i.e. mid-stream, while it writes the next batch."""
    rng = random.Random(5)
    env = {**cli_env, "SHOPLAKE_CDC_BATCH_INTERVAL_S": "0.2"}
    bronze = Bronze(source, "shop")

    def position() -> tuple[str, int] | None:
        cp = bronze.load_checkpoint()
        return None if cp is None else (cp.log_file, cp.log_pos)

    stop = threading.Event()
    writers = [threading.Thread(target=lambda: simulate(source, rate=150, duration=None,
                                                        seed=13, stop_event=stop)),
               threading.Thread(target=_savepoint_writer, args=(source, stop))]
    for w in writers:
        w.start()
    mid_stream = 0
    try:
        for attempt in range(6):
            before = position()
            proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "-q", "cdc"],
                                    env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            if attempt == 0:
                time.sleep(rng.uniform(0.8, 2.0))
            else:
                deadline = time.monotonic() + 20
                while position() == before and time.monotonic() < deadline:
                    time.sleep(0.05)
                mid_stream += position() != before
                time.sleep(rng.uniform(0.0, 0.5))
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    finally:
        stop.set()
        for w in writers:
            w.join()
    assert mid_stream == 5
    cdc.run(source, once=True)
    assert_bronze_equals_source(source)
    for table in TABLES:
        seqs = Counter(r[SEQ_COLUMN] for r in read_changes(bronze, table))
        snapshot_seq = min(seqs)  # every full-load row carries the snapshot's sequence
        dup = [s for s, n in seqs.items() if n > 1 and s != snapshot_seq]
        assert dup == [], f"{table}: duplicated changes {dup[:5]}"
        assert len(seqs) > 1 or table == "products"
    saved = source_state(source, "customers")
    assert sum(1 for r in saved.values() if r["name"] == "Save Point") > 10


def test_table_without_primary_key_is_refused(source: Settings) -> None:
    _sql(source, "CREATE TABLE no_pk (a INT, b VARCHAR(10))")
    try:
        with pytest.raises(NoPrimaryKeyError, match="`shop.no_pk`") as err:
            cdc.run(source, once=True)
        assert "SHOPLAKE_CDC_EXCLUDE_TABLES" in str(err.value)
        excluded = replace(source, cdc=replace(source.cdc, exclude_tables="no_pk"))
        assert cdc.run(excluded, once=True).full_load
    finally:
        _sql(source, "DROP TABLE no_pk")


def test_unsupported_column_type_is_refused(source: Settings) -> None:
    _sql(source, "CREATE TABLE with_blob (id INT PRIMARY KEY, payload BLOB)")
    try:
        with pytest.raises(UnsupportedColumnError, match="`shop.with_blob.payload`"):
            cdc.run(source, once=True)
    finally:
        _sql(source, "DROP TABLE with_blob")
    assert Bronze(source, "shop").load_checkpoint() is None  # nothing half-done was kept


def test_lost_binlog_position_is_reported_not_skipped(source: Settings) -> None:
    cdc.run(source, once=True)
    _sql(source, "UPDATE products SET price = price + 1 WHERE id = 1")
    root = MariaDBService(source)._connect_root()
    with root, root.cursor() as cur:
        # A binlog that a dump thread still reads (say, of a killed reader whose TCP session
        # the server has not noticed yet) is not purged: end such threads first.
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST "
                    "WHERE COMMAND LIKE 'Binlog Dump%'")
        for (thread_id,) in cur.fetchall():
            cur.execute(f"KILL {thread_id}")
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW MASTER STATUS")
        newest = cur.fetchone()[0]
        # MariaDB purges a file only once InnoDB has checkpointed past it: retry briefly.
        for _ in range(50):
            cur.execute(f"PURGE BINARY LOGS TO '{newest}'")
            cur.execute("SHOW BINARY LOGS")
            remaining = [r[0] for r in cur.fetchall()]
            if remaining == [newest]:
                break
            time.sleep(0.1)
        assert remaining == [newest]
    with pytest.raises(BinlogPositionLostError, match="shoplake cdc reset"):
        cdc.run(source, once=True)
    cdc.reset(source)
    assert cdc.run(source, once=True).full_load
    assert_bronze_equals_source(source)


def test_following_cdc_rides_out_a_source_crash(source: Settings) -> None:
    """kill -9 of the source while the CDC follows it: the CDC waits, resumes from its
    checkpoint once `stack up` has restarted the source, and bronze stays exact."""
    from pipeline import stack
    from pipeline.stack.manager import process_of

    cdc.run(source, once=True)
    stop = threading.Event()
    with Follower(source) as follower:
        writer = threading.Thread(
            target=lambda: simulate(source, rate=60, duration=1.5, seed=17, stop_event=stop))
        writer.start()
        writer.join()
        victim = process_of(source, MariaDBService(source)).running()
        os.kill(victim.pid, signal.SIGKILL)
        time.sleep(1.0)
        assert follower.thread.is_alive()  # waiting for the source, not dead
        results = {r.service: r.action for r in stack.up(source)}
        assert results["mariadb"] == "restarted"
        _sql(source, "UPDATE products SET price = price + 1 WHERE id = 1",
             "DELETE FROM order_items WHERE id = 3")
        simulate(source, rate=60, duration=1.5, seed=19)
        time.sleep(source.cdc.batch_interval_s + 5)  # a retry pause plus one batch
    # The follower itself caught up after the crash; nothing is left for a drain to do.
    assert cdc.cdc_status(source).lag_bytes == 0
    assert cdc.run(source, once=True).changes == 0
    assert_bronze_equals_source(source)


def test_one_writer_at_a_time(source: Settings, monkeypatch) -> None:
    """Beside a running follower, `--once` waits for it (the "wait for DMS sync" step)
    instead of writing; a second follower and a reset are refused."""
    import pipeline.cdc.service as service
    from pipeline.cdc.errors import CdcError

    cdc.run(source, once=True)
    monkeypatch.setattr(service, "LOCK_WAIT_S", 0.5)
    with Follower(source):
        time.sleep(1.0)
        _sql(source, "UPDATE customers SET city = 'Tromsø' WHERE id = 5",
             "DELETE FROM order_items WHERE id = 7")
        report = cdc.run(source, once=True)
        assert report.waited_for_follower and report.changes == 0
        assert bronze_state(source, "customers")[(5,)]["city"] == "Tromsø"
        with pytest.raises(CdcError, match="another CDC process"):
            cdc.run(source, once=False)
        with pytest.raises(CdcError, match="stop `shoplake cdc` first"):
            cdc.reset(source)
    assert_bronze_equals_source(source)


def test_status_reports_lag_in_bytes_and_seconds(source: Settings) -> None:
    cdc.run(source, once=True)
    assert cdc.cdc_status(source).lag_bytes == 0
    time.sleep(2.2)  # an idle spell must not count as lag
    _sql(source, "UPDATE customers SET city = 'Bergen' WHERE id = 4")
    status = cdc.cdc_status(source)
    assert status.lag_bytes > 0
    assert 0 <= status.lag_seconds < 2.0
    time.sleep(1.5)
    assert cdc.cdc_status(source).lag_seconds >= 1.0  # the waiting change ages
    cdc.run(source, once=True)
    status = cdc.cdc_status(source)
    assert (status.lag_bytes, status.lag_seconds) == (0, 0.0)
    assert status.rows["customers"]["U"] >= 1 and status.rows["customers"]["L"] == 100


def test_an_unsupported_column_arriving_mid_stream_stops_before_its_rows(
        source: Settings) -> None:
    cdc.run(source, once=True)
    try:
        # a running follower meets the new column in the binlog, not at start-up
        with pytest.raises(UnsupportedColumnError, match="`shop.products.photo`") as err:
            with Follower(source):
                time.sleep(1.0)
                _sql(source, "ALTER TABLE products ADD COLUMN photo BLOB NULL")
                _sql(source, "UPDATE products SET photo = x'89504e47' WHERE id = 1")
                time.sleep(2.0)
        assert "at binlog position" in str(err.value)
        stuck = Bronze(source, "shop").load_checkpoint().position
        assert err.value.position == str(stuck)  # past the ALTER, before the row
        with pytest.raises(UnsupportedColumnError):  # and at start-up too: no skipping
            cdc.run(source, once=True)
        assert Bronze(source, "shop").load_checkpoint().position == stuck
    finally:
        _sql(source, "ALTER TABLE products DROP COLUMN photo")
        cdc.reset(source)
