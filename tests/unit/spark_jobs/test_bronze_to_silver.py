"""`clean` and `merge` of bronze_to_silver on local DataFrames (Spark, no services)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from decimal import Decimal

import pytest

from spark_jobs.bronze_to_silver import clean, merge
from spark_jobs.silver_model import TABLES

pytestmark = [pytest.mark.unit, pytest.mark.spark]

SEQ0 = "0" * 35


def seq(n: int) -> str:
    return f"{n:035d}"


@pytest.fixture(scope="module")
def spark():
    from pipeline.config import load_settings
    from pipeline.glue.session import get_spark

    return get_spark(load_settings(environ={}))


def items(spark, rows):
    cols = ["Op", "commit_ts", "id", "order_id", "product_id", "quantity", "unit_price",
            "AR_H_CHANGE_SEQ"]
    return spark.createDataFrame(rows, cols)


def test_bad_rows_go_to_quarantine_with_their_reason(spark) -> None:
    df = items(spark, [
        ("I", "2026-11-26 10:00:00.000000", 1, 10, 5, 2, Decimal("9.99"), seq(1)),
        ("I", "2026-11-26 10:00:00.000000", 2, 10, 6, -1, Decimal("1.00"), seq(2)),
        ("I", "2026-11-26 10:00:00.000000", None, 10, 7, 1, Decimal("1.00"), seq(3)),
        ("I", "2026-11-26 10:00:00.000000", 4, 10, 8, 0, Decimal("-2.00"), seq(4)),
        ("D", "2026-11-26 10:00:00.000000", 5, None, None, None, None, seq(5)),
    ])
    valid, bad = clean(df, TABLES["order_items"], "salt", "2026-11-26")
    assert sorted(r["id"] for r in valid.collect()) == [1, 5]  # a delete needs only its key
    reasons = {r["id"]: r["_reason"] for r in bad.collect()}
    assert reasons == {"2": "non-positive `quantity`", None: "null primary key `id`",
                       "4": "negative `unit_price`; non-positive `quantity`"}
    assert {r["ingest_date"] for r in bad.collect()} == {"2026-11-26"}


def test_strings_are_trimmed_enums_checked_dates_parsed(spark) -> None:
    cols = ["Op", "commit_ts", "id", "customer_id", "status", "platform", "payment_method",
            "order_ts", "updated_at", "AR_H_CHANGE_SEQ"]
    df = spark.createDataFrame([
        ("I", "2026-11-26 10:00:00.000000", "1", "7", " PAID ", "Website", "  Credit   Card ",
         "2026-11-01 09:30:00.5", "2026-11-01 09:30:00", seq(1)),
        ("I", "2026-11-26 10:00:00.000000", "2", "7", "lost", "Website", "Cash",
         "2026-11-01 09:30:00", "2026-11-01 09:30:00", seq(2)),
        ("I", "2026-11-26 10:00:00.000000", "3", "7", "paid", "Fax", "Cash",
         "yesterday-ish", "2026-11-01 09:30:00", seq(3)),
    ], cols)  # all text, as a CSV bronze file reads
    valid, bad = clean(df, TABLES["orders"], "salt", "2026-11-26")
    row = valid.collect()[0]
    assert (row["status"], row["payment_method"]) == ("paid", "Credit Card")
    assert row["order_ts"] == datetime(2026, 11, 1, 9, 30, 0, 500000)
    assert row["_change_seq"] == seq(1) and row["_op"] == "I"
    reasons = {r["id"]: r["_reason"] for r in bad.collect()}
    assert reasons["2"] == "unknown status 'lost'"
    assert "unparsable `order_ts`: 'yesterday-ish'" in reasons["3"]
    assert "unknown platform 'Fax'" in reasons["3"]


def test_pii_is_hashed_with_the_salt_and_never_kept(spark) -> None:
    cols = ["Op", "commit_ts", "id", "name", "email", "phone", "city", "country",
            "created_at", "updated_at", "AR_H_CHANGE_SEQ"]
    ts = datetime(2026, 1, 1)
    df = spark.createDataFrame([
        ("I", "2026-11-26 10:00:00.000000", 1, "Zoë", " Zoe@Example.COM ", "+49 (30) 123",
         " Köln ", "Germany", ts, ts, seq(1)),
        ("I", "2026-11-26 10:00:00.000000", 2, "Bob", None, None, "Oslo", "Norway", ts, ts,
         seq(2)),
    ], cols)
    valid, bad = clean(df, TABLES["customers"], "pepper", "2026-11-26")
    rows = {r["id"]: r for r in valid.collect()}
    assert "email" not in valid.columns and "phone" not in valid.columns
    assert rows[1]["email_hash"] == hashlib.sha256(b"pepperzoe@example.com").hexdigest()
    assert rows[1]["phone_hash"] == hashlib.sha256(b"pepper+4930123").hexdigest()
    assert rows[1]["city"] == "Köln"
    assert [r["_reason"] for r in bad.collect()] == ["missing `email`"]
    assert "email" not in bad.columns  # quarantine keeps no raw PII either


def test_a_change_without_a_required_column_says_the_source_lost_it(spark) -> None:
    """After `ALTER TABLE customers RENAME COLUMN city TO town` the changes carry `town`."""
    cols = ["Op", "commit_ts", "id", "name", "email", "phone", "town", "country",
            "created_at", "updated_at", "AR_H_CHANGE_SEQ"]
    ts = datetime(2026, 1, 1)
    df = spark.createDataFrame([
        ("U", "2026-11-26 10:00:00.000000", 2, "Ann", "a@x.org", None, "Rome", "Italy", ts,
         ts, seq(1)),
        ("D", "2026-11-26 10:00:00.000000", 3, "Cy", "c@x.org", "1", "Oslo", "Norway", ts, ts,
         seq(2)),
    ], cols)
    valid, bad = clean(df, TABLES["customers"], "salt", "2026-11-26")
    assert [r["id"] for r in valid.collect()] == [3]  # a delete needs only its key
    assert [r["_reason"] for r in bad.collect()] == [
        "the change has no column `city`: renamed or dropped at the source"]


def test_merge_applies_changes_in_sequence_and_replays_are_harmless(spark) -> None:
    spec = TABLES["order_items"]

    def changes(rows):
        df = items(spark, [("I" if op == "I" else op, "2026-11-26 10:00:00.000000", i, 1, 1,
                            q, Decimal("1.00"), seq(s)) for op, i, q, s in rows])
        return clean(df, spec, "s", "2026-11-26")[0]

    first = merge(None, changes([("I", 1, 1, 1), ("I", 2, 1, 2), ("U", 1, 5, 3),
                                 ("I", 3, 1, 4), ("D", 3, 1, 5)]), spec)
    state = {r["id"]: r["quantity"] for r in first.collect()}
    assert state == {1: 5, 2: 1}
    # the same files again, and an older change out of order: nothing moves
    again = merge(first, changes([("I", 1, 1, 1), ("U", 1, 5, 3), ("D", 3, 1, 5)]), spec)
    assert {r["id"]: r["quantity"] for r in again.collect()} == state
    later = merge(again, changes([("D", 2, 1, 6), ("U", 1, 9, 7)]), spec)
    assert {r["id"]: r["quantity"] for r in later.collect()} == {1: 9}
    assert later.columns == spec.names + ["_change_seq", "_commit_ts", "ingest_date"]


def test_latest_changes_keeps_one_change_per_key_by_binlog_order(spark) -> None:
    """MERGE INTO refuses two source rows for one key: the batch is cut to the latest change
    of each key by AR_H_CHANGE_SEQ, whatever the commit times say (a delete and a
    re-insert of one key within the batch leaves the insert)."""
    from spark_jobs.bronze_to_silver import latest_changes

    spec = TABLES["order_items"]
    df = items(spark, [
        ("I", "2026-11-26 10:00:05.000000", 1, 1, 1, 1, Decimal("1.00"), seq(1)),
        ("D", "2026-11-26 10:00:01.000000", 1, 1, 1, 1, Decimal("1.00"), seq(2)),
        ("I", "2026-11-26 10:00:00.000000", 1, 1, 1, 7, Decimal("1.00"), seq(3)),
        ("U", "2026-11-26 10:00:09.000000", 2, 1, 1, 4, Decimal("1.00"), seq(5)),
        ("D", "2026-11-26 10:00:00.000000", 2, 1, 1, 4, Decimal("1.00"), seq(6)),
    ])
    batch = latest_changes(clean(df, spec, "s", "2026-11-26")[0], spec)
    assert sorted((r["id"], r["_op"], r["quantity"]) for r in batch.collect()) == [
        (1, "I", 7), (2, "D", 4)]


class _Conflicting:
    """A SparkSession whose MERGE commits lose to another writer `fails` times."""

    def __init__(self, spark, fails: int) -> None:
        self._spark, self.fails, self.merges = spark, fails, 0

    def sql(self, statement: str):
        if statement.startswith("MERGE INTO"):
            self.merges += 1
            if self.merges <= self.fails:
                raise RuntimeError("org.apache.iceberg.exceptions.CommitFailedException: "
                                   "Cannot commit silver.shop.orders: metadata location "
                                   "changed")
            return None
        return self._spark.sql(statement)

    def __getattr__(self, name: str):
        return getattr(self._spark, name)


def _order_changes(spark):
    from spark_jobs.bronze_to_silver import latest_changes

    valid, _ = clean(spark.createDataFrame([
        ("U", "2026-11-26 10:00:00.000000", "1", "7", "paid", "Website", "Card",
         "2026-11-01 09:30:00", "2026-11-01 09:30:00", seq(9))],
        ["Op", "commit_ts", "id", "customer_id", "status", "platform", "payment_method",
         "order_ts", "updated_at", "AR_H_CHANGE_SEQ"]), TABLES["orders"], "salt", "2026-11-26")
    from pyspark.sql import functions as F

    return latest_changes(valid.withColumn("_run_id", F.lit("run-1")), TABLES["orders"])


def test_a_commit_conflict_is_retried_then_named(spark) -> None:
    from pipeline.glue.silver import SilverConflictError
    from spark_jobs.bronze_to_silver import COMMIT_ATTEMPTS, _merge_into

    lucky = _Conflicting(spark, COMMIT_ATTEMPTS - 1)  # the last attempt gets through
    assert _merge_into(lucky, "silver.shop.orders", _order_changes(spark), TABLES["orders"],
                       "orders") == {"inserts_or_updates": 1, "deletes": 0}
    assert lucky.merges == COMMIT_ATTEMPTS
    unlucky = _Conflicting(spark, COMMIT_ATTEMPTS)
    with pytest.raises(SilverConflictError, match="silver table `orders`") as err:
        _merge_into(unlucky, "silver.shop.orders", _order_changes(spark), TABLES["orders"],
                    "orders")
    assert "CommitFailedException" in str(err.value) and err.value.transient
