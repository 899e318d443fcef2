"""Create the `sales` schema from the committed SQL files, idempotently.

`sql/postgres.sql` (rendered from the model) creates what is missing; `sql/merges.sql` (the
SCD2 merges, rendered too) and `sql/procedures.sql` replace the procedures and the view.
Tables that already exist are never altered: if their columns differ from the model,
`apply_ddl` stops with SchemaDriftError instead of running procedures against the wrong shape.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from pipeline.config import Settings
from pipeline.warehouse.errors import SchemaDriftError, WarehouseError, from_psycopg
from pipeline.warehouse.load import Connection, session
from pipeline.warehouse.model import (
    DIM_DATE_RANGE,
    MERGES_FILE,
    POSTGRES_FILE,
    PROCEDURES_FILE,
    SCHEMA,
    TABLES,
)
from pipeline.warehouse.reader import grant_sql
from pipeline.warehouse.widen import Numeric, for_staging, model_types, widen

LOG = logging.getLogger(__name__)

DDL_LOCK_KEY = 0x5A1E5
"""Advisory lock id taken while applying DDL: two `warehouse init` at once would race on
CREATE ... IF NOT EXISTS (which is not safe against concurrent creators)."""


@dataclass(frozen=True)
class ApplyResult:
    """What `apply_ddl` did."""

    created: tuple[str, ...]
    """Tables that did not exist before."""
    existing: tuple[str, ...]
    """Tables that were already there (left as they were)."""
    reset: bool
    """Whether the schema was dropped first."""
    widened: tuple[str, ...] = ()
    """Columns given a wider type than they had (`sales.t.c numeric(14,2) -> ...`)."""


def _sql_file(path: Path) -> str:
    if not path.exists():
        raise WarehouseError(f"`{path}` is missing, so the warehouse cannot be created",
                             hint="regenerate it with `python -m pipeline.warehouse.ddl` "
                                  "(procedures.sql comes from git)")
    return path.read_text()


def existing_columns(conn: Connection) -> dict[str, tuple[str, ...]]:
    """Columns of each table that exists in schema `sales`, in table order."""
    with conn.cursor() as cur:
        cur.execute("SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = %s ORDER BY table_name, ordinal_position", (SCHEMA,))
        found: dict[str, list[str]] = {}
        for table_name, column in cur.fetchall():
            found.setdefault(table_name, []).append(column)
    return {t: tuple(cols) for t, cols in found.items()}


def drift(existing: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Model tables that exist with other columns than the model's, and how they differ."""
    out = {}
    for t in TABLES:
        have = existing.get(t.name)
        if have is None or have == t.column_names:
            continue
        missing = [c for c in t.column_names if c not in have]
        extra = [c for c in have if c not in t.column_names]
        out[t.name] = (f"missing {missing}, extra {extra}" if missing or extra
                       else "has the columns in another order")
    return out


def add_new_columns(conn, existing: dict[str, tuple[str, ...]]) -> list[str]:  # noqa: ANN001
    """Columns the model appended to a table since it was created (nullable, so a warehouse
    made by an earlier version gains them without a rebuild); the columns added."""
    from pipeline.warehouse.ddl import postgres_type

    added = []
    for t in TABLES:
        have = existing.get(t.name)
        if have is None or len(have) >= len(t.columns) or t.column_names[:len(have)] != have:
            continue
        for column in t.columns[len(have):]:
            if not column.nullable:
                break  # not a plain addition: drift() reports it
            with conn.cursor() as cur:
                cur.execute(f'ALTER TABLE {t.qualified} ADD COLUMN IF NOT EXISTS '
                            f'"{column.name}" {postgres_type(column)}')
            added.append(f"{t.name}.{column.name}")
    if added:
        LOG.info("added column(s) %s", ", ".join(added))
    return added


def apply_ddl(settings: Settings, reset: bool = False) -> ApplyResult:
    """Create schema `sales`, its tables, functions, procedures and view; fill dim_date.

    Safe to run any number of times. `reset` drops the schema (and every row in it) first.
    """
    tables_sql, procedures_sql = _sql_file(POSTGRES_FILE), _sql_file(PROCEDURES_FILE)
    scd2_sql = _sql_file(MERGES_FILE)
    with session(settings) as conn:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
                if reset:
                    LOG.warning("dropping schema %s and everything in it", SCHEMA)
                    cur.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
                before = existing_columns(conn)
                added = add_new_columns(conn, before)
                problems = drift(existing_columns(conn) if added else before)
                if problems:
                    raise SchemaDriftError(problems)
                # Whole files in one execute: no parameters, so psycopg2 sends them verbatim
                # (dollar-quoted bodies and `%` included) as one multi-statement query.
                cur.execute(tables_sql)
                # Tables made by an earlier model: its wider types (never narrower).
                widened = widen(conn, model_types())
                cur.execute(scd2_sql)  # the hash functions, which procedures.sql uses
                cur.execute(procedures_sql)  # recreates the mart view if widening dropped it
                cur.execute(f"CALL {SCHEMA}.sp_fill_dim_date(%s, %s)", DIM_DATE_RANGE)
                # A reset schema lost the dashboards' grants; the role itself survives it.
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                            (settings.dashboards.reader_user,))
                if cur.fetchone():
                    cur.execute(grant_sql(settings.dashboards.reader_user))
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            raise from_psycopg(exc, f"applying the DDL of schema `{SCHEMA}`") from exc
        except SchemaDriftError:
            conn.rollback()
            raise
    names = [t.name for t in TABLES]
    result = ApplyResult(created=tuple(n for n in names if n not in before),
                         existing=tuple(n for n in names if n in before), reset=reset,
                         widened=tuple(widened))
    LOG.info("applied warehouse DDL: created %s", ", ".join(result.created) or "nothing")
    return result


def widen_for_staging(settings: Settings, staging: str, column: str, incoming: Numeric
                      ) -> list[str]:
    """Make `staging.column`, and the gold columns computed from it, hold `incoming` values
    exactly (the source widened a decimal); recreates the mart view. The changes made."""
    procedures_sql = _sql_file(PROCEDURES_FILE)
    with session(settings) as conn:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
                changes = widen(conn, for_staging(staging, column, incoming))
                if changes:
                    cur.execute(procedures_sql)
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            raise from_psycopg(exc, f"widening `{SCHEMA}.{staging}.{column}` to {incoming}",
                               table=staging) from exc
    return changes
