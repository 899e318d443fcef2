"""Connect to the warehouse, COPY rows into staging, CALL the load procedures.

Rows stream to the server as CSV in chunks of `COPY_CHUNK_BYTES`: the iterable handed over
(for instance the silver job's collected rows) is consumed once and never turned into one
big string, so memory stays flat whatever the table size.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from pipeline.aws.secrets import warehouse_credentials
from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.warehouse.errors import (
    StagingLoadError,
    UnknownTableError,
    from_connect_error,
    from_psycopg,
)
from pipeline.warehouse.model import (
    LOAD_STATE,
    PROCEDURE_STATE,
    PROCEDURES,
    RECONCILE_STATE,
    SCHEMA,
    STAGED_KEYS,
    STAGING_BATCHES,
    table,
)

LOG = logging.getLogger(__name__)

COPY_CHUNK_BYTES = 1 << 20
"""Bytes of CSV handed to the server per read: few round trips, bounded memory."""

Connection = psycopg2.extensions.connection


def connect(settings: Settings) -> Connection:
    """A session on the warehouse as the user stored in Secrets Manager, in UTC."""
    creds = warehouse_credentials(settings)
    try:
        # Session time zone UTC: timestamps are naive UTC end to end, and now() must agree.
        return psycopg2.connect(host=creds.host, port=creds.port, user=creds.username,
                                password=creds.password.reveal(), dbname=creds.dbname,
                                connect_timeout=5, application_name="shoplake-warehouse",
                                options="-c timezone=UTC")
    except psycopg2.Error as exc:
        raise from_connect_error(exc, creds.host, creds.port, creds.username,
                                 creds.secret_name) from exc


@contextlib.contextmanager
def session(settings: Settings) -> Iterator[Connection]:
    """A connection that is closed on exit (psycopg2's own `with` only ends the transaction)."""
    conn = connect(settings)
    try:
        yield conn
    finally:
        conn.close()


def _field(value: Any) -> str:
    """One CSV field in the form COPY's CSV mode reads back exactly.

    NULL is an unquoted empty field and every string is quoted, so an empty string stays
    an empty string (Python's csv module cannot tell the two apart).
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        # timestamp (without time zone) silently drops an offset, so convert to UTC first.
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | Decimal):
        return str(value)  # Decimal's str keeps every digit, exactly
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    # Anything else (a UUID, an enum) as its text, quoted like a string.
    return '"' + str(value).replace('"', '""') + '"'


class _CsvStream(io.TextIOBase):
    """A read-only file over rows, producing CSV lazily as copy_expert asks for it."""

    def __init__(self, rows: Iterable[Sequence[Any]], width: int) -> None:
        self._rows = iter(rows)
        self._width = width
        self._buffer = ""
        self.count = 0
        self.error: BaseException | None = None
        """What failed while producing rows; psycopg2 reports it only as a cancelled COPY."""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        try:
            return self._read(size)
        except BaseException as exc:
            self.error = exc
            raise

    def _read(self, size: int | None) -> str:
        want = COPY_CHUNK_BYTES if size is None or size < 0 else size
        parts = [self._buffer]
        have = len(self._buffer)
        for row in self._rows:
            if len(row) != self._width:
                raise ValueError(f"row {self.count + 1} has {len(row)} values, "
                                 f"expected {self._width}")
            line = ",".join(_field(v) for v in row) + "\n"
            parts.append(line)
            have += len(line)
            self.count += 1
            if have >= want:
                break
        data = "".join(parts)
        chunk, self._buffer = data[:want], data[want:]
        return chunk


def copy_rows(conn: Connection, table_name: str, columns: Sequence[str],
              rows: Iterable[Sequence[Any]]) -> int:
    """COPY `rows` (tuples in `columns` order) into `table_name`; returns the row count.

    Runs inside the caller's transaction; the caller commits. `table_name` and `columns`
    must come from the model (they are spliced into SQL, quoted).
    """
    quoted = ", ".join(f'"{c}"' for c in columns)
    target = table_name if "." in table_name else f"{SCHEMA}.{table_name}"
    stream = _CsvStream(rows, len(columns))
    with conn.cursor() as cur:
        try:
            cur.copy_expert(f"COPY {target} ({quoted}) FROM STDIN WITH (FORMAT csv)", stream,
                            size=COPY_CHUNK_BYTES)
        except psycopg2.errors.QueryCanceled:
            # A failure in our own row iterator surfaces as a cancelled COPY: re-raise the
            # real cause (a malformed row, a failing upstream generator) instead.
            if stream.error is not None:
                raise stream.error from None
            raise
    return stream.count


def _check_staging(table_name: str, columns: Sequence[str]) -> str:
    try:
        model = table(table_name)
    except KeyError:
        raise UnknownTableError(table_name, "no such table in the model") from None
    if model.layer != "staging":
        raise UnknownTableError(table_name, f"it is a {model.layer} table, loaded by the "
                                            "procedures, not by COPY")
    unknown = [c for c in columns if c not in model.column_names]
    if unknown or len(set(columns)) != len(columns):
        raise UnknownTableError(table_name, f"columns {list(columns)} are not distinct columns "
                                            f"of it (unknown: {unknown})")
    return model.name


def _rollback(conn: Connection) -> None:
    # After a lost connection rollback itself fails; the server has rolled back already.
    with contextlib.suppress(psycopg2.Error):
        conn.rollback()


def load_staging(settings: Settings, table_name: str, columns: Sequence[str],
                 rows: Iterable[Sequence[Any]], snapshot: str | None = None,
                 run_id: str | None = None, generation: str | None = None, *,
                 keys: Sequence[int] | None = None,
                 changes_snapshot: str | None = None) -> int:
    """Write staging table `table_name`; returns the rows copied.

    Without `keys`, a full copy: the table's content is replaced with `rows`. With `keys`
    (the keys silver's change log names since the last batch), a delta: the rows of those
    keys are replaced with `rows` (a key without a row was deleted), and the keys are
    recorded in `sales.staged_keys` for the procedures, which then merge only those.

    Everything happens in one transaction, so readers see the old rows or the new ones,
    never an empty table, and a rejected row leaves the old content in place. (Redshift
    commits TRUNCATE on its own; there the same effect takes DELETE + COPY.) The same
    transaction records the batch (`sales.staging_batches`) and, in `sales.load_state`, that
    the table now holds that silver snapshot (loaded by `run_id`) of bronze full load
    `generation` (which the SCD2 merges compare with their versions'), so content and stamp
    never disagree.
    """
    name = _check_staging(table_name, columns)
    key = table(name).primary_key[0]
    with session(settings) as conn:
        try:
            with conn.cursor() as cur:
                # One batch at a time: batch numbers commit in order, so a procedure that
                # read the highest batch has seen every batch below it.
                cur.execute(f"LOCK TABLE {SCHEMA}.{STAGING_BATCHES.name} IN EXCLUSIVE MODE")
                cur.execute(f"SELECT coalesce(max(batch), 0) + 1 FROM "
                            f"{SCHEMA}.{STAGING_BATCHES.name}")
                batch = cur.fetchone()[0]
                if keys is None:
                    cur.execute(f"TRUNCATE {SCHEMA}.{name}")
                else:
                    cur.execute("CREATE TEMPORARY TABLE _batch_keys (key bigint PRIMARY KEY) "
                                "ON COMMIT DROP")
            if keys is not None:
                copy_rows(conn, "pg_temp._batch_keys", ["key"], ((k,) for k in keys))
                with conn.cursor() as cur:
                    cur.execute(f"DELETE FROM {SCHEMA}.{name} AS t USING _batch_keys AS k "
                                f'WHERE t."{key}" = k.key')
                    cur.execute(f"INSERT INTO {SCHEMA}.{STAGED_KEYS.name} (staging, batch, key) "
                                "SELECT %s, %s, key FROM _batch_keys", (name, batch))
            count = copy_rows(conn, name, columns, rows)
            with conn.cursor() as cur:
                cur.execute(
                    f"INSERT INTO {SCHEMA}.{STAGING_BATCHES.name} (batch, staging, kind, "
                    "silver_snapshot, changes_snapshot, rows, keys, run_id, loaded_at) VALUES "
                    "(%s, %s, %s, %s, %s, %s, %s, %s, now() AT TIME ZONE 'UTC')",
                    (batch, name, "full" if keys is None else "delta", snapshot,
                     changes_snapshot, count, None if keys is None else len(keys), run_id))
                if keys is None:  # a full copy supersedes the keys staged before it
                    cur.execute(f"DELETE FROM {SCHEMA}.{STAGED_KEYS.name} WHERE staging = %s "
                                "AND batch < %s", (name, batch))
                _prune_staged_keys(cur)
                if snapshot is not None:
                    cur.execute(
                        f"INSERT INTO {SCHEMA}.{LOAD_STATE.name} (staging, silver_snapshot, "
                        "rows, run_id, loaded_at, generation) VALUES (%s, %s, %s, %s, now() "
                        "AT TIME ZONE 'UTC', %s) ON CONFLICT (staging) DO UPDATE SET "
                        "silver_snapshot = excluded.silver_snapshot, rows = excluded.rows, "
                        "run_id = excluded.run_id, loaded_at = excluded.loaded_at, "
                        "generation = excluded.generation",
                        (name, snapshot, count, run_id, generation))
            conn.commit()
        except psycopg2.Error as exc:
            _rollback(conn)
            raise from_psycopg(exc, f"loading `{SCHEMA}.{name}`", table=name) from exc
        except ValueError as exc:  # a malformed row, raised from inside the COPY stream
            _rollback(conn)
            raise StagingLoadError(name, str(exc)) from exc
    LOG.info("%s %d rows into %s.%s (batch %d)", "copied" if keys is None else
             f"replaced {len(keys)} key(s) with", count, SCHEMA, name, batch)
    return count


def _prune_staged_keys(cur: Any) -> None:
    """Drop the keys every procedure has merged (and, for the fact loads, seen as dimension
    changes) and a reconcile has passed; until each procedure has run once, keep them all."""
    cur.execute(f"SELECT count(*), min(least(consumed_batch, coalesce(dims_seen, "
                f"consumed_batch))) FROM {SCHEMA}.{PROCEDURE_STATE.name}")
    called, merged = cur.fetchone()
    cur.execute(f"SELECT last_batch FROM {SCHEMA}.{RECONCILE_STATE.name}")
    checked = cur.fetchone()
    if checked is not None and merged is not None:
        merged = min(merged, checked[0] or 0)
    if called >= len(PROCEDURES) and merged is not None:
        cur.execute(f"DELETE FROM {SCHEMA}.{STAGED_KEYS.name} WHERE batch <= %s", (merged,))


def _read_one(settings: Settings, statement: str, args: tuple, table_name: str
              ) -> tuple | None:
    """The one row (or None) a query of meta table `table_name` returns, read-only."""
    with session(settings) as conn:
        try:
            with conn.cursor() as cur:
                cur.execute(statement, args)
                row = cur.fetchone()
            conn.rollback()
        except psycopg2.Error as exc:
            raise from_psycopg(exc, f"reading `{SCHEMA}.{table_name}`",
                               table=table_name) from exc
    return row


def staging_state(settings: Settings, table_name: str) -> dict[str, Any] | None:
    """What staging table `table_name` holds: the silver snapshot, the change-log snapshot
    of its last batch, the bronze generation (None: never loaded)."""
    row = _read_one(
        settings,
        f"SELECT l.silver_snapshot, l.generation, b.changes_snapshot, b.kind "
        f"FROM {SCHEMA}.{LOAD_STATE.name} AS l LEFT JOIN LATERAL ("
        f"SELECT changes_snapshot, kind FROM {SCHEMA}.{STAGING_BATCHES.name} "
        f"WHERE staging = l.staging ORDER BY batch DESC LIMIT 1) AS b ON true "
        f"WHERE l.staging = %s", (table_name,), LOAD_STATE.name)
    if row is None:
        return None
    return {"silver_snapshot": row[0], "generation": row[1], "changes_snapshot": row[2],
            "kind": row[3]}


def procedure_state(settings: Settings, procedure: str) -> dict[str, Any] | None:
    """How `procedure` last merged: `mode` (full or delta) and `keys` (delta only)."""
    row = _read_one(settings, f"SELECT mode, keys, consumed_batch FROM {SCHEMA}."
                              f"{PROCEDURE_STATE.name} WHERE procedure = %s", (procedure,),
                    PROCEDURE_STATE.name)
    return {"mode": row[0], "keys": row[1], "batch": row[2]} if row else None


def call(settings: Settings, procedure: str, run_id: str | None = None,
         full: bool = False) -> list[str]:
    """`CALL sales.<procedure>(run_id)` in its own transaction (one of `PROCEDURES`); the
    rows it writes are stamped with `run_id` (`loaded_run`). The procedure merges the keys
    of the staging batches since its last call, or everything when one of them was a full
    copy or `full` is set (after gold was changed by hand, say). Returns the warnings it
    raised (an SCD2 dimension rebuilt, an updated_at that went backwards), which are logged
    too."""
    if procedure not in PROCEDURES:
        raise ConfigError(f"unknown procedure `{procedure}`",
                          hint=f"one of: {', '.join(PROCEDURES)}")
    with session(settings) as conn:
        try:
            with conn.cursor() as cur:
                cur.execute(f"CALL {SCHEMA}.{procedure}(%s, %s)", (run_id, full))
            conn.commit()
        except psycopg2.Error as exc:
            _rollback(conn)
            raise from_psycopg(exc, f"`CALL {SCHEMA}.{procedure}()`",
                               procedure=procedure) from exc
        warnings = [n.split(":", 1)[1].strip() for n in conn.notices
                    if n.startswith("WARNING:")]
    for warning in warnings:
        LOG.warning("%s: %s", procedure, warning)
    LOG.info("called %s.%s", SCHEMA, procedure)
    return warnings
