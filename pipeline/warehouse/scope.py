"""Which reconcile a run does: full, or only the keys the loads changed since the last one.

Change-only loading records every staging batch (`sales.staging_batches`) and the keys of
each delta batch (`sales.staged_keys`). `sales.reconcile_state` remembers the last batch
gold was reconciled up to and found exact, and the UTC day of the last full reconcile. An
incremental reconcile checks, at content level as the full one does, the keys of the
batches after it (and the rows and days those keys reach, on both sides); a full one checks
everything. Full runs when asked (`shoplake reconcile --full`), on the first run of each UTC
day, when no reconcile was recorded yet, when a batch since was a full copy, or when the
change is too large to be worth listing.

A reconcile that finds differences does not move the mark: the next one checks those keys
again (staged keys are kept until every procedure merged them and a reconcile passed them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import psycopg2

from pipeline.config import Settings
from pipeline.warehouse.errors import from_psycopg
from pipeline.warehouse.load import session
from pipeline.warehouse.model import RECONCILE_STATE, SCHEMA, STAGED_KEYS, STAGING_BATCHES

SCOPE = "pipeline"
"""The one row of `sales.reconcile_state`."""

MAX_KEYS = 200_000
"""Above this many changed keys a full reconcile is cheaper than listing them."""

SOURCE_TABLE = {"stg_customers": "customers", "stg_products": "products",
                "stg_orders": "orders", "stg_order_items": "order_items"}
"""Staging table -> the source table whose keys it carries."""


@dataclass
class Scope:
    """The keys to reconcile: source table -> keys, of the batches (after, upto]."""

    after: int
    upto: int
    keys: dict[str, set[int]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(len(k) for k in self.keys.values())


@dataclass(frozen=True)
class Choice:
    """What a reconcile will check, and why."""

    scope: Scope | None
    """None: everything."""
    why: str
    upto: int
    """The last staging batch it covers."""

    @property
    def kind(self) -> str:
        return "full" if self.scope is None else "incremental"


def today() -> date:
    return datetime.now(UTC).date()


def choose(settings: Settings, full: bool = False) -> Choice:
    """Full or incremental, by the rules in this module's docstring."""
    with session(settings) as conn:
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT coalesce(max(batch), 0) FROM {SCHEMA}.{STAGING_BATCHES.name}")
                upto = int(cur.fetchone()[0])
                cur.execute(f"SELECT last_batch, last_full_day FROM {SCHEMA}."
                            f"{RECONCILE_STATE.name} WHERE scope = %s", (SCOPE,))
                state = cur.fetchone()
                why = _full_reason(cur, full, state, upto)
                if why is not None:
                    return Choice(None, why, upto)
                after = int(state[0])
                cur.execute(f"SELECT count(*) FROM {SCHEMA}.{STAGED_KEYS.name} "
                            "WHERE batch > %s AND batch <= %s", (after, upto))
                if int(cur.fetchone()[0]) > MAX_KEYS:
                    return Choice(None, f"more than {MAX_KEYS:,} keys changed", upto)
                cur.execute(f"SELECT staging, key FROM {SCHEMA}.{STAGED_KEYS.name} "
                            "WHERE batch > %s AND batch <= %s", (after, upto))
                scope = Scope(after, upto)
                for staging, key in cur.fetchall():
                    scope.keys.setdefault(SOURCE_TABLE[staging], set()).add(int(key))
            conn.rollback()
        except psycopg2.Error as exc:
            raise from_psycopg(exc, f"reading `{SCHEMA}.{RECONCILE_STATE.name}`",
                               table=RECONCILE_STATE.name) from exc
    return Choice(scope, f"the keys of staging batches {after + 1}..{upto}"
                  if upto > after else "nothing staged since the last reconcile", upto)


def _full_reason(cur: Any, full: bool, state: tuple | None, upto: int) -> str | None:
    if full:
        return "requested (--full)"
    if state is None or state[0] is None:
        return "no reconcile recorded yet"
    if state[1] is None or state[1] < today():
        return "the first of this UTC day"
    cur.execute(f"SELECT min(batch) FROM {SCHEMA}.{STAGING_BATCHES.name} "
                "WHERE kind = 'full' AND batch > %s AND batch <= %s", (state[0], upto))
    first_full = cur.fetchone()[0]
    if first_full is not None:
        return f"staging batch {first_full} was a full copy"
    return None


def record(settings: Settings, choice: Choice, run_id: str | None = None) -> None:
    """Gold was found exact up to `choice.upto`: later reconciles start there (and, after a
    full one, today needs no other full one)."""
    full = choice.scope is None
    with session(settings) as conn:
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"INSERT INTO {SCHEMA}.{RECONCILE_STATE.name} (scope, last_batch, "
                    "last_full_day, last_full_run, checked_at) VALUES (%s, %s, %s, %s, "
                    "now() AT TIME ZONE 'UTC') ON CONFLICT (scope) DO UPDATE SET "
                    "last_batch = greatest(excluded.last_batch, "
                    f"coalesce({SCHEMA}.{RECONCILE_STATE.name}.last_batch, 0)), "
                    "last_full_day = coalesce(excluded.last_full_day, "
                    f"{SCHEMA}.{RECONCILE_STATE.name}.last_full_day), "
                    "last_full_run = coalesce(excluded.last_full_run, "
                    f"{SCHEMA}.{RECONCILE_STATE.name}.last_full_run), "
                    "checked_at = excluded.checked_at",
                    (SCOPE, choice.upto, today() if full else None,
                     (run_id or "-") if full else None))
            conn.commit()
        except psycopg2.Error as exc:
            raise from_psycopg(exc, f"writing `{SCHEMA}.{RECONCILE_STATE.name}`",
                               table=RECONCILE_STATE.name) from exc
