"""The OLTP source on real MariaDB: seeding, refusing to overwrite, and live simulation.

Every test starts from empty `shop` tables and leaves them empty (the CDC tests share the
database), through the `shop` fixture.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime

import pymysql
import pytest

from pipeline.config import Settings
from pipeline.errors import SourceNotEmptyError, TerminalError
from pipeline.source.generate import COLUMNS, TABLES, default_profile, generate
from pipeline.source.load import connect, drop_schema, reset_schema, seed, table_counts
from pipeline.source.simulate import simulate

pytestmark = pytest.mark.integration

ANCHOR = datetime(2025, 6, 15)
SCALE = 0.01

Connection = pymysql.connections.Connection


@pytest.fixture()
def shop(stack_settings: Settings) -> Iterator[Connection]:
    """An autocommit session on empty `shop` tables; the tables are emptied again afterwards."""
    conn = connect(stack_settings, autocommit=True)
    reset_schema(conn)
    try:
        yield conn
    finally:
        reset_schema(conn)
        conn.close()


def _query(conn: Connection, sql: str, args: tuple = ()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def _orphans(conn: Connection) -> int:
    return _query(conn, """
        SELECT (SELECT COUNT(*) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id
                WHERE c.id IS NULL)
             + (SELECT COUNT(*) FROM order_items i LEFT JOIN orders o ON o.id = i.order_id
                WHERE o.id IS NULL)
             + (SELECT COUNT(*) FROM order_items i LEFT JOIN products p ON p.id = i.product_id
                WHERE p.id IS NULL)""")[0][0]


def test_seed_loads_the_generated_rows_with_integrity(stack_settings: Settings,
                                                      shop: Connection) -> None:
    counts = seed(stack_settings, scale=SCALE, seed=5, anchor=ANCHOR)
    expected = generate(SCALE, 5, ANCHOR)
    assert counts == expected.counts() == table_counts(shop)
    assert counts["orders"] == 1_000 and counts["customers"] == 100
    for table in TABLES:  # the very rows, with their types (Decimal, datetime with micros)
        columns = ", ".join(COLUMNS[table])
        assert _query(shop, f"SELECT {columns} FROM {table} ORDER BY id") == [
            tuple(row) for row in expected.rows(table)]
    assert _orphans(shop) == 0
    fks = _query(shop, "SELECT table_name, referenced_table_name, delete_rule FROM "
                 "information_schema.referential_constraints WHERE constraint_schema = "
                 "DATABASE()")
    assert sorted(fks) == [("order_items", "orders", "RESTRICT"),
                           ("order_items", "products", "RESTRICT"),
                           ("orders", "customers", "RESTRICT")]


def test_schema_rejects_what_the_source_never_holds(stack_settings: Settings,
                                                    shop: Connection) -> None:
    seed(stack_settings, scale=SCALE, seed=5, anchor=ANCHOR)
    bad = [("UPDATE orders SET status = 'lost' WHERE id = 1", (3819, 4025)),
           ("UPDATE orders SET platform = 'Fax' WHERE id = 1", (3819, 4025)),
           ("INSERT INTO orders (customer_id, platform, payment_method) "
            "VALUES (999999, 'Website', 'Cash')", (1452,)),
           ("DELETE FROM customers WHERE id = (SELECT customer_id FROM orders LIMIT 1)", (1451,)),
           ("INSERT INTO customers (name, email, city, country) SELECT name, email, city, "
            "country FROM customers LIMIT 1", (1062,))]
    for sql, codes in bad:
        with pytest.raises(pymysql.err.MySQLError) as err:
            _query(shop, sql)
        assert err.value.args[0] in codes, sql


def test_seeding_a_filled_source_needs_reset(stack_settings: Settings, shop: Connection) -> None:
    seed(stack_settings, scale=SCALE, seed=5, anchor=ANCHOR)
    before = table_counts(shop)
    with pytest.raises(SourceNotEmptyError, match="--reset") as err:
        seed(stack_settings, scale=SCALE, seed=6, anchor=ANCHOR)
    assert isinstance(err.value, TerminalError) and err.value.counts == before
    assert table_counts(shop) == before

    counts = seed(stack_settings, scale=SCALE * 2, seed=6, reset=True, anchor=ANCHOR)
    assert counts == generate(SCALE * 2, 6, ANCHOR).counts() == table_counts(shop)
    assert _query(shop, "SELECT MIN(id) FROM orders") == [(1,)]
    assert _orphans(shop) == 0


def test_updated_at_is_maintained_by_the_database(stack_settings: Settings,
                                                  shop: Connection) -> None:
    seed(stack_settings, scale=SCALE, seed=5, anchor=ANCHOR)
    (order_ts, before), = _query(shop, "SELECT order_ts, updated_at FROM orders WHERE id = 7")
    _query(shop, "UPDATE orders SET status = 'returned' WHERE id = 7")
    (after, now, ts_after), = _query(shop, "SELECT updated_at, CURRENT_TIMESTAMP(6), order_ts "
                                     "FROM orders WHERE id = 7")
    assert before < ANCHOR < after <= now and (now - after).total_seconds() < 5
    assert ts_after == order_ts  # only the ON UPDATE column moves
    (p_before,), = _query(shop, "SELECT updated_at FROM products WHERE id = 1")
    _query(shop, "UPDATE products SET price = price + 1 WHERE id = 1")
    (p_after,), = _query(shop, "SELECT updated_at FROM products WHERE id = 1")
    assert p_after > p_before


def _snapshot(conn: Connection) -> dict[str, dict]:
    return {
        "orders": dict(_query(conn, "SELECT id, status FROM orders")),
        "customers": {r[0]: r[1:] for r in _query(conn, "SELECT id, city, country FROM customers")},
        "products": dict(_query(conn, "SELECT id, price FROM products")),
    }


def test_simulate_performs_the_transactions_it_reports(stack_settings: Settings,
                                                       shop: Connection) -> None:
    seed(stack_settings, scale=SCALE, seed=5, anchor=ANCHOR)
    before, counts_before = _snapshot(shop), table_counts(shop)
    began = time.monotonic()
    counts = simulate(stack_settings, rate=20, duration=3, seed=1)
    took = time.monotonic() - began
    after, counts_after = _snapshot(shop), table_counts(shop)

    assert set(counts) <= set(default_profile().kinds) | {"aborted"}
    assert 50 <= sum(counts.values()) <= 62 and took < 4.5  # paced: ~20/s for 3 s
    assert counts["new_order"] > 0 and counts["status_change"] > 0
    assert counts_after["orders"] == (counts_before["orders"] + counts["new_order"]
                                      - counts.get("delete_order", 0))
    assert counts_after["customers"] == (counts_before["customers"]
                                         + counts.get("new_customer", 0)
                                         - counts.get("delete_customer", 0))
    new_orders = set(after["orders"]) - set(before["orders"])
    assert len(new_orders) == counts["new_order"] and min(new_orders) > max(before["orders"])
    moved = [i for i in before["orders"] if i in after["orders"]
             and after["orders"][i] != before["orders"][i]]
    moved_new = [i for i in new_orders if after["orders"][i] != "placed"]
    assert 0 < len(moved) + len(moved_new) <= counts["status_change"]
    repriced = [i for i, price in after["products"].items() if price != before["products"][i]]
    assert len(repriced) <= counts.get("price_change", 0)
    assert bool(repriced) == bool(counts.get("price_change"))
    relocated = [i for i, where in after["customers"].items()
                 if i in before["customers"] and where != before["customers"][i]]
    assert len(relocated) <= counts.get("address_change", 0)
    assert bool(relocated) == bool(counts.get("address_change"))
    assert _orphans(shop) == 0
    # Every new order came with 1-5 lines priced at the product's price of the moment.
    lines = _query(shop, "SELECT i.order_id, i.product_id, i.unit_price, p.price FROM "
                   "order_items i JOIN products p ON p.id = i.product_id WHERE i.order_id > %s",
                   (max(before["orders"]),))
    per_order = Counter(order_id for order_id, *_ in lines)
    assert set(per_order) == new_orders and all(1 <= n <= 5 for n in per_order.values())
    for _, product_id, unit_price, price in lines:
        assert unit_price == price or product_id in repriced


def test_simulate_stops_on_the_event_and_returns_counts(stack_settings: Settings,
                                                        shop: Connection) -> None:
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    began = time.monotonic()
    counts = simulate(stack_settings, rate=10, seed=2, stop_event=stop)
    assert time.monotonic() - began < 3
    # An empty source still gets traffic: new customers first, since nothing else applies.
    assert 5 <= sum(counts.values()) <= 12 and counts["new_customer"] > 0
    assert table_counts(shop)["customers"] == counts["new_customer"] - counts.get(
        "delete_customer", 0)


def test_simulate_without_tables_says_to_seed(stack_settings: Settings,
                                              shop: Connection) -> None:
    drop_schema(shop)
    with pytest.raises(TerminalError, match="shoplake seed") as err:
        simulate(stack_settings, rate=10, duration=1)
    assert "`customers`" in str(err.value)


def test_cli_seed_and_simulate(shop: Connection, cli_env: dict[str, str]) -> None:
    def shoplake(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pipeline.cli.main", *args], env=cli_env,
                              capture_output=True, text=True, timeout=60)

    done = shoplake("seed", "--scale", "0.01", "--seed", "3", "--anchor", "2025-06-15")
    assert done.returncode == 0, done.stderr
    assert "orders" in done.stdout and "1,000 rows" in done.stdout and "seeded" in done.stdout
    again = shoplake("seed", "--scale", "0.01")
    assert again.returncode == 1 and "--reset" in again.stderr
    sim = shoplake("simulate", "--rate", "10", "--duration", "1", "--seed", "4")
    assert sim.returncode == 0, sim.stderr
    assert "transactions" in sim.stdout and "new_order" in sim.stdout
