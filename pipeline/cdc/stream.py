"""Ongoing replication: binlog row events -> batches -> time-named DMS CDC files.

Only whole transactions enter a batch (rows wait in `pending` until their XidEvent), and
a batch is written, file by file, before the checkpoint that covers it: a crash at any
point leaves either committed files plus their checkpoint, or files newer than the
checkpoint, which the next start deletes and replays from the binlog.

An `ALTER TABLE` of a replicated table reloads it: an ALTER changes rows without row events
(a renamed column, a new column's default, a narrowed type), and a row held in quarantine
because its change lacked a column is released only by a later image of it. So after the
ALTER the table's rows are read in a consistent snapshot and written as updates stamped at
the snapshot's binlog position, before the checkpoint passes the ALTER. Changes between the
ALTER and the snapshot still follow in the stream; they carry earlier positions, so the
reloaded image (which already holds them) wins wherever the jobs order by position.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import HeartbeatLogEvent, QueryEvent, RotateEvent, XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from pipeline.aws.secrets import DbCredentials
from pipeline.cdc.bronze import Bronze, Checkpoint
from pipeline.cdc.errors import CdcError, NoPrimaryKeyError, UnsupportedColumnError
from pipeline.cdc.format import (
    OP_COLUMN,
    SEQ_COLUMN,
    arrow_type_for_binlog,
    binlog_type_name,
    change_seq,
    encode,
    format_ts,
    next_cdc_name,
    normalise,
    utc_from_epoch,
)
from pipeline.cdc.snapshot import open_snapshot, write_table
from pipeline.cdc.source import BinlogPosition, connect, describe_table, validate
from pipeline.config import CdcSettings
from pipeline.progress import Progress

LOG = logging.getLogger(__name__)

_ROW_EVENTS = (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)
_INSIDE_TRANSACTION = ("BEGIN", "SAVEPOINT", "ROLLBACK TO", "RELEASE SAVEPOINT", "XA START",
                       "XA BEGIN", "XA END", "XA PREPARE")
"""Query events that sit inside a transaction (ORMs emit savepoints all the time)."""
_NAME = r"(?:`[^`]+`|[\w$]+)"
_ALTER = re.compile(rf"^\s*ALTER\s+(?:ONLINE\s+|IGNORE\s+)*TABLE\s+(?:IF\s+EXISTS\s+)?"
                    rf"({_NAME}(?:\s*\.\s*{_NAME})?)", re.IGNORECASE)
"""`ALTER TABLE [schema.]name ...`: the table it changes."""
_DESTRUCTIVE = re.compile(r"^\s*(?:DROP\s+(?:TEMPORARY\s+)?TABLE(?:\s+IF\s+EXISTS)?|"
                          r"TRUNCATE(?:\s+TABLE)?)\s+(.+?)(?:\s+(?:RESTRICT|CASCADE))?\s*"
                          r"(?:/\*.*)?$", re.IGNORECASE | re.DOTALL)
_RENAME = re.compile(r"^\s*RENAME\s+TABLES?\s+(.+?)\s*(?:/\*.*)?$", re.IGNORECASE | re.DOTALL)
"""`RENAME TABLE a TO b[, c TO d]`: every name on either side."""
_ALTER_RENAME = re.compile(r"\bRENAME\s+(?:TO\s+|AS\s+)?(?!(?:COLUMN|INDEX|KEY)\b)",
                           re.IGNORECASE)
"""An `ALTER TABLE x RENAME [TO] y` (not a column's or an index's rename)."""


@dataclass
class Layout:
    """One table's file layout for one schema version: column names, Arrow types."""

    table: str
    names: tuple[str, ...]
    types: tuple[pa.DataType, ...]
    text_idx: tuple[int, ...]  # columns whose values may need normalising
    pk_idx: tuple[int, ...]


@dataclass
class TableBatch:
    layout: Layout
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    ops: dict[str, int] = field(default_factory=dict)


