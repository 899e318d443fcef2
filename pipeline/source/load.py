"""Create the `shop` schema and bulk-load generated rows into it (the RDS MySQL stand-in).

Credentials come from Secrets Manager, as an application on AWS would read them. Rows go
in with `executemany` (which PyMySQL turns into multi-row INSERTs), one transaction per
batch, so the binlog carries ordinary row events that the CDC service replicates.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pymysql

from pipeline.aws.secrets import mysql_credentials
from pipeline.config import Settings
from pipeline.errors import SourceNotEmptyError, first_line
from pipeline.progress import Progress, SilentProgress
from pipeline.source.db import connect as connect_creds
from pipeline.source.db import connect_app, translated
from pipeline.source.generate import COLUMNS, TABLES, Dataset, generate
from pipeline.source.profile import load_profile, schema_file

LOG = logging.getLogger(__name__)

BATCH_ROWS = 5_000
"""Rows per INSERT transaction: big enough to be fast, small enough for CDC to stream."""


def connect(settings: Settings, *, autocommit: bool = False) -> pymysql.connections.Connection:
    """A session on `shop` as the application user, in UTC; credentials from the secret."""
    return connect_app(settings, autocommit=autocommit)


def schema_statements(path: Path | None = None) -> list[str]:
    """The statements of seed/schema.sql (the four tables' DDL, idempotent: CREATE TABLE IF
    NOT EXISTS): `--` comment lines dropped, split at line-ending `;`."""
    lines = [ln for ln in (path or schema_file()).read_text(encoding="utf-8").splitlines()
             if not ln.lstrip().startswith("--")]
    return [s.strip() for s in re.split(r";\s*$", "\n".join(lines), flags=re.M) if s.strip()]


def create_schema(conn: pymysql.connections.Connection, path: Path | None = None) -> None:
    """Create the tables that do not exist yet (DDL commits implicitly)."""
    with conn.cursor() as cur:
        for statement in schema_statements(path):
            cur.execute(statement)


def drop_schema(conn: pymysql.connections.Connection) -> None:
    """Drop the four tables, children first."""
    with conn.cursor() as cur:
        for table in reversed(TABLES):
            cur.execute(f"DROP TABLE IF EXISTS `{table}`")


def reset_schema(conn: pymysql.connections.Connection, path: Path | None = None) -> None:
    """Empty tables with fresh AUTO_INCREMENT counters and the current schema.sql."""
    drop_schema(conn)
    create_schema(conn, path)


def table_counts(conn: pymysql.connections.Connection) -> dict[str, int]:
    """Rows per table of `shop` (tables that do not exist count 0)."""
    counts = {}
    with conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = DATABASE()")
        existing = {row[0] for row in cur.fetchall()}
        for table in TABLES:
            if table in existing:
                cur.execute(f"SELECT COUNT(*) FROM `{table}`")
                counts[table] = int(cur.fetchone()[0])
            else:
                counts[table] = 0
    conn.commit()
    return counts


def insert_rows(conn: pymysql.connections.Connection, table: str, rows: Sequence[tuple],
                progress: Progress, batch_rows: int = BATCH_ROWS) -> int:
    """INSERT `rows` (tuples in `COLUMNS[table]` order), one committed transaction per batch."""
    columns = COLUMNS[table]
    sql = (f"INSERT INTO `{table}` ({', '.join(f'`{c}`' for c in columns)}) "
           f"VALUES ({', '.join(['%s'] * len(columns))})")
    key = f"seed:{table}"
    progress.start(key, f"loading `{table}`", total=len(rows))
    try:
        with conn.cursor() as cur:
            for at in range(0, len(rows), batch_rows):
                batch = rows[at:at + batch_rows]
                conn.begin()
                cur.executemany(sql, batch)
                conn.commit()
                progress.update(key, advance=len(batch))
    except BaseException as exc:
        # A lost connection fails the rollback too; the server rolled back already, and the
        # first error is the one to report.
        with contextlib.suppress(pymysql.err.Error):
            conn.rollback()
        progress.finish(key, ok=False, message=first_line(exc))
        raise
    progress.finish(key, message=f"{len(rows)} rows")
    return len(rows)


def seed(settings: Settings, scale: float = 1.0, seed: int = 42, reset: bool = False,
         progress: Progress | None = None, anchor: datetime | None = None) -> dict[str, int]:
    """Load generated rows into `shop`; returns rows inserted per table.

    Refuses (SourceNotEmptyError) when any table holds rows, unless `reset`, which drops and
    recreates the four tables first (fresh AUTO_INCREMENT, current schema.sql). `anchor` pins
    the end of the order history (default: today at midnight UTC).
    """
    progress = progress or SilentProgress()
    creds = mysql_credentials(settings)
    conn = connect_creds(creds)
    try:
        with translated(creds, "seeding the source"):
            return _seed(conn, settings, scale, seed, reset, progress, anchor)
    finally:
        with contextlib.suppress(pymysql.err.Error):
            conn.close()


def _seed(conn: pymysql.connections.Connection, settings: Settings, scale: float, seed: int,
          reset: bool, progress: Progress, anchor: datetime | None) -> dict[str, int]:
    """The body of `seed`, inside its error translation."""
    schema = schema_file(settings)
    profile = load_profile(settings)
    create_schema(conn, schema)
    existing = table_counts(conn)
    if any(existing.values()) and not reset:
        raise SourceNotEmptyError(settings.mysql.database, existing)
    # Generate first: a failure here (memory, a bad anchor) leaves the source as it was.
    progress.start("seed:generate",
                   f"generating rows (scale {scale}, seed {seed}, profile `{profile.name}`)")
    data: Dataset = generate(scale, seed, anchor, profile)
    progress.finish("seed:generate", message=", ".join(
        f"{t} {n}" for t, n in data.counts().items()))
    if reset:
        LOG.info("dropping and recreating the `shop` tables (they held %s)", existing)
        reset_schema(conn, schema)
    return {table: insert_rows(conn, table, data.rows(table), progress) for table in TABLES}
