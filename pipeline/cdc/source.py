"""The source database as the CDC service sees it: tables, types, binlog positions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

import pymysql

from pipeline.aws.secrets import DbCredentials
from pipeline.cdc.dialect import Dialect
from pipeline.cdc.errors import NoPrimaryKeyError, UnsupportedColumnError
from pipeline.source.db import connect

__all__ = ["connect"]  # the CDC user's sessions are made like every other source session

# information_schema DATA_TYPE values the CDC service replicates.
SUPPORTED_TYPES = frozenset({
    "tinyint", "smallint", "mediumint", "int", "bigint", "year",
    "decimal", "float", "double",
    "char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set",
    "date", "datetime", "timestamp",
})


@total_ordering
@dataclass(frozen=True)
class BinlogPosition:
    """A point in the binlog; ordered by file sequence number, then byte offset."""

    file: str
    pos: int

    @property
    def file_index(self) -> int:
        match = re.search(r"\.(\d+)$", self.file)
        return int(match.group(1)) if match else 0

    def __lt__(self, other: BinlogPosition) -> bool:
        return (self.file_index, self.pos) < (other.file_index, other.pos)

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # information_schema DATA_TYPE, e.g. `decimal`
    column_type: str  # full type, e.g. `decimal(12,2) unsigned`
    precision: int | None
    scale: int | None


@dataclass(frozen=True)
class TableInfo:
    schema: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def discover_tables(conn: pymysql.connections.Connection, schema: str,
                    exclude: set[str]) -> list[TableInfo]:
    """Every base table of `schema` not excluded, validated: a primary key, supported types."""
    with conn.cursor() as cur:
        cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                    "AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME", (schema,))
        names = [r[0] for r in cur.fetchall() if r[0] not in exclude]
    tables = []
    for name in names:
        table = describe_table(conn, schema, name)
        if table is not None:
            validate(table)
            tables.append(table)
    return tables


def describe_table(conn: pymysql.connections.Connection, schema: str,
                   name: str) -> TableInfo | None:
    """`schema.name`'s columns and primary key as they are now; None if it does not exist."""
    with conn.cursor() as cur:
        cur.execute("SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, NUMERIC_PRECISION, "
                    "NUMERIC_SCALE, COLUMN_KEY FROM information_schema.COLUMNS "
                    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                    (schema, name))
        rows = cur.fetchall()
        if not rows:
            return None
        columns = tuple(Column(r[0], r[1].lower(), r[2].lower(), r[3], r[4]) for r in rows)
        cur.execute("SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
                    "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                    "AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                    (schema, name))
        pk = tuple(r[0] for r in cur.fetchall())
    return TableInfo(schema, name, columns, pk)


def validate(table: TableInfo) -> None:
    if not table.primary_key:
        raise NoPrimaryKeyError(table.qualified)
    for col in table.columns:
        if col.data_type not in SUPPORTED_TYPES:
            raise UnsupportedColumnError(table.qualified, col.name, col.column_type)


def current_position(conn: pymysql.connections.Connection) -> BinlogPosition:
    """Where the binlog ends now (SHOW BINARY LOG STATUS on MySQL 8.4, which removed SHOW
    MASTER STATUS; see pipeline/cdc/dialect.py)."""
    with conn.cursor() as cur:
        cur.execute(Dialect.of(conn).binlog_status_sql)
        row = cur.fetchone()
    if row is None:
        from pipeline.cdc.errors import CdcError

        raise CdcError("the source has no binary log", hint="start it with --log-bin "
                       "(`shoplake stack up` does)")
    return BinlogPosition(row[0], int(row[1]))


def binlog_files(conn: pymysql.connections.Connection) -> list[tuple[str, int]]:
    with conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        return [(r[0], int(r[1])) for r in cur.fetchall()]


def bytes_behind(files: list[tuple[str, int]], pos: BinlogPosition) -> int:
    """Bytes of binlog written after `pos`."""
    total = 0
    for name, size in files:
        here = BinlogPosition(name, 0)
        if here.file_index > pos.file_index:
            total += size
        elif name == pos.file:
            total += max(0, size - pos.pos)
    return total


def writer_lock(creds: DbCredentials, schema: str,
                wait_s: float) -> pymysql.connections.Connection | None:
    """The single-writer lease on `schema`'s bronze: a GET_LOCK held by a connection.

    Two writers would each delete the other's files as uncommitted and overwrite each
    other's checkpoint. The server frees the lock when its connection ends, a killed
    process included. Returns the connection holding the lock (keep it open), or None
    when another process still holds it after `wait_s` seconds.
    """
    conn = connect(creds, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, %s)", (f"shoplake_cdc.{schema}", wait_s))
        (got,) = cur.fetchone()
    if got == 1:
        return conn
    conn.close()
    return None
