"""The `shop` data generator: deterministic, scaled, consistent and realistic enough."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from pipeline.source.generate import (
    COLUMNS,
    NEXT_STATUSES,
    STATUSES,
    TABLES,
    Dataset,
    default_anchor,
    default_profile,
    generate,
    months_before,
)
from pipeline.source.load import schema_statements

pytestmark = pytest.mark.unit

ANCHOR = datetime(2025, 6, 15)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return generate(scale=0.1, seed=7, anchor=ANCHOR)


def test_same_seed_and_anchor_give_identical_rows() -> None:
    first, second = generate(0.01, 3, ANCHOR), generate(0.01, 3, ANCHOR)
    for table in TABLES:
        assert first.rows(table) == second.rows(table)
    other = generate(0.01, 4, ANCHOR)
    assert other.customers != first.customers and other.orders != first.orders


def test_counts_follow_the_scale(data: Dataset) -> None:
    counts = data.counts()
    assert (counts["customers"], counts["products"], counts["orders"]) == (1_000, 100, 10_000)
    assert 2.3 < counts["order_items"] / counts["orders"] < 2.7
    tiny = generate(0.01, 1, ANCHOR).counts()
    assert (tiny["customers"], tiny["products"], tiny["orders"]) == (100, 10, 1_000)
    assert generate(0.0001, 1, ANCHOR).counts()["orders"] == 10


def test_rejects_a_scale_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="scale"):
        generate(0, 1, ANCHOR)


def test_rows_match_the_declared_columns_and_the_schema(data: Dataset) -> None:
    statements = schema_statements()
    assert len(statements) == len(TABLES)
    for table, ddl in zip(TABLES, statements, strict=True):
        assert f"CREATE TABLE IF NOT EXISTS {table} (" in ddl
        declared = re.findall(r"^\s{4}(\w+)\s+(?:INT|VARCHAR|DECIMAL|TINYINT|DATETIME)", ddl,
                              flags=re.M)
        assert tuple(declared) == COLUMNS[table]
        assert all(len(row) == len(COLUMNS[table]) for row in data.rows(table))


def test_ids_are_dense_and_foreign_keys_resolve(data: Dataset) -> None:
    for table in TABLES:
        assert [row[0] for row in data.rows(table)] == list(range(1, len(data.rows(table)) + 1))
    created = {c[0]: c[6] for c in data.customers}
    products = {p[0] for p in data.products}
    order_ts = {o[0]: o[5] for o in data.orders}
    for _, customer_id, *_rest, ts, _updated in data.orders:
        assert created[customer_id] <= ts  # nobody orders before signing up
    for _, order_id, product_id, quantity, _price in data.order_items:
        assert order_id in order_ts and product_id in products and 1 <= quantity <= 5
    lines = Counter(item[1] for item in data.order_items)
    assert set(lines) == set(order_ts) and max(lines.values()) <= 5
    pairs = [(item[1], item[2]) for item in data.order_items]
    assert len(pairs) == len(set(pairs))


def test_emails_are_unique_and_well_formed(data: Dataset) -> None:
    emails = [c[2] for c in data.customers]
    assert len(set(emails)) == len(emails)
    assert all(re.fullmatch(r"[a-z0-9._]+@[a-z0-9.-]+\.[a-z]+", e) for e in emails)
    big = generate(0.5, 11, ANCHOR).customers
    assert len({c[2] for c in big}) == len(big) == 5_000


def test_customers_look_real(data: Dataset) -> None:
    for _, name, _email, phone, city, country, created_at, updated_at in data.customers:
        assert " " in name and city and country
        assert phone is None or re.fullmatch(r"\+\d{1,3} \d{3}-\d{3}-\d{4}", phone)
        assert created_at <= updated_at < ANCHOR
    assert len({c[5] for c in data.customers}) >= 8
    assert sum(c[3] is None for c in data.customers) < len(data.customers) * 0.1


def test_orders_span_thirteen_months_with_a_year_end_peak(data: Dataset) -> None:
    start = months_before(ANCHOR, 13)
    assert start == datetime(2024, 5, 15)
    assert all(start <= o[5] < ANCHOR for o in data.orders)
    assert [o[5] for o in data.orders] == sorted(o[5] for o in data.orders)
    per_month = Counter((o[5].year, o[5].month) for o in data.orders)
    # Full months only: December and November beat every other month.
    assert per_month[(2024, 12)] > per_month[(2024, 11)] > max(
        n for (y, m), n in per_month.items() if m not in (11, 12, 5, 6))


def test_status_depends_on_age(data: Dataset) -> None:
    assert {o[2] for o in data.orders} <= set(STATUSES)
    old = Counter(o[2] for o in data.orders if ANCHOR - o[5] > timedelta(days=30))
    assert set(old) == {"delivered", "cancelled", "returned"}
    assert old["delivered"] > 0.8 * sum(old.values())
    assert 0.03 < old["cancelled"] / sum(old.values()) < 0.1
    recent = Counter(o[2] for o in data.orders if ANCHOR - o[5] < timedelta(days=2))
    assert recent and not {"delivered", "returned"} & set(recent)
    assert {"placed", "paid", "shipped"} <= {o[2] for o in data.orders}
    for _, _, status, platform, payment, ts, updated_at in data.orders:
        assert ts <= updated_at < ANCHOR
        assert (updated_at == ts) == (status == "placed")
        profile = default_profile()
        assert platform in profile.platforms and payment in profile.payments[platform]
    assert set(NEXT_STATUSES) | {"cancelled", "returned"} == set(STATUSES)


def test_unit_price_is_the_price_at_order_time(data: Dataset) -> None:
    order_ts = {o[0]: o[5] for o in data.orders}
    current = {p[0]: p[3] for p in data.products}
    old_price_used = 0
    for _, order_id, product_id, _qty, unit_price in data.order_items:
        ts = order_ts[order_id]
        assert unit_price == data.price_at(product_id, ts)
        change = data.price_changes.get(product_id)
        if change and ts < change[0]:
            assert unit_price == change[1]
            old_price_used += unit_price != current[product_id]
        else:
            assert unit_price == current[product_id]
    assert old_price_used > 0
    for pid, withdrawn in data.deactivations.items():
        assert all(order_ts[i[1]] < withdrawn for i in data.order_items if i[2] == pid)


def test_products_have_money_prices_and_skewed_popularity(data: Dataset) -> None:
    for _, name, category, price, active, updated_at in data.products:
        assert name and category and active in (0, 1) and updated_at < ANCHOR
        assert isinstance(price, Decimal) and price > 0 and price == price.quantize(Decimal("0.01"))
    assert sum(p[4] for p in data.products) > 0.9 * len(data.products)
    sold = Counter(i[2] for i in data.order_items).most_common()
    top_tenth = sum(n for _, n in sold[: len(sold) // 10])
    assert top_tenth > 0.3 * len(data.order_items)  # a few products sell most
    assert sold[0][1] < 0.15 * len(data.order_items)  # but none is in every basket


def test_anchor_is_normalised_to_naive_utc() -> None:
    aware = datetime(2025, 6, 15, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    assert generate(0.001, 1, aware).anchor == ANCHOR
    today = default_anchor()
    assert today.tzinfo is None and today.time() == datetime.min.time()
    assert today.date() == datetime.now(UTC).date()
    assert months_before(datetime(2025, 3, 31), 1) == datetime(2025, 2, 28)
    assert months_before(datetime(2025, 1, 10), 13) == datetime(2023, 12, 10)
