"""The Gold warehouse on the real stack: COPY, SCD2 merges, fact loads, the mart, reconcile.

Staging rows are handed over directly, as the silver Spark job will; no Spark here.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import pymysql
import pytest

from pipeline.aws.secrets import mysql_credentials
from pipeline.cli.main import main
from pipeline.config import Settings
from pipeline.source.load import seed
from pipeline.warehouse import PROCEDURES, apply_ddl, call, connect, load_staging, reconcile
from pipeline.warehouse.errors import ProcedureError, StagingLoadError, UnknownTableError
from pipeline.warehouse.load import session
from pipeline.warehouse.model import STAGING_COLUMNS

pytestmark = pytest.mark.integration

T = datetime
OPEN = T(9999, 12, 31)
FIRST = T(1, 1, 1)  # model.FIRST_START
CITY_CHANGED_AT = T(2024, 5, 1, 8, 30)
PRICE_CHANGED_AT = T(2024, 5, 15)
LOADED_AT = T(2024, 6, 30)  # the full load's commit time


def seq(n: int) -> str:
    """A change's place in the binlog (AR_H_CHANGE_SEQ's 35 digits): larger is later."""
    return f"{n:035d}"


# Dimensions' staging ends with the change's binlog position and commit time.
CUSTOMERS = [
    (1, "Alice Martin", "a1" * 16, None, "Lisbon", "Portugal", T(2024, 1, 1), T(2024, 1, 1),
     seq(1), LOADED_AT),
    # Quotes, commas, a newline and an empty string (which must not turn into NULL).
    (2, 'Bob "the, builder"\nJr', "", "b2" * 16, "Porto", "Portugal", T(2024, 1, 2),
     T(2024, 1, 2, 12, 0, 0, 123456), seq(1), LOADED_AT),
    (3, "Chloé Ñúñez", "c3" * 16, "c3" * 16, None, "Spain", T(2024, 1, 3), T(2024, 1, 3),
     seq(1), LOADED_AT),
]
PRODUCTS = [
    (10, "Widget", "Tools", Decimal("19.99"), True, T(2024, 1, 1), seq(1), LOADED_AT),
    (11, "Gadget, deluxe", "Toys", Decimal("9999999999.99"), False, None, seq(1), LOADED_AT),
]
ORDERS = [
    (100, 1, "paid", "Website", "card", T(2024, 3, 1, 10, 0), T(2024, 3, 1, 10, 5)),
    (101, 2, "placed", "Mobile", "paypal", T(2024, 3, 2, 23, 59, 59, 999999), None),
    (102, 1, "delivered", "In-store", "cash", T(2024, 6, 1, 12, 0), T(2024, 6, 2)),
    (103, 3, "cancelled", "Website", "card", T(2024, 7, 4), T(2024, 7, 4)),  # no items
]
ITEMS = [
    (1000, 100, 10, 2, Decimal("19.99")),
    (1001, 100, 11, 1, Decimal("9999999999.99")),
    (1002, 101, 10, 3, Decimal("19.99")),
    (1003, 102, 10, 1, Decimal("24.99")),
]
DATASET = {"stg_customers": CUSTOMERS, "stg_products": PRODUCTS, "stg_orders": ORDERS,
           "stg_order_items": ITEMS}
GOLD = ("dim_customer", "dim_product", "dim_date", "fact_orders", "fact_order_items")


# -- helpers -------------------------------------------------------------------------------
def query(settings: Settings, sql: str, args: Any = None) -> list[tuple]:
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            rows = cur.fetchall()
        conn.rollback()
        return rows
    finally:
        conn.close()


def run(settings: Settings, data: dict[str, list[tuple]]) -> None:
    """One warehouse load, as the pipeline does it: staging by COPY, then the procedures."""
    for table, rows in data.items():
        assert load_staging(settings, table, STAGING_COLUMNS[table], iter(rows)) == len(rows)
    for procedure in PROCEDURES:
        call(settings, procedure)


def dump(settings: Settings) -> dict[str, list[tuple]]:
    """Every gold row with its xmin: a row rewritten with equal values still shows."""
    return {t: query(settings, f"SELECT xmin::text, * FROM sales.{t} ORDER BY 2") for t in GOLD}


def versions(settings: Settings, dim: str, key: str, value: int) -> list[tuple]:
    cols = "city" if dim == "dim_customer" else "price"
    return query(settings, f"SELECT {cols}, record_start_ts, record_end_ts, is_current, "
                 f"{dim.removeprefix('dim_')}_sk FROM sales.{dim} WHERE {key} = %s "
                 "ORDER BY record_start_ts", (value,))


def changed(data: dict[str, list[tuple]], **tables: list[tuple]) -> dict[str, list[tuple]]:
    return {**data, **tables}


@pytest.fixture()
def warehouse(stack_settings: Settings) -> Settings:
    """Schema `sales` dropped and created afresh."""
    apply_ddl(stack_settings, reset=True)
    return stack_settings


# -- loads ---------------------------------------------------------------------------------
def test_nulls_strings_and_decimals_survive_copy(warehouse: Settings) -> None:
    run(warehouse, DATASET)
    for table, rows in DATASET.items():
        assert query(warehouse, f"SELECT * FROM sales.{table} ORDER BY 1") == rows, table


def test_first_load_builds_dims_and_facts(warehouse: Settings) -> None:
    run(warehouse, DATASET)
    dims = query(warehouse, "SELECT customer_id, city, record_start_ts, record_end_ts, "
                 "is_current FROM sales.dim_customer ORDER BY 1")
    assert dims == [(1, "Lisbon", FIRST, OPEN, True), (2, "Porto", FIRST, OPEN, True),
                    (3, None, FIRST, OPEN, True)]
    facts = query(warehouse, "SELECT order_id, date_key, item_count, order_total, "
                  "customer_sk = (SELECT customer_sk FROM sales.dim_customer c "
                  "WHERE c.customer_id = f.customer_id) FROM sales.fact_orders f ORDER BY 1")
    assert facts == [(100, 20240301, 3, Decimal("10000000039.97"), True),
                     (101, 20240302, 3, Decimal("59.97"), True),
                     (102, 20240601, 1, Decimal("24.99"), True),
                     (103, 20240704, 0, Decimal("0.00"), True)]
    lines = query(warehouse, "SELECT order_item_id, date_key, line_total, product_sk IS NOT NULL"
                  " FROM sales.fact_order_items ORDER BY 1")
    assert lines == [(1000, 20240301, Decimal("39.98"), True),
                     (1001, 20240301, Decimal("9999999999.99"), True),
                     (1002, 20240302, Decimal("59.97"), True),
                     (1003, 20240601, Decimal("24.99"), True)]
    assert query(warehouse, "SELECT month_name, day_of_week, is_weekend FROM sales.dim_date "
                 "WHERE date_key = 20240302") == [("March", 6, True)]


def test_scd2_changes_point_facts_at_the_version_valid_at_order_time(warehouse: Settings) -> None:
    run(warehouse, DATASET)
    moved = [(1, "Alice Martin", "a1" * 16, None, "Porto", "Portugal", T(2024, 1, 1),
              CITY_CHANGED_AT, seq(2), CITY_CHANGED_AT), *CUSTOMERS[1:]]
    repriced = [(10, "Widget", "Tools", Decimal("24.99"), True, PRICE_CHANGED_AT, seq(2),
                 PRICE_CHANGED_AT), PRODUCTS[1]]
    second = changed(DATASET, stg_customers=moved, stg_products=repriced)
    run(warehouse, second)

    (old_c, new_c) = versions(warehouse, "dim_customer", "customer_id", 1)
    assert old_c[:4] == ("Lisbon", FIRST, CITY_CHANGED_AT, False)
    assert new_c[:4] == ("Porto", CITY_CHANGED_AT, OPEN, True)
    (old_p, new_p) = versions(warehouse, "dim_product", "product_id", 10)
    assert old_p[:4] == (Decimal("19.99"), FIRST, PRICE_CHANGED_AT, False)
    assert new_p[:4] == (Decimal("24.99"), PRICE_CHANGED_AT, OPEN, True)
    assert len(versions(warehouse, "dim_customer", "customer_id", 2)) == 1

    # Order 100 (March) was placed before both changes, order 102 (June) after.
    sks = dict(query(warehouse, "SELECT order_id, customer_sk FROM sales.fact_orders"))
    assert sks[100] == old_c[4] and sks[102] == new_c[4]
    psks = dict(query(warehouse, "SELECT order_item_id, product_sk FROM sales.fact_order_items"))
    assert psks[1000] == old_p[4] and psks[1003] == new_p[4]
    mart = query(warehouse, "SELECT order_id, order_date, city, country, platform, category, "
                 "product_name, quantity, line_total FROM sales.v_sales_mart "
                 "WHERE product_id = 10 ORDER BY order_id")
    assert [(r[0], r[2]) for r in mart] == [(100, "Lisbon"), (101, "Porto"), (102, "Porto")]
    assert mart[0][1].isoformat() == "2024-03-01" and mart[0][5:7] == ("Tools", "Widget")
    totals = query(warehouse, "SELECT count(*), sum(line_total) FROM sales.v_sales_mart")
    assert totals == query(warehouse, "SELECT count(*), sum(line_total) "
                           "FROM sales.fact_order_items")

    # The same staging again changes nothing, not even a rewrite of an equal row.
    before = dump(warehouse)
    run(warehouse, second)
    assert dump(warehouse) == before


def test_deleted_keys_close_or_remove_and_reappearing_keys_reopen(warehouse: Settings) -> None:
    run(warehouse, DATASET)
    without = changed(DATASET, stg_customers=CUSTOMERS[:2],
                      stg_orders=[o for o in ORDERS if o[0] != 101],
                      stg_order_items=[i for i in ITEMS if i[1] != 101])
    run(warehouse, without)
    assert query(warehouse, "SELECT order_id FROM sales.fact_orders ORDER BY 1") == [
        (100,), (102,), (103,)]
    assert query(warehouse, "SELECT count(*) FROM sales.fact_order_items "
                 "WHERE order_id = 101") == [(0,)]
    # Customer 3 is gone: closed at load time, but its past order keeps its version.
    ((city, start, end, current, sk),) = versions(warehouse, "dim_customer", "customer_id", 3)
    assert (start, current) == (FIRST, False) and T(2025, 1, 1) < end < OPEN
    assert query(warehouse, "SELECT customer_sk FROM sales.fact_orders "
                 "WHERE order_id = 103") == [(sk,)]
    before = dump(warehouse)
    run(warehouse, without)
    assert dump(warehouse) == before

    run(warehouse, DATASET)  # customer 3 and order 101 come back
    (closed, reopened) = versions(warehouse, "dim_customer", "customer_id", 3)
    assert closed[2] == end and reopened[1:4] == (end, OPEN, True)
    assert query(warehouse, "SELECT count(*) FROM sales.fact_order_items") == [(4,)]


def customer_1(city: str, updated_at: datetime, n: int,
               committed: datetime | None = None) -> tuple:
    """Customer 1 of CUSTOMERS living in `city`, as binlog change `n` left it."""
    return (1, "Alice Martin", "a1" * 16, None, city, "Portugal", T(2024, 1, 1), updated_at,
            seq(n), committed or updated_at)


def test_an_update_back_in_time_keeps_every_version(warehouse: Settings) -> None:
    """Versions follow the binlog, not updated_at: a change whose updated_at the application
    set back still comes after the version it replaces, which is kept, with a warning."""
    run(warehouse, DATASET)  # Lisbon
    zurich_at = T(2026, 12, 6, 19, 30)
    run(warehouse, changed(DATASET, stg_customers=[customer_1("Zürich", zurich_at, 2),
                                                   *CUSTOMERS[1:]]))
    milan_committed = T(2026, 12, 6, 19, 40)
    in_zurich = (104, 1, "paid", "Website", "card", T(2026, 12, 6, 19, 35), None)
    load_staging(warehouse, "stg_customers", STAGING_COLUMNS["stg_customers"],
                 [customer_1("Milan", T(2025, 1, 1), 3, milan_committed), *CUSTOMERS[1:]])
    load_staging(warehouse, "stg_orders", STAGING_COLUMNS["stg_orders"], [*ORDERS, in_zurich])
    warnings = [w for p in PROCEDURES for w in call(warehouse, p)]

    cities = versions(warehouse, "dim_customer", "customer_id", 1)
    assert [v[:4] for v in cities] == [("Lisbon", FIRST, zurich_at, False),
                                       ("Zürich", zurich_at, milan_committed, False),
                                       ("Milan", milan_committed, OPEN, True)]
    assert len(warnings) == 1, warnings
    assert "1 customer change(s) carry an updated_at that is not when they were committed: " \
        "customer 1 (updated_at 2025-01-01 00:00:00, committed 2026-12-06 19:40:00)" \
        in warnings[0]
    # The order placed in Zürich stays there; the earlier ones stay in Lisbon.
    mart = dict(query(warehouse, "SELECT order_id, city FROM sales.fact_orders AS f JOIN "
                                 "sales.dim_customer AS c USING (customer_sk) "
                                 "WHERE f.customer_id = 1"))
    assert mart == {100: "Lisbon", 102: "Lisbon", 104: "Zürich"}
    before = dump(warehouse)
    assert [w for p in PROCEDURES for w in call(warehouse, p)] == []
    assert dump(warehouse) == before  # the same staging again changes nothing


@pytest.mark.parametrize(("updated_at", "committed", "starts", "warned"), [
    # The database's ON UPDATE: updated_at is when it took effect, to the microsecond (the
    # binlog's commit time has whole seconds).
    (T(2026, 12, 6, 10, 0, 0, 500000), T(2026, 12, 6, 10, 0), T(2026, 12, 6, 10, 0, 0, 500000),
     False),
    # `SET city = ..., updated_at = updated_at`: the row's old stamp, not the change's.
    (T(2024, 1, 1), T(2026, 12, 6, 10, 0), T(2026, 12, 6, 10, 0), True),
    (T(2030, 1, 1), T(2026, 12, 6, 10, 0), T(2026, 12, 6, 10, 0), True),  # ahead
    (T(9999, 12, 31, 23, 59, 59, 999999), T(2026, 12, 6, 10, 0), T(2026, 12, 6, 10, 0), True),
], ids=["on-update", "unchanged", "ahead", "largest"])
def test_a_version_starts_when_the_change_was_committed(warehouse: Settings, updated_at,
                                                        committed, starts, warned) -> None:
    """An application may leave updated_at as it was, or set it anywhere; an ALTER's reload
    changes rows without touching it: none of that may move when the version starts."""
    run(warehouse, DATASET)
    warnings: list[str] = []
    load_staging(warehouse, "stg_customers", STAGING_COLUMNS["stg_customers"],
                 [customer_1("Zürich", updated_at, 2, committed), *CUSTOMERS[1:]])
    warnings += call(warehouse, "sp_merge_dim_customer")
    cities = versions(warehouse, "dim_customer", "customer_id", 1)
    assert [v[:4] for v in cities] == [("Lisbon", FIRST, starts, False),
                                       ("Zürich", starts, OPEN, True)]
    assert bool(warnings) == warned, warnings
    if warned:
        assert warnings[0].startswith("1 customer change(s) carry an updated_at that is not "
                                      "when they were committed: customer 1 (updated_at ")


def test_staging_behind_gold_in_the_binlog_changes_nothing(warehouse: Settings) -> None:
    run(warehouse, DATASET)
    run(warehouse, changed(DATASET, stg_customers=[customer_1("Porto", CITY_CHANGED_AT, 5),
                                                   *CUSTOMERS[1:]]))
    before = dump(warehouse)
    # An older state of the row (change 4, before change 5 that gold holds): a silver
    # restored from an earlier snapshot, say.
    load_staging(warehouse, "stg_customers", STAGING_COLUMNS["stg_customers"],
                 [customer_1("Faro", T(2024, 9, 1), 4), *CUSTOMERS[1:]])
    warnings = call(warehouse, "sp_merge_dim_customer")
    assert len(warnings) == 1 and "1 customer(s) in `sales.stg_customers` hold an older " \
        "change (in binlog order)" in warnings[0] and "customer 1 " in warnings[0], warnings
    assert dump(warehouse)["dim_customer"] == before["dim_customer"]


def gold_shape(settings: Settings) -> dict[str, list[tuple]]:
    """Gold without surrogate keys, runs and generations: what a dashboard can see."""
    return {
        "dim_customer": query(settings, "SELECT customer_id, name, city, record_start_ts, "
                              "record_end_ts, is_current FROM sales.dim_customer ORDER BY 1, 4"),
        "dim_product": query(settings, "SELECT product_id, name, price, record_start_ts, "
                             "record_end_ts, is_current FROM sales.dim_product ORDER BY 1, 4"),
        "fact_orders": query(settings, "SELECT order_id, c.customer_id, c.city, "
                             "c.record_start_ts, order_total FROM sales.fact_orders f LEFT JOIN "
                             "sales.dim_customer c USING (customer_sk) ORDER BY 1"),
        "fact_order_items": query(settings, "SELECT order_item_id, p.product_id, p.price, "
                                  "line_total FROM sales.fact_order_items i LEFT JOIN "
                                  "sales.dim_product p USING (product_sk) ORDER BY 1")}


# -- change-only loads ----------------------------------------------------------------------
def run_delta(settings: Settings, before: dict[str, list[tuple]],
              after: dict[str, list[tuple]]) -> dict[str, int]:
    """The load a change-only run makes: per staging table, the keys whose row changed
    (added, updated or deleted) with their new rows; then the procedures."""
    staged = {}
    for table, rows in after.items():
        keys = sorted({r[0] for r in set(before[table]) ^ set(rows)})
        new = [r for r in rows if r[0] in keys]
        assert load_staging(settings, table, STAGING_COLUMNS[table], iter(new),
                            keys=keys) == len(new)
        staged[table] = len(keys)
    for procedure in PROCEDURES:
        call(settings, procedure)
    return staged


def normalized(settings: Settings) -> dict[str, list[tuple]]:
    """Gold by natural keys: surrogate keys as (key, version start), times of the load
    itself (a close at load time) as LOAD, no run ids."""
    load = "CASE WHEN {c} > '2025-01-01' AND {c} < '9999-01-01' THEN NULL ELSE {c} END"
    def ts(c: str) -> str:
        return load.format(c=c)
    return {
        "dim_customer": query(settings, f"SELECT customer_id, name, email_hash, city, country, "
                              f"{ts('record_start_ts')}, {ts('record_end_ts')}, is_current "
                              "FROM sales.dim_customer ORDER BY 1, 6 NULLS LAST"),
        "dim_product": query(settings, f"SELECT product_id, name, category, price, active, "
                             f"{ts('record_start_ts')}, {ts('record_end_ts')}, is_current "
                             "FROM sales.dim_product ORDER BY 1, 6 NULLS LAST"),
        "fact_orders": query(settings, f"SELECT f.order_id, f.customer_id, c.customer_id, "
                             f"{ts('c.record_start_ts')}, f.date_key, f.status, f.platform, "
                             "f.payment_method, f.order_ts, f.updated_at, f.item_count, "
                             "f.order_total FROM sales.fact_orders f LEFT JOIN "
                             "sales.dim_customer c USING (customer_sk) ORDER BY 1"),
        "fact_order_items": query(settings, f"SELECT i.order_item_id, i.order_id, "
                                  f"i.product_id, p.product_id, {ts('p.record_start_ts')}, "
                                  "i.date_key, i.quantity, i.unit_price, i.line_total FROM "
                                  "sales.fact_order_items i LEFT JOIN sales.dim_product p "
                                  "USING (product_sk) ORDER BY 1"),
        "dim_date": query(settings, "SELECT date_key FROM sales.dim_date ORDER BY 1")}


MOVED = [customer_1("Porto", CITY_CHANGED_AT, 2), *CUSTOMERS[1:]]
REPRICED = [(10, "Widget", "Tools", Decimal("24.99"), True, PRICE_CHANGED_AT, seq(2),
             PRICE_CHANGED_AT), PRODUCTS[1]]
LATE_CUSTOMER = (4, "Dora Late", "d4" * 16, None, "Faro", "Portugal", T(2024, 2, 1),
                 T(2024, 2, 1), seq(3), T(2024, 8, 1))
SEQUENCES = {
    # A customer moves (order 102, placed after the move and not changed itself, must point
    # at the new version) and a product is repriced.
    "scd2 changes": [DATASET, changed(DATASET, stg_customers=MOVED, stg_products=REPRICED)],
    # Deleted keys (an order with its items, a customer), then back.
    "deletes and returns": [
        DATASET, changed(DATASET, stg_customers=CUSTOMERS[:2],
                         stg_orders=[o for o in ORDERS if o[0] != 101],
                         stg_order_items=[i for i in ITEMS if i[1] != 101]), DATASET],
    # An item moves to another order (both totals change), an order gets its first item,
    # an order moves in time (its items' date and product version follow).
    "items and orders move": [
        DATASET, changed(
            DATASET,
            stg_orders=[*ORDERS[:2], (102, 1, "delivered", "In-store", "cash",
                                      T(2024, 2, 1, 12, 0), T(2024, 6, 3)), ORDERS[3]],
            stg_order_items=[ITEMS[0], ITEMS[1], (1002, 100, 10, 4, Decimal("19.99")),
                             ITEMS[3], (1004, 103, 11, 1, Decimal("5.00"))],
            stg_products=REPRICED)],
    # An order arrives before its customer; the customer comes a run later.
    "late customer": [
        changed(DATASET, stg_orders=[*ORDERS, (104, 4, "paid", "Website", "card",
                                               T(2024, 3, 5), T(2024, 3, 5))]),
        changed(DATASET, stg_customers=[*CUSTOMERS, LATE_CUSTOMER],
                stg_orders=[*ORDERS, (104, 4, "paid", "Website", "card", T(2024, 3, 5),
                                      T(2024, 3, 5))])],
}


@pytest.mark.parametrize("name", SEQUENCES)
def test_change_only_loads_give_the_gold_of_full_loads(warehouse: Settings, name: str) -> None:
    """The procedures merge only the keys a delta batch staged (and the facts those keys
    reach); gold must be what full copies of the same states give."""
    states = SEQUENCES[name]
    for state in states:
        run(warehouse, state)
    full = normalized(warehouse)

    apply_ddl(warehouse, reset=True)
    run(warehouse, states[0])
    for before, after in zip(states, states[1:], strict=False):
        staged = run_delta(warehouse, before, after)
        assert sum(staged.values()) > 0
    modes = dict(query(warehouse, "SELECT procedure, mode FROM sales.procedure_state"))
    assert set(modes.values()) == {"delta"}, modes
    assert normalized(warehouse) == full
    # Staging after the deltas holds the last state, as a full copy would.
    for table, rows in states[-1].items():
        key = STAGING_COLUMNS[table][0]
        assert len(query(warehouse, f"SELECT 1 FROM sales.{table}")) == len(rows), table
        assert {r[0] for r in query(warehouse, f"SELECT {key} FROM sales.{table}")} == \
            {r[0] for r in rows}


def test_facts_that_missed_two_dimension_merges_catch_up(warehouse: Settings) -> None:
    """Runs that failed after LoadDims: the customer moved twice before the facts ran
    again; an order placed between the moves must point at the middle version."""
    porto = changed(DATASET, stg_customers=MOVED)
    faro = changed(DATASET, stg_customers=[customer_1("Faro", T(2024, 6, 15), 3),
                                           *CUSTOMERS[1:]])
    for state in (DATASET, porto, faro):
        run(warehouse, state)
    full = normalized(warehouse)

    apply_ddl(warehouse, reset=True)
    run(warehouse, DATASET)
    for before, after in ((DATASET, porto), (porto, faro)):
        keys = sorted({r[0] for r in set(before["stg_customers"]) ^ set(after["stg_customers"])})
        load_staging(warehouse, "stg_customers", STAGING_COLUMNS["stg_customers"],
                     [r for r in after["stg_customers"] if r[0] in keys], keys=keys)
        call(warehouse, "sp_merge_dim_customer")  # ...and the run fails here
    for procedure in PROCEDURES:
        call(warehouse, procedure)
    assert normalized(warehouse) == full
    (city,) = query(warehouse, "SELECT c.city FROM sales.fact_orders f JOIN sales.dim_customer "
                    "c USING (customer_sk) WHERE f.order_id = 102")[0]
    assert city == "Porto"


def test_a_delta_with_nothing_staged_changes_nothing(warehouse: Settings) -> None:
    run(warehouse, DATASET)
    before = dump(warehouse)
    assert run_delta(warehouse, DATASET, DATASET) == dict.fromkeys(DATASET, 0)
    assert dump(warehouse) == before
    assert query(warehouse, "SELECT DISTINCT mode, keys FROM sales.procedure_state") == [
        ("delta", 0)]


def test_staging_from_a_new_full_load_rebuilds_gold_as_a_fresh_load(warehouse: Settings) -> None:
    """A re-snapshot (the source re-seeded, then `shoplake cdc reset`) brings another dataset
    under the same keys: versions of the old one must not stay beside it."""
    def load(data: dict[str, list[tuple]], generation: str) -> list[str]:
        for table, rows in data.items():
            load_staging(warehouse, table, STAGING_COLUMNS[table], iter(rows),
                         snapshot=f"snapshot-{generation}", run_id="run-x",
                         generation=generation)
        return [w for p in PROCEDURES for w in call(warehouse, p, "run-x")]

    assert load(DATASET, "gen-1") == []
    assert load(changed(DATASET, stg_customers=[customer_1("Porto", CITY_CHANGED_AT, 2),
                                                *CUSTOMERS[1:]]), "gen-1") == []
    assert len(versions(warehouse, "dim_customer", "customer_id", 1)) == 2
    # The new dataset: customer 1 is someone else, in Paris, unchanged since 2023-11-09.
    others = [(1, "Zoé Noir", "z1" * 16, None, "Paris", "France", T(2023, 1, 1),
               T(2023, 11, 9), seq(1), T(2026, 1, 1)), *CUSTOMERS[1:]]
    reseeded = changed(DATASET, stg_customers=others)
    warnings = load(reseeded, "gen-2")
    assert len(warnings) == 2, warnings
    assert "`sales.dim_customer` rebuilt from a new bronze full load (generation gen-2): its " \
        "4 version(s) came from an earlier load (generation gen-1)" in warnings[0]
    assert "`sales.dim_product` rebuilt" in warnings[1]
    rebuilt = gold_shape(warehouse)
    assert rebuilt["dim_customer"][0] == (1, "Zoé Noir", "Paris", FIRST, OPEN, True)
    assert query(warehouse, "SELECT DISTINCT generation FROM sales.dim_customer") == [("gen-2",)]

    apply_ddl(warehouse, reset=True)
    load(reseeded, "gen-2")
    assert gold_shape(warehouse) == rebuilt


def test_bad_handoffs_fail_typed_and_leave_the_old_rows(warehouse: Settings) -> None:
    run(warehouse, DATASET)
    with pytest.raises(StagingLoadError, match="stg_orders"):
        load_staging(warehouse, "stg_orders", STAGING_COLUMNS["stg_orders"],
                     [ORDERS[0], ORDERS[0]])
    assert query(warehouse, "SELECT count(*) FROM sales.stg_orders") == [(len(ORDERS),)]
    with pytest.raises(StagingLoadError, match="expected 5"):
        load_staging(warehouse, "stg_order_items", STAGING_COLUMNS["stg_order_items"], [(1, 2)])
    with pytest.raises(UnknownTableError, match="fact"):
        load_staging(warehouse, "fact_orders", ("order_id",), [])
    load_staging(warehouse, "stg_orders", STAGING_COLUMNS["stg_orders"], [])
    with pytest.raises(ProcedureError, match="stg_orders"):
        call(warehouse, "sp_load_fact_orders")
    assert query(warehouse, "SELECT count(*) FROM sales.fact_orders") == [(len(ORDERS),)]


def test_apply_ddl_is_idempotent(warehouse: Settings, monkeypatch, capsys,
                                 stack_env: dict[str, str]) -> None:
    run(warehouse, DATASET)
    before = dump(warehouse)
    result = apply_ddl(warehouse)
    assert result.created == () and "fact_orders" in result.existing
    for key, value in stack_env.items():
        monkeypatch.setenv(key, value)
    assert main(["-q", "warehouse", "init"]) == 0
    assert "warehouse ready" in capsys.readouterr().out
    assert dump(warehouse) == before


def test_every_gold_row_names_the_run_that_wrote_it(warehouse: Settings) -> None:
    for table, rows in DATASET.items():
        load_staging(warehouse, table, STAGING_COLUMNS[table], iter(rows))
    for procedure in PROCEDURES:
        call(warehouse, procedure, "run-1")
    for table in GOLD:
        if table != "dim_date":
            assert query(warehouse, f"SELECT DISTINCT loaded_run FROM sales.{table}") == \
                [("run-1",)], table
    # A second run over the same staging writes nothing, so every row keeps its run.
    for procedure in PROCEDURES:
        call(warehouse, procedure, "run-2")
    assert query(warehouse, "SELECT DISTINCT loaded_run FROM sales.fact_orders") == [("run-1",)]


def test_a_warehouse_from_before_loaded_run_gains_the_column(warehouse: Settings) -> None:
    run(warehouse, DATASET)
    conn = connect(warehouse)
    try:
        with conn.cursor() as cur:
            cur.execute("DROP VIEW sales.v_sales_mart")
            # A warehouse that old lacks the columns appended after loaded_run too.
            for table, columns in (("dim_customer", ("loaded_run", "change_seq", "generation")),
                                   ("fact_orders", ("loaded_run",))):
                for column in columns:
                    cur.execute(f"ALTER TABLE sales.{table} DROP COLUMN {column}")
            # ...and its procedures took no run id.
            cur.execute("CREATE PROCEDURE sales.sp_load_fact_orders() LANGUAGE sql AS 'SELECT 1'")
        conn.commit()
    finally:
        conn.close()
    apply_ddl(warehouse)  # no drift error: the appended column is added
    for procedure in PROCEDURES:
        call(warehouse, procedure, "run-3")  # unambiguous: the old signature is gone
    # Rows from before keep no run (unchanged, so not rewritten); the column is there.
    [(before, total)] = query(warehouse, "SELECT count(*) FILTER (WHERE loaded_run IS NULL), "
                                         "count(*) FROM sales.fact_orders")
    assert before == total > 0


# -- reconciliation ------------------------------------------------------------------------
def mysql(settings: Settings) -> pymysql.connections.Connection:
    c = mysql_credentials(settings)
    return pymysql.connect(host=c.host, port=c.port, user=c.username,
                           password=c.password.reveal(), database=c.dbname, autocommit=True,
                           init_command="SET time_zone = '+00:00'")


STAGING_FROM_SOURCE = {  # no binlog position: NULL (then changes apply in load order)
    "stg_customers": "SELECT id, name, MD5(email), MD5(phone), city, country, created_at, "
                     "updated_at, NULL, NULL FROM customers",
    "stg_products": "SELECT id, name, category, price, active = 1, updated_at, NULL, NULL "
                    "FROM products",
    "stg_orders": "SELECT id, customer_id, status, platform, payment_method, order_ts, "
                  "updated_at FROM orders",
    "stg_order_items": "SELECT id, order_id, product_id, quantity, unit_price FROM order_items",
}


def staging_from_source(settings: Settings) -> dict[str, list[tuple]]:
    with mysql(settings) as conn, conn.cursor() as cur:
        out = {}
        for table, sql in STAGING_FROM_SOURCE.items():
            cur.execute(sql)
            out[table] = [tuple(bool(v) if table == "stg_products" and i == 4 else v
                                for i, v in enumerate(row)) for row in cur.fetchall()]
    return out


def test_reconcile_against_a_seeded_source(warehouse: Settings, monkeypatch, capsys,
                                           stack_env: dict[str, str]) -> None:
    seed(warehouse, scale=0.01, seed=3, reset=True)
    run(warehouse, staging_from_source(warehouse))
    report = reconcile(warehouse)
    assert report.ok, report.differences
    assert report.days > 300 and report.source_totals == report.gold_totals
    for key, value in stack_env.items():
        monkeypatch.setenv(key, value)
    assert main(["-q", "reconcile"]) == 0
    assert f"all {report.days} days match" in capsys.readouterr().out

    with mysql(warehouse) as conn, conn.cursor() as cur:
        cur.execute("SELECT i.id, DATE(o.order_ts) FROM order_items i "
                    "JOIN orders o ON o.id = i.order_id ORDER BY i.id LIMIT 1")
        item_id, day = cur.fetchone()
        cur.execute("UPDATE order_items SET quantity = quantity + 1 WHERE id = %s", (item_id,))
    report = reconcile(warehouse)
    assert report.differing_days == [day.isoformat()]
    assert {d.metric for d in report.differences} == {"quantity", "revenue", "order_total"}
    assert all(d.gold < d.source for d in report.differences)
    # The source changed behind the pipeline's back: no load staged it, so only a full
    # reconcile can see it.
    assert main(["-q", "reconcile"]) == 0
    assert "incremental reconcile" in capsys.readouterr().out
    assert main(["-q", "reconcile", "--full"]) == 1
    assert day.isoformat() in capsys.readouterr().out
    assert main(["-q", "reconcile", "--full", "--format", "json"]) == 1
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["ok"] is False and as_json["differing_days"] == [day.isoformat()]


def test_an_incremental_reconcile_checks_what_the_loads_changed(warehouse: Settings) -> None:
    """After a full reconcile, a run's reconcile checks the keys its batches staged and the
    days they reach, at content level: a change loaded wrong is found, by day and by row."""
    from pipeline.warehouse.reconcile import reconcile_run

    seed(warehouse, scale=0.01, seed=5, reset=True)
    data = staging_from_source(warehouse)
    run(warehouse, data)
    first = reconcile_run(warehouse)
    assert first.ok and first.kind == "full" and first.why == "no reconcile recorded yet"
    quiet = reconcile_run(warehouse)
    assert quiet.ok and quiet.kind == "incremental" and quiet.days == 0

    with mysql(warehouse) as conn, conn.cursor() as cur:
        cur.execute("SELECT i.id, i.order_id, DATE(o.order_ts) FROM order_items i "
                    "JOIN orders o ON o.id = i.order_id ORDER BY i.id LIMIT 1")
        item_id, order_id, day = cur.fetchone()
        cur.execute("UPDATE order_items SET quantity = quantity + 1 WHERE id = %s", (item_id,))
        cur.execute("UPDATE customers SET city = 'Tromsø' WHERE id = 1")
    now = staging_from_source(warehouse)
    # The item reaches gold wrong (a bad hand-off: its old quantity); the customer right.
    wrong = [r for r in data["stg_order_items"] if r[0] == item_id]
    load_staging(warehouse, "stg_order_items", STAGING_COLUMNS["stg_order_items"], wrong,
                 keys=[item_id])
    load_staging(warehouse, "stg_customers", STAGING_COLUMNS["stg_customers"],
                 [r for r in now["stg_customers"] if r[0] == 1], keys=[1])
    for procedure in PROCEDURES:
        call(warehouse, procedure)
    report = reconcile_run(warehouse)
    assert report.kind == "incremental" and not report.ok
    assert report.differing_days == [day.isoformat()], report.differences
    assert {(r.table, r.key) for r in report.rows} == {("order_items", str(item_id))}
    assert report.rows_compared["customers"] == 1 and report.rows_compared["orders"] >= 1
    assert report.facts_checked > 0
    # Not recorded as passed: the next reconcile checks those keys again.
    assert not reconcile_run(warehouse).ok
    load_staging(warehouse, "stg_order_items", STAGING_COLUMNS["stg_order_items"],
                 [r for r in now["stg_order_items"] if r[0] == item_id], keys=[item_id])
    for procedure in PROCEDURES:
        call(warehouse, procedure)
    fixed = reconcile_run(warehouse)
    assert fixed.ok and fixed.kind == "incremental", fixed.differences
    assert reconcile_run(warehouse, full=True).kind == "full"


def test_reconcile_checks_the_dimension_version_of_every_fact(warehouse: Settings) -> None:
    """Totals cannot see a fact pointing at the wrong version (Sales by city reads it)."""
    seed(warehouse, scale=0.01, seed=4, reset=True)
    run(warehouse, staging_from_source(warehouse))
    report = reconcile(warehouse)
    assert report.ok, report.rows[:3]
    facts = query(warehouse, "SELECT (SELECT count(*) FROM sales.fact_orders) + "
                             "(SELECT count(*) FROM sales.fact_order_items)")[0][0]
    assert report.facts_checked == facts > 0
    [(order_id, customer_id, other_sk)] = query(
        warehouse, "SELECT f.order_id, f.customer_id, c.customer_sk FROM sales.fact_orders f "
                   "JOIN sales.dim_customer c ON c.customer_id <> f.customer_id "
                   "ORDER BY f.order_id, c.customer_sk LIMIT 1")
    with session(warehouse) as conn, conn.cursor() as cur:
        cur.execute("UPDATE sales.fact_orders SET customer_sk = %s WHERE order_id = %s",
                    (other_sk, order_id))
        # ...and a version of customer 1 that overlaps its current one.
        cur.execute("INSERT INTO sales.dim_customer (customer_id, name, city, attr_hash, "
                    "record_start_ts, record_end_ts, is_current) VALUES (1, 'x', 'Elsewhere', "
                    "'h', '0001-01-01', '2999-01-01', false)")
        conn.commit()
    report = reconcile(warehouse)
    assert not report.ok and report.days > 0 and not report.differences
    said = [r.describe() for r in report.rows]
    assert f"fact_orders {order_id}: customer_sk {other_sk}, but the version of customer " \
           f"{customer_id} valid at order_ts" in "\n".join(said), said
    assert any(d.startswith("dim_customer customer 1: version ") and "overlaps" in d
               for d in said), said
    assert reconcile_json(warehouse)["differing_rows"]["fact_orders"] >= 1

    with session(warehouse) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM sales.dim_customer WHERE city = 'Elsewhere'")
        conn.commit()
    # A plain call merges only the keys staged since: nothing. A full one repairs.
    call(warehouse, "sp_load_fact_orders")
    assert not reconcile(warehouse).ok
    call(warehouse, "sp_load_fact_orders", full=True)  # points the fact at its version again
    assert reconcile(warehouse).ok


def reconcile_json(settings: Settings) -> dict[str, Any]:
    return reconcile(settings).as_dict()