class Replicator:
    """Reads the binlog from a checkpoint and writes bronze CDC files."""

    def __init__(self, creds: DbCredentials, cdc: CdcSettings, bronze: Bronze, cp: Checkpoint,
                 exclude: set[str], progress: Progress, tables: set[str] | None = None) -> None:
        self.creds, self.cdc, self.bronze, self.cp = creds, cdc, bronze, cp
        self.exclude = exclude
        self.tables = set(tables or ())
        """Replicated tables found at start; tables created later join via their layouts."""
        self.progress = progress
        self.layouts: dict[tuple[str, tuple[str, ...]], Layout] = {}
        self.pending: list[tuple[Layout, tuple[Any, ...], str]] = []
        self.batch: dict[str, TableBatch] = {}
        self.batch_rows = 0
        self.batch_bytes = 0
        self.batch_started = 0.0
        self.boundary: BinlogPosition = cp.position  # end of the last whole transaction seen
        self.boundary_ts = ""
        self.changes = 0
        self.files = 0
        self.saved_at = time.monotonic()

    def stream(self, blocking: bool) -> BinLogStreamReader:
        c = self.creds
        return BinLogStreamReader(
            connection_settings={"host": c.host, "port": c.port, "user": c.username,
                                 "password": c.password.reveal()},
            server_id=self.cdc.server_id, resume_stream=True, blocking=blocking,
            log_file=self.cp.log_file, log_pos=self.cp.log_pos,
            only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent,
                         QueryEvent, RotateEvent, HeartbeatLogEvent],
            # is_mariadb=True would ignore log_file/log_pos and replay everything.
            is_mariadb=False, slave_heartbeat=1.0 if blocking else None,
            enable_logging=False)

    def run(self, blocking: bool, stop: threading.Event) -> None:
        reader = self.stream(blocking)
        schema = self.bronze.schema
        try:
            for ev in reader:
                if isinstance(ev, _ROW_EVENTS):
                    if ev.schema == schema and ev.table not in self.exclude:
                        self._rows(ev, reader.log_file)
                elif isinstance(ev, XidEvent):
                    self._commit(BinlogPosition(reader.log_file, ev.packet.log_pos),
                                 ev.timestamp)
                elif isinstance(ev, QueryEvent):
                    self._query(ev, reader.log_file)
                if self._due():
                    self.flush()
                elif (self.boundary != self.cp.position and not self.batch_rows
                      and time.monotonic() - self.saved_at >= self.cdc.batch_interval_s):
                    self.flush(force_checkpoint=True)  # other schemas' traffic moved us on
                if stop.is_set():
                    break
        finally:
            reader.close()
        self.flush(force_checkpoint=True)

    # -- events ---------------------------------------------------------------------------
    def _layout(self, ev: Any) -> Layout:
        names = tuple(c.name for c in ev.columns)
        key = (ev.table, names)
        layout = self.layouts.get(key)
        if layout is not None:
            return layout
        table = f"{ev.schema}.{ev.table}"
        if any(n is None for n in names):
            raise CdcError(f"binlog events of `{table}` carry no column names",
                           table=table, hint="run the source with binlog_row_metadata=FULL")
        types = []
        for col in ev.columns:
            t = arrow_type_for_binlog(col)
            if t is None:
                raise UnsupportedColumnError(table, col.name, binlog_type_name(col),
                                             str(self.boundary))
            types.append(t)
        pk = ev.primary_key
        pk_names = (pk,) if isinstance(pk, str) and pk else tuple(pk or ())
        if not pk_names:
            raise NoPrimaryKeyError(table)
        text_idx = tuple(i for i, t in enumerate(types) if t == pa.string())
        layout = Layout(ev.table, names, tuple(types), text_idx,
                        tuple(names.index(n) for n in pk_names))
        self.layouts[key] = layout
        LOG.info("layout of %s: %d columns", table, len(names))
        return layout

    def _values(self, layout: Layout, image: dict[str, Any]) -> tuple[Any, ...]:
        values = [image[n] for n in layout.names]
        for i in layout.text_idx:
            v = values[i]
            if v is not None and not isinstance(v, str):
                values[i] = normalise(v)
        return tuple(values)

    def _rows(self, ev: Any, log_file: str) -> None:
        layout = self._layout(ev)
        file_index = BinlogPosition(log_file, 0).file_index
        pos = ev.packet.log_pos
        n = 0
        append = self.pending.append
        if isinstance(ev, WriteRowsEvent):
            for row in ev.rows:
                append((layout, self._values(layout, row["values"]),
                        "I" + change_seq(file_index, pos, n)))
                n += 1
        elif isinstance(ev, DeleteRowsEvent):
            for row in ev.rows:
                append((layout, self._values(layout, row["values"]),
                        "D" + change_seq(file_index, pos, n)))
                n += 1
        else:
            for row in ev.rows:
                before = self._values(layout, row["before_values"])
                after = self._values(layout, row["after_values"])
                if any(before[i] != after[i] for i in layout.pk_idx):
                    # A key change is a delete of the old key and an insert of the new one,
                    # or a replay downstream would keep the old row alive.
                    append((layout, before, "D" + change_seq(file_index, pos, n)))
                    n += 1
                    append((layout, after, "I" + change_seq(file_index, pos, n)))
                else:
                    append((layout, after, "U" + change_seq(file_index, pos, n)))
                n += 1

    def _commit(self, end: BinlogPosition, timestamp: int) -> None:
        ts = format_ts(utc_from_epoch(timestamp))
        if any(layout.table in self.batch and self.batch[layout.table].layout is not layout
               for layout, _, _ in self.pending):
            # A table's new schema version: close the batch at the previous boundary first,
            # so one file holds one layout and the checkpoint never splits a transaction.
            self.flush()
        if self.pending and not self.batch_rows:
            self.batch_started = time.monotonic()
        for layout, values, op_seq in self.pending:
            tb = self.batch.get(layout.table)
            if tb is None:
                tb = self.batch[layout.table] = TableBatch(layout)
            op = op_seq[0]
            tb.rows.append((op, ts, *values, op_seq[1:]))
            tb.ops[op] = tb.ops.get(op, 0) + 1
            self.batch_bytes += 16 * len(values) + 64  # rough: enough for CdcMinFileSize
        self.batch_rows += len(self.pending)
        self.pending.clear()
        self.boundary, self.boundary_ts = end, ts

    def _query(self, ev: QueryEvent, log_file: str) -> None:
        query = ev.query.strip()
        upper = query[:24].upper()
        end = BinlogPosition(log_file, ev.packet.log_pos)
        if upper.startswith(_INSIDE_TRANSACTION):
            return  # never a boundary: a checkpoint here would cut a transaction in two
        if upper.startswith(("COMMIT", "XA COMMIT")):  # a non-transactional engine's commit
            self._commit(end, ev.timestamp)
            return
        if upper.startswith("ROLLBACK"):
            LOG.warning("a rolled back transaction in the binlog: its %d row change(s) are "
                        "dropped", len(self.pending))
            self.pending.clear()
            return
        if self.pending:
            return  # a statement inside an open transaction, not a boundary
        db = ev.schema.decode() if isinstance(ev.schema, bytes) else ev.schema
        if db == self.bronze.schema:
            self._refuse_destructive(query)
            LOG.info("schema change in `%s`: %s", db, query[:200])
        altered = self._altered(query, db)
        # DDL commits implicitly: close the batch before it, then checkpoint past it, so the
        # next file of an altered table carries its new columns; an altered table's reload
        # is written in between, so the checkpoint covers it.
        self.flush()
        if altered:
            self._reload(altered, query)
        self.boundary = end
        self.boundary_ts = format_ts(utc_from_epoch(ev.timestamp))
        self.flush(force_checkpoint=True)

    def _altered(self, query: str, db: str) -> str | None:
        """The replicated table an `ALTER TABLE` statement changes, or None."""
        match = _ALTER.match(query)
        if not match:
            return None
        parts = [p.strip().strip("`") for p in match.group(1).split(".")]
        schema, table = (parts[0], parts[1]) if len(parts) == 2 else (db, parts[0])
        replicated = self.tables | {layout.table for layout in self.layouts.values()}
        if schema != self.bronze.schema or table in self.exclude or table not in replicated:
            return None
        return table

    def _reload(self, table: str, query: str) -> None:
        """`table`'s rows in a snapshot taken now, written as updates (see the module's
        docstring). A table the CDC cannot replicate any more (no primary key, a BLOB) is
        not reloaded: its next row event stops the service, naming it, as before."""
        qualified = f"{self.bronze.schema}.{table}"
        conn = connect(self.creds)
        try:
            info = describe_table(conn, self.bronze.schema, table)
            if info is None:
                return  # renamed or dropped by the statement
            try:
                validate(info)
            except (NoPrimaryKeyError, UnsupportedColumnError) as exc:
                LOG.warning("`%s` is not reloaded after `%s`: %s", qualified, query[:80], exc)
                return
            position = open_snapshot(conn)
            seq = change_seq(position.file_index, position.pos, 0)
            ts = format_ts(datetime.now(UTC).replace(tzinfo=None))
            written: list[str] = []

            def name(_: int) -> str:
                written.append(next_cdc_name(self.cp.last_file,
                                             datetime.now(UTC).replace(tzinfo=None),
                                             self.cdc.data_format))
                self.cp.last_file = written[-1]
                return written[-1]

            rows = write_table(conn, info, self.bronze, self.cdc, ts, seq, self.progress,
                               op="U", name=name,
                               what=f"reloading {qualified} after `{query[:60]}`")
        finally:
            with contextlib.suppress(Exception):
                conn.rollback()
            conn.close()
        self.cp.count(table, "U", rows)
        self.files += len(written)
        self.changes += rows
        LOG.warning("reloaded %d row(s) of `%s` after `%s` (snapshot at %s)", rows, qualified,
                    query[:80], position)

    def _refuse_destructive(self, query: str) -> None:
        """DROP TABLE / TRUNCATE / RENAME of a replicated table: stop before it, never skip it.

        DMS writes no row deletes for these either, so bronze would keep rows the source no
        longer has (or, renamed, miss every change made under the other name). The
        checkpoint stays before the statement: every restart stops here until `shoplake cdc
        reset` rebuilds bronze from a new full load.
        """
        names: set[str] = set()
        renamed = False
        if match := _DESTRUCTIVE.match(query):
            names = {n for n in match.group(1).split(",")}
        elif match := _RENAME.match(query):
            renamed = True
            names = {n for pair in match.group(1).split(",")
                     for n in re.split(r"\s+TO\s+", pair, flags=re.IGNORECASE)}
        elif (match := _ALTER.match(query)) and _ALTER_RENAME.search(query, match.end()):
            renamed = True
            names = {match.group(1)}
        names = {n.strip().strip("`").split(".")[-1].strip().strip("`") for n in names}
        hit = sorted(names & (self.tables | {layout.table for layout in self.layouts.values()}))
        if not hit:
            return
        self.flush()
        table = f"`{self.bronze.schema}.{hit[0]}`"
        if renamed:
            raise CdcError(f"`{query[:80]}` renames replicated table {table}: changes made "
                           "under the other name would never reach it",
                           table=hit[0], position=str(self.boundary),
                           hint=f"rename it back to {table}, then run `shoplake cdc reset` "
                                "to rebuild bronze from a new full load")
        raise CdcError(f"`{query[:80]}` removes replicated rows without row events "
                       f"(table {table})",
                       table=hit[0], position=str(self.boundary),
                       hint="run `shoplake cdc reset` to rebuild bronze from a new full "
                            "load (exclude scratch tables with `SHOPLAKE_CDC_EXCLUDE_TABLES`)")

    # -- batches --------------------------------------------------------------------------
    def _due(self) -> bool:
        if not self.batch_rows:
            return False
        return (self.batch_rows >= self.cdc.batch_max_rows
                or self.batch_bytes >= self.cdc.min_file_size_kb * 1024
                or time.monotonic() - self.batch_started >= self.cdc.batch_interval_s)

    def flush(self, force_checkpoint: bool = False) -> None:
        """Write the batch's files, then the checkpoint at the batch's last boundary."""
        moved = self.boundary != self.cp.position
        if not self.batch_rows and not (force_checkpoint and moved):
            return
        cp = self.cp
        if self.batch_rows:
            now = datetime.now(UTC).replace(tzinfo=None)
            name = next_cdc_name(cp.last_file, now, self.cdc.data_format)
            prefix = (OP_COLUMN, self.cdc.timestamp_column)
            for table, tb in sorted(self.batch.items()):
                names = prefix + tb.layout.names + (SEQ_COLUMN,)
                types = (pa.string(), pa.string()) + tb.layout.types + (pa.string(),)
                self.bronze.put(table, name, encode(names, types, tb.rows, self.cdc.data_format,
                                                    self.cdc.csv_null_value))
                for op, count in tb.ops.items():
                    cp.count(table, op, count)
                self.files += 1
            cp.last_file = name
            cp.last_commit_ts = self.boundary_ts
        cp.log_file, cp.log_pos = self.boundary.file, self.boundary.pos
        self.bronze.save_checkpoint(cp)
        self.saved_at = time.monotonic()
        self.changes += self.batch_rows
        self.progress.update("cdc", advance=self.batch_rows,
                             description=f"{self.changes} changes, at {self.boundary}")
        self.batch.clear()
        self.batch_rows = self.batch_bytes = 0
