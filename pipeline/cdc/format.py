"""The AWS DMS S3 target format: file names, extra columns, Parquet and CSV encodings."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pymysqlreplication.constants import FIELD_TYPE

from pipeline.cdc.source import Column

OP_COLUMN = "Op"
SEQ_COLUMN = "AR_H_CHANGE_SEQ"
"""DMS's header column: a unique, increasing change sequence (binlog file, offset, row)."""

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # DMS: yyyy-MM-dd HH:mm:ss.SSSSSS
EXTENSIONS = {"parquet": "parquet", "csv": "csv"}

_INT_TYPES = {"tinyint", "smallint", "mediumint", "int", "bigint", "year"}
_STRING_TYPES = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set"}


def load_file_name(n: int, data_format: str) -> str:
    """Full-load files: LOAD00000001, ... (8 hex digits, 1-based), as DMS names them."""
    return f"LOAD{n:08X}.{EXTENSIONS[data_format]}"


def cdc_file_name(at: datetime, data_format: str) -> str:
    """CDC files are named by time, e.g. 20261126-1134010000.parquet (to 1/10 ms)."""
    return f"{at:%Y%m%d-%H%M%S}{at.microsecond // 100:04d}.{EXTENSIONS[data_format]}"


def is_cdc_file(name: str) -> bool:
    stem = name.rsplit(".", 1)[0]
    return len(stem) == 19 and stem[8] == "-" and stem.replace("-", "").isdigit()


def is_load_file(name: str) -> bool:
    stem = name.rsplit(".", 1)[0]
    return (len(stem) == 12 and stem.startswith("LOAD")
            and all(c in "0123456789ABCDEF" for c in stem[4:]))


def is_dms_file(name: str) -> bool:
    """A full-load or CDC file name in DMS's format, with one of our extensions."""
    ext = name.rsplit(".", 1)[-1] if "." in name else ""
    return ext in EXTENSIONS.values() and (is_load_file(name) or is_cdc_file(name))


def is_load_key(key: str) -> bool:
    """A full-load file's S3 key (`shop/orders/LOAD00000001.parquet`)."""
    return is_load_file(key.rsplit("/", 1)[-1])


def is_cdc_key(key: str) -> bool:
    """A change file's S3 key (`shop/orders/20261126-1134010000.parquet`)."""
    return is_cdc_file(key.rsplit("/", 1)[-1])


def write_order(key: str) -> tuple[int, str]:
    """The order DMS wrote a table's files in: the full load, then CDC files by name."""
    name = key.rsplit("/", 1)[-1]
    return (0 if is_load_file(name) else 1, name)


def next_cdc_name(last: str, now: datetime, data_format: str) -> str:
    """A CDC file name after `now` and strictly greater than the last one written.

    Names must grow: on restart, files named after the checkpoint's are deleted as
    uncommitted, so a clock step backwards must not make new files sort before old ones.
    """
    name = cdc_file_name(now, data_format)
    if last and name.rsplit(".", 1)[0] <= last.rsplit(".", 1)[0]:
        prev = datetime.strptime(last.rsplit(".", 1)[0], "%Y%m%d-%H%M%S%f")
        # %f pads the 4 digits on the right, so they read back as microseconds exactly.
        name = cdc_file_name(prev + timedelta(microseconds=100), data_format)
    return name


def format_ts(at: datetime) -> str:
    return at.strftime(TIMESTAMP_FORMAT)


def utc_from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC).replace(tzinfo=None)


def change_seq(file_index: int, log_pos: int, row: int) -> str:
    """35 digits like DMS's AR_H_CHANGE_SEQ; sorts in binlog order as a string."""
    return f"{file_index:06d}{log_pos:019d}{row:010d}"


# -- types ----------------------------------------------------------------------------------
def arrow_type_for_column(col: Column) -> pa.DataType:
    """Arrow type of a column described by information_schema (full load)."""
    t = col.data_type
    if t in _INT_TYPES:
        return pa.int64()
    if t == "decimal":
        return pa.decimal128(col.precision or 10, col.scale or 0)
    if t in ("float", "double"):
        return pa.float64()
    if t in _STRING_TYPES:
        return pa.string()
    if t == "date":
        return pa.date32()
    if t in ("datetime", "timestamp"):
        return pa.timestamp("us")
    raise TypeError(t)


_BINLOG_INTS = {FIELD_TYPE.TINY, FIELD_TYPE.SHORT, FIELD_TYPE.INT24, FIELD_TYPE.LONG,
                FIELD_TYPE.LONGLONG, FIELD_TYPE.YEAR}
_BINLOG_STRINGS = {FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING, FIELD_TYPE.STRING,
                   FIELD_TYPE.ENUM, FIELD_TYPE.SET, FIELD_TYPE.BLOB}
_BINLOG_TIMES = {FIELD_TYPE.DATETIME, FIELD_TYPE.DATETIME2, FIELD_TYPE.TIMESTAMP,
                 FIELD_TYPE.TIMESTAMP2}
_BINLOG_NAMES = {v: k.lower() for k, v in vars(FIELD_TYPE).items() if isinstance(v, int)}


def arrow_type_for_binlog(col: Any) -> pa.DataType | None:
    """Arrow type of a binlog column (pymysqlreplication Column); None if unsupported.

    Same mapping as `arrow_type_for_column`, so full-load and CDC files agree.
    """
    t = col.type
    if t in _BINLOG_INTS:
        return pa.int64()
    if t == FIELD_TYPE.NEWDECIMAL:
        return pa.decimal128(col.precision, col.decimals)
    if t in (FIELD_TYPE.FLOAT, FIELD_TYPE.DOUBLE):
        return pa.float64()
    if t in _BINLOG_STRINGS:
        charset = getattr(col, "character_set_name", None)
        if charset == "binary" or (t == FIELD_TYPE.BLOB and charset is None):
            return None  # BLOB, BINARY, VARBINARY: bytes, not text
        return pa.string()
    if t in (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE):
        return pa.date32()
    if t in _BINLOG_TIMES:
        return pa.timestamp("us")
    return None


def binlog_type_name(col: Any) -> str:
    name = _BINLOG_NAMES.get(col.type, str(col.type))
    if getattr(col, "character_set_name", None) == "binary" and name in ("blob", "varchar",
                                                                          "string"):
        return {"blob": "blob", "varchar": "varbinary", "string": "binary"}[name]
    return name


def normalise(value: Any) -> Any:
    """Binlog values in the shapes Arrow and CSV expect."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, set):
        return ",".join(sorted(value))
    return value


# -- encodings ------------------------------------------------------------------------------
def encode(names: Sequence[str], types: Sequence[pa.DataType], rows: Sequence[Sequence[Any]],
           data_format: str, csv_null: str) -> bytes:
    """One file's bytes: rows are tuples in `names` order."""
    if data_format == "csv":
        return _encode_csv(names, rows, csv_null)
    columns = list(zip(*rows)) if rows else [[] for _ in names]
    arrays = [pa.array(col, type=t) for col, t in zip(columns, types)]
    table = pa.Table.from_arrays(arrays, schema=pa.schema(list(zip(names, types))))
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="snappy")
    return buf.getvalue()


def _csv_value(value: Any, null: str) -> Any:
    if value is None:
        return null
    if isinstance(value, datetime):
        return value.strftime(TIMESTAMP_FORMAT)
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def _encode_csv(names: Sequence[str], rows: Sequence[Sequence[Any]], null: str) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)  # AddColumnName=true: schema changes stay readable
    for row in rows:
        writer.writerow([_csv_value(v, null) for v in row])
    return buf.getvalue().encode("utf-8")
