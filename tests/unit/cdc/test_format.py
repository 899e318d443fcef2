"""The DMS S3 file format: names, extra columns, encodings (checked against expected files)."""

from __future__ import annotations

import io
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.cdc.format import (
    SEQ_COLUMN,
    cdc_file_name,
    change_seq,
    encode,
    is_cdc_file,
    load_file_name,
    next_cdc_name,
)
from pipeline.cdc.source import BinlogPosition, bytes_behind

pytestmark = pytest.mark.unit
EXPECTED = Path(__file__).parent / "expected"

NAMES = ("Op", "commit_ts", "id", "amount", "label", "at", SEQ_COLUMN)
TYPES = (pa.string(), pa.string(), pa.int64(), pa.decimal128(12, 2), pa.string(),
         pa.timestamp("us"), pa.string())
ROWS = [
    ("I", "2026-11-26 11:34:01.000000", 1, Decimal("9.99"), "Zoë, \"quoted\"",
     datetime(2026, 11, 26, 11, 34, 1, 123456), change_seq(3, 4567, 0)),
    ("U", "2026-11-26 11:34:02.000000", 1, Decimal("-0.50"), None, None,
     change_seq(3, 4890, 0)),
    ("D", "2026-11-26 11:34:02.000000", 2, Decimal("0.00"), "", datetime(2026, 1, 1),
     change_seq(3, 4890, 1)),
]


def test_file_names_follow_dms() -> None:
    assert load_file_name(1, "parquet") == "LOAD00000001.parquet"
    assert load_file_name(26, "csv") == "LOAD0000001A.csv"
    name = cdc_file_name(datetime(2026, 11, 26, 11, 34, 1, 123456), "csv")
    assert name == "20261126-1134011234.csv"
    assert is_cdc_file(name) and not is_cdc_file("LOAD00000001.csv")


def test_cdc_names_always_grow_even_when_the_clock_does_not() -> None:
    now = datetime(2026, 11, 26, 11, 34, 1, 123456)
    first = next_cdc_name("", now, "parquet")
    second = next_cdc_name(first, now, "parquet")  # same instant
    third = next_cdc_name(second, datetime(2026, 11, 26, 11, 0), "parquet")  # clock went back
    assert first < second < third
    assert third == "20261126-1134011236.parquet"


def test_change_sequence_sorts_in_binlog_order() -> None:
    seqs = [change_seq(3, 4567, 0), change_seq(3, 4567, 1), change_seq(3, 10_000, 0),
            change_seq(4, 4, 0)]
    assert seqs == sorted(seqs)
    assert all(len(s) == 35 for s in seqs)


def test_csv_matches_the_expected_file() -> None:
    got = encode(NAMES, TYPES, ROWS, "csv", "\\N").decode()
    assert got == (EXPECTED / "cdc_changes.csv").read_text()


def test_parquet_keeps_types_and_nulls() -> None:
    table = pq.read_table(io.BytesIO(encode(NAMES, TYPES, ROWS, "parquet", "\\N")))
    assert table.schema.field("amount").type == pa.decimal128(12, 2)
    assert table.schema.field("at").type == pa.timestamp("us")
    rows = table.to_pylist()
    assert rows[0]["label"] == "Zoë, \"quoted\"" and rows[1]["label"] is None
    assert rows[2]["label"] == ""
    assert [r["Op"] for r in rows] == ["I", "U", "D"]


def test_empty_file_still_carries_the_schema() -> None:
    table = pq.read_table(io.BytesIO(encode(NAMES, TYPES, [], "parquet", "\\N")))
    assert table.num_rows == 0 and table.column_names == list(NAMES)


def test_binlog_positions_and_lag() -> None:
    a, b = BinlogPosition("binlog.000009", 900), BinlogPosition("binlog.000010", 4)
    assert a < b  # by file sequence number, not by name alone
    files = [("binlog.000009", 1000), ("binlog.000010", 500), ("binlog.000011", 300)]
    assert bytes_behind(files, a) == 100 + 500 + 300
    assert bytes_behind(files, BinlogPosition("binlog.000011", 300)) == 0
