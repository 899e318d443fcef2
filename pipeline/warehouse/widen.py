"""Widen warehouse columns so that no value is rounded or overflows, never narrow them.

Two callers:
- `apply_ddl`: a warehouse created by an earlier model gets the model's wider types
  (`line_total numeric(14,2)` -> `numeric(22,2)`, `item_count int` -> `bigint`);
- the load jobs: when the source widens a decimal (`ALTER TABLE products MODIFY price
  DECIMAL(14,4)`), silver carries the new type, and the staging column and every gold
  column computed from it (`DERIVED`) are widened before the COPY, so 12.3456 reaches gold
  as 12.3456, not 12.35.

PostgreSQL refuses to change the type of a column a view reads: the mart view is dropped
first and recreated by the caller (procedures.sql), in the same transaction.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from pipeline.errors import TerminalError
from pipeline.warehouse.load import Connection
from pipeline.warehouse.model import SCHEMA, TABLES

LOG = logging.getLogger(__name__)

MAX_PRECISION = 38
"""Redshift's widest DECIMAL; the model never goes beyond it."""

DERIVED: dict[tuple[str, str], tuple[tuple[str, str, int], ...]] = {
    ("stg_products", "price"): (("dim_product", "price", 0),),
    ("stg_order_items", "unit_price"): (("fact_order_items", "unit_price", 0),
                                        ("fact_order_items", "line_total", 10),
                                        ("fact_orders", "order_total", MAX_PRECISION)),
}
"""staging column -> gold columns computed from it, with the integer digits they add
(10: times an INT quantity; MAX_PRECISION: a sum, as wide as the engine allows)."""

_NUMERIC = re.compile(r"^numeric\((\d+),(\d+)\)$")
_INT_RANK = {"smallint": 1, "int": 2, "integer": 2, "bigint": 3}


@dataclass(frozen=True)
class Numeric:
    precision: int
    scale: int

    @property
    def integer_digits(self) -> int:
        return self.precision - self.scale

    def union(self, other: Numeric) -> Numeric:
        """The narrowest type that holds every value of both."""
        scale = max(self.scale, other.scale)
        return Numeric(max(self.integer_digits, other.integer_digits) + scale, scale)

    def covers(self, other: Numeric) -> bool:
        return self.scale >= other.scale and self.integer_digits >= other.integer_digits

    def __str__(self) -> str:
        return f"numeric({self.precision},{self.scale})"


def parse_numeric(text: str) -> Numeric | None:
    """`numeric(12,2)` / `decimal(12,2)` -> Numeric; None for anything else."""
    m = _NUMERIC.match(text.replace(" ", "").lower().replace("decimal", "numeric"))
    return Numeric(int(m.group(1)), int(m.group(2))) if m else None


class DecimalTooWideError(TerminalError):
    def __init__(self, column: str, wanted: Numeric) -> None:
        super().__init__(f"`{column}` would need {wanted}, wider than the warehouse's "
                         f"numeric({MAX_PRECISION}): gold cannot hold it exactly",
                         hint="narrow the source column, or keep the values within "
                              f"{MAX_PRECISION} digits")


def current_types(conn: Connection) -> dict[tuple[str, str], str]:
    """(table, column) -> `numeric(p,s)` / `int` / `bigint` / ... as the warehouse has it."""
    with conn.cursor() as cur:
        cur.execute("SELECT table_name, column_name, data_type, numeric_precision, "
                    "numeric_scale FROM information_schema.columns WHERE table_schema = %s",
                    (SCHEMA,))
        out = {}
        for table, column, data_type, precision, scale in cur.fetchall():
            if data_type == "numeric" and precision is not None:
                out[(table, column)] = f"numeric({precision},{scale})"
            else:
                out[(table, column)] = data_type
    return out


def _wider(have: str, want: str) -> str | None:
    """The type to ALTER to when `want` holds values `have` cannot; None if `have` does."""
    h, w = parse_numeric(have), parse_numeric(want)
    if h and w:
        if h.covers(w):
            return None
        union = h.union(w)
        # Past Redshift's limit the integer digits give way (a sum column at 38 digits
        # holds any real total); the scale never does.
        target = Numeric(min(union.precision, MAX_PRECISION), union.scale)
        return None if target == h else str(target)
    if have in _INT_RANK and want in _INT_RANK and _INT_RANK[want] > _INT_RANK[have]:
        return want
    return None


def widen(conn: Connection, wanted: dict[tuple[str, str], str]) -> list[str]:
    """ALTER every (table, column) of `wanted` whose current type is narrower. Returns the
    changes made ("sales.t.c numeric(12,2) -> numeric(14,4)"); runs in the caller's
    transaction and drops the mart view when it has to (the caller recreates it)."""
    have = current_types(conn)
    alters = []
    for (table, column), want in wanted.items():
        current = have.get((table, column))
        if current is None:
            continue
        target = _wider(current, want)
        if target is not None:
            alters.append((table, column, current, target))
    if not alters:
        return []
    with conn.cursor() as cur:
        cur.execute(f"DROP VIEW IF EXISTS {SCHEMA}.v_sales_mart")
        for table, column, _, target in alters:
            cur.execute(f"ALTER TABLE {SCHEMA}.{table} ALTER COLUMN {column} TYPE {target}")
    changes = [f"{SCHEMA}.{t}.{c} {old} -> {new}" for t, c, old, new in alters]
    for change in changes:
        LOG.warning("widened %s", change)
    return changes


def model_types() -> dict[tuple[str, str], str]:
    """The model's numeric and integer columns (what apply_ddl widens an old warehouse to)."""
    return {(t.name, c.name): c.type for t in TABLES for c in t.columns
            if parse_numeric(c.type) or c.type in _INT_RANK}


def for_staging(staging: str, column: str, incoming: Numeric) -> dict[tuple[str, str], str]:
    """What must hold `incoming` values of `staging.column`: it and the columns derived."""
    wanted = {(staging, column): incoming}
    for table, derived, extra in DERIVED.get((staging, column), ()):
        precision = (MAX_PRECISION if extra >= MAX_PRECISION
                     else incoming.precision + extra)
        wanted[(table, derived)] = Numeric(min(precision, MAX_PRECISION), incoming.scale)
    if incoming.precision > MAX_PRECISION:
        raise DecimalTooWideError(f"{SCHEMA}.{staging}.{column}", incoming)
    return {k: str(v) for k, v in wanted.items()}
