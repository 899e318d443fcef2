"""COPY's CSV stream and the reconciliation arithmetic, without a database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from pipeline.warehouse import load
from pipeline.warehouse.reconcile import compare

pytestmark = pytest.mark.unit


def test_fields_keep_null_apart_from_empty_and_quote_every_string() -> None:
    row = (None, "", 'say "hi",\nbye', True, Decimal("0.10"), 7,
           datetime(2024, 1, 2, 3, 4, 5, 6), date(2024, 1, 2))
    assert ",".join(load._field(v) for v in row) == (
        ',"","say ""hi"",\nbye",true,0.10,7,2024-01-02 03:04:05.000006,2024-01-02')


def test_aware_timestamps_are_written_as_naive_utc() -> None:
    lisbon_summer = datetime(2024, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    assert load._field(lisbon_summer) == "2024-07-01 11:00:00"
    assert load._field(datetime(2024, 7, 1, tzinfo=UTC)) == "2024-07-01 00:00:00"


def test_stream_reads_rows_lazily_in_chunks() -> None:
    pulled = []

    def rows():
        for i in range(1000):
            pulled.append(i)
            yield (i, f"name {i}")

    stream = load._CsvStream(rows(), 2)
    first = stream.read(100)
    assert len(first) == 100 and len(pulled) < 20  # only what the chunk needed
    rest = "".join(iter(lambda: stream.read(100), ""))
    lines = (first + rest).splitlines()
    assert len(lines) == 1000 and lines[999] == '999,"name 999"'
    assert stream.count == 1000


def test_stream_rejects_rows_of_the_wrong_width() -> None:
    stream = load._CsvStream([(1, 2, 3), (1, 2)], 3)
    with pytest.raises(ValueError, match="row 2 has 2 values, expected 3"):
        stream.read(1 << 20)
    assert isinstance(stream.error, ValueError)


def _day(orders: int, items: int, quantity: int, revenue: str) -> dict:
    return {"orders": orders, "items": items, "quantity": quantity,
            "revenue": Decimal(revenue), "order_total": Decimal(revenue)}


def test_compare_lists_every_differing_number_and_missing_days_as_zero() -> None:
    d1, d2, d3 = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)
    source = {d1: _day(2, 3, 4, "10.00"), d2: _day(1, 1, 1, "5.00")}
    gold = {d1: _day(2, 3, 4, "10.0"), d3: _day(1, 1, 1, "5.00")}
    report = compare(source, gold, {"customers": 3, "products": 2},
                     {"customers": 3, "products": 1})
    assert not report.ok and report.days == 3
    assert report.differing_days == ["2024-03-02", "2024-03-03"]
    assert [(d.key, d.metric, d.source, d.gold) for d in report.differences
            if d.key == "2024-03-02"][0] == ("2024-03-02", "orders", 1, 0)
    assert report.differences[-1].as_dict() == {"scope": "total", "key": "products",
                                                "metric": "products", "source": 2, "gold": 1,
                                                "delta": -1}
    assert report.source_totals["revenue"] == report.gold_totals["revenue"] == Decimal("15.00")
    assert compare(source, source, {"customers": 1, "products": 1},
                   {"customers": 1, "products": 1}).ok
