"""The full load: every table from one consistent snapshot, with no gap to the CDC start.

MariaDB: START TRANSACTION WITH CONSISTENT SNAPSHOT, then `binlog_snapshot_file/position`
give the exact binlog point of that snapshot. MySQL 8: FLUSH TABLES WITH READ LOCK, open the
snapshot, read the binlog position, UNLOCK. Reading the position first and the rows after
(the naive order) loses the rows committed in between.

The same snapshot read serves the reload of one table after an `ALTER TABLE` (see
`stream.Replicator`): its rows as CDC updates, stamped at the snapshot's binlog position.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import pymysql.cursors

from pipeline.cdc.bronze import Bronze, Checkpoint
from pipeline.cdc.dialect import Dialect
from pipeline.cdc.format import (
    OP_COLUMN,
    SEQ_COLUMN,
    arrow_type_for_column,
    change_seq,
    encode,
    format_ts,
    load_file_name,
)
from pipeline.cdc.source import BinlogPosition, TableInfo, current_position
from pipeline.config import CdcSettings
from pipeline.errors import first_line
from pipeline.progress import Progress

LOG = logging.getLogger(__name__)


def open_snapshot(conn: pymysql.connections.Connection) -> BinlogPosition:
    """Start a consistent-snapshot transaction on `conn`; return its binlog position."""
    with conn.cursor() as cur:
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        if not Dialect.of(conn).snapshot_locks:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
            status = dict(cur.fetchall())
            return BinlogPosition(status["Binlog_snapshot_file"],
                                  int(status["Binlog_snapshot_position"]))
        cur.execute("FLUSH TABLES WITH READ LOCK")
        try:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            return current_position(conn)
        finally:
            cur.execute("UNLOCK TABLES")


def full_load(conn: pymysql.connections.Connection, tables: list[TableInfo], bronze: Bronze,
              cdc: CdcSettings, progress: Progress) -> Checkpoint:
    """Write LOAD files for every table; return the checkpoint CDC starts from."""
    removed = bronze.delete_all()
    if removed:
        LOG.warning("full load: removed %d file(s) of an earlier load", removed)
    started = datetime.now(UTC).replace(tzinfo=None)
    position = open_snapshot(conn)
    # Every full-load row carries the task start time (UseTaskStartTimeForFullLoadTimestamp)
    # and a change sequence at the snapshot point, so any later change sorts after it.
    ts, seq = format_ts(started), change_seq(position.file_index, position.pos, 0)
    cp = Checkpoint(log_file=position.file, log_pos=position.pos, full_load_at=ts)
    op = "I" if cdc.include_op_for_full_load else None
    try:
        for table in tables:
            rows = write_table(conn, table, bronze, cdc, ts, seq, progress, op=op,
                               name=lambda n: load_file_name(n, cdc.data_format),
                               what=f"full load of {table.qualified}")
            cp.count(table.name, "L", rows)
    finally:
        # Ends the read-only snapshot transaction; on a lost connection the server has
        # ended it already, and the error that lost it is the one to report.
        with contextlib.suppress(pymysql.err.Error):
            conn.rollback()
    return cp


def write_table(conn: pymysql.connections.Connection, table: TableInfo, bronze: Bronze,
                cdc: CdcSettings, ts: str, seq: str, progress: Progress, *, op: str | None,
                name: Callable[[int], str], what: str) -> int:
    """Every row of `table` in the snapshot open on `conn`, written as bronze files named
    `name(1)`, `name(2)`, ... of `cdc.full_load_chunk_rows` rows (at least one file), each
    row stamped with `ts`, `seq` and, unless None, the Op `op`. Returns the rows written."""
    names = [c.name for c in table.columns]
    prefix_names = ([OP_COLUMN] if op else []) + [cdc.timestamp_column]
    prefix_values = ((op,) if op else ()) + (ts,)
    import pyarrow as pa

    all_names = prefix_names + names + [SEQ_COLUMN]
    all_types = ([pa.string()] * len(prefix_names)
                 + [arrow_type_for_column(c) for c in table.columns] + [pa.string()])
    # PyMySQL hands back a zero date ('0000-00-00 00:00:00', which MySQL accepts unless
    # sql_mode has NO_ZERO_DATE) as text; the binlog reader gives None for the same value.
    # Bronze holds NULL for both, so a full load and CDC agree; silver quarantines it.
    date_columns = [(i, c.name) for i, c in enumerate(table.columns)
                    if c.data_type in ("date", "datetime", "timestamp")]
    invalid: dict[str, int] = {}
    key = f"load:{table.name}"
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM `{table.name}`")
        total = cur.fetchone()[0]
    progress.start(key, what, total=total)
    cols = ", ".join(f"`{n}`" for n in names)
    order = ", ".join(f"`{n}`" for n in table.primary_key)
    written, file_no = 0, 0
    cur = conn.cursor(pymysql.cursors.SSCursor)  # streams: no table is held in memory
    try:
        cur.execute(f"SELECT {cols} FROM `{table.name}` ORDER BY {order}")
        while True:
            chunk = cur.fetchmany(cdc.full_load_chunk_rows)
            if not chunk and file_no > 0:
                break
            file_no += 1
            rows = [prefix_values + _dates_or_null(r, date_columns, invalid) + (seq,)
                    for r in chunk]
            bronze.put(table.name, name(file_no),
                       encode(all_names, all_types, rows, cdc.data_format, cdc.csv_null_value))
            written += len(rows)
            progress.update(key, advance=len(rows))
            if not chunk:
                break
    except BaseException as exc:
        # Closing a streaming cursor reads what is left: on a lost connection that fails
        # too, and must not replace the error that ended the load.
        with contextlib.suppress(pymysql.err.Error):
            cur.close()
        progress.finish(key, ok=False, message=first_line(exc))
        raise
    cur.close()
    progress.finish(key, message=f"{written} rows in {file_no} file(s)")
    for column, n in invalid.items():
        LOG.warning("%d zero or invalid date(s) in `%s.%s` loaded as NULL (silver holds "
                    "those rows in quarantine)", n, table.qualified, column)
    return written


def _dates_or_null(row: tuple, date_columns: list[tuple[int, str]],
                   invalid: dict[str, int]) -> tuple:
    """`row` with each date the driver could not parse (returned as text) as None."""
    if not any(isinstance(row[i], str) for i, _ in date_columns):
        return tuple(row)
    out = list(row)
    for i, name in date_columns:
        if isinstance(out[i], str):
            out[i] = None
            invalid[name] = invalid.get(name, 0) + 1
    return tuple(out)
