"""Replay bronze into current table state: the reference reading of the DMS files.

Rows are applied in AR_H_CHANGE_SEQ order (binlog order; full-load rows sort first): I
and U upsert the after image by primary key, D removes the key. Used to verify bronze
against the source (the tests) and as the spec bronze_to_silver follows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import pyarrow.parquet as pq

from pipeline.cdc.bronze import Bronze
from pipeline.cdc.format import OP_COLUMN, SEQ_COLUMN


def read_changes(bronze: Bronze, table: str, csv_null: str = "\\N") -> list[dict[str, Any]]:
    """Every row of every file of `table`, as dicts, in change-sequence order."""
    rows: list[dict[str, Any]] = []
    for key in sorted(k for k in bronze.keys() if k.split("/")[1] == table):
        body = bronze.s3.get_object(Bucket=bronze.bucket, Key=key)["Body"].read()
        if key.endswith(".parquet"):
            rows.extend(pq.read_table(io.BytesIO(body)).to_pylist())
        else:
            reader = csv.DictReader(io.StringIO(body.decode("utf-8")))
            rows.extend({k: (None if v == csv_null else v) for k, v in r.items()}
                        for r in reader)
    rows.sort(key=lambda r: r[SEQ_COLUMN])
    return rows


def replay(changes: Sequence[dict[str, Any]], primary_key: Sequence[str],
           drop: Sequence[str] = ()) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Current state by primary key; `drop` names the extra columns to leave out."""
    state: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in changes:
        key = tuple(row[k] for k in primary_key)
        if row.get(OP_COLUMN, "I") == "D":
            state.pop(key, None)
        else:
            state[key] = {k: v for k, v in row.items() if k not in drop}
    return state
