"""What the dashboards read through the SCD2 dimensions, checked: each fact's version.

Sales by city shows the customer's city *at order time*: the dimension version a fact points
at (`fact_orders.customer_sk`). Totals per day cannot see a fact that points at the wrong
version, so reconcile also checks, in gold's own snapshot:

- every fact points at the version of its own key that is valid at its order time (by the
  same rule as the mart view: `order_ts >= record_start_ts` and before `record_end_ts`, or
  the current version);
- the versions of a key never overlap, none ends before it starts, and only the latest is
  current;
- every version derives from the bronze full load silver holds now (`generation`): after a
  re-snapshot, versions of the earlier dataset must be gone, or they would claim the new
  dataset's history (`shoplake seed --reset` then `shoplake cdc reset` once left them).

The current version's attributes are compared with the source row by row (`rowdiff`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.warehouse.model import SCD2_DIMS, SCHEMA, Scd2


@dataclass(frozen=True)
class VersionDifference:
    """One fact or dimension row whose version is wrong, and why."""

    table: str
    key: str
    problem: str

    def describe(self) -> str:
        return f"{self.table} {self.key}: {self.problem}"

    def as_dict(self) -> dict[str, Any]:
        return {"scope": "version", "table": self.table, "key": self.key,
                "problem": self.problem}


@dataclass(frozen=True)
class FactLink:
    """A fact's pointer at a dimension version, and where its order time comes from."""

    fact: str
    fact_key: str
    dim: Scd2
    source: str
    """FROM clause giving the fact as `f` and its order time as `order_ts`."""


LINKS: tuple[FactLink, ...] = (
    FactLink("fact_orders", "order_id", SCD2_DIMS[0],
             f"(SELECT order_id, customer_id, customer_sk, order_ts "
             f"FROM {SCHEMA}.fact_orders) AS f"),
    FactLink("fact_order_items", "order_item_id", SCD2_DIMS[1],
             f"(SELECT i.order_item_id, i.product_id, i.product_sk, o.order_ts "
             f"FROM {SCHEMA}.fact_order_items AS i "
             f"JOIN {SCHEMA}.fact_orders AS o ON o.order_id = i.order_id) AS f"),
)
"""Which fact points at which dimension (both facts carry their own key and the dim's)."""


def in_list(keys: Any) -> str:
    """`(1, 2, 3)` of integer keys; `(NULL)` (matches nothing) when there are none."""
    ints = sorted({int(k) for k in keys})
    return f"({', '.join(map(str, ints))})" if ints else "(NULL)"


def link_where(link: FactLink, keys: dict[str, Any] | None) -> str:
    """The facts an incremental check covers: its own changed keys, and every fact of a
    changed dimension key (its version may have moved)."""
    if keys is None:
        return "true"
    own = {"fact_orders": "orders", "fact_order_items": "order_items"}[link.fact]
    dim = {"dim_customer": "customers", "dim_product": "products"}[link.dim.dim]
    return (f"(f.{link.fact_key} IN {in_list(keys.get(own, ()))} "
            f"OR f.{link.dim.key} IN {in_list(keys.get(dim, ()))})")


def link_sql(link: FactLink, limit: int, keys: dict[str, Any] | None = None) -> str:
    """Facts whose version is not the one valid at their order time: the first `limit`,
    each with the count of all of them; plus the number of facts checked. `keys` (source
    table -> keys) limits the check to those facts (`link_where`)."""
    d, key, sk = link.dim, link.dim.key, link.dim.surrogate_key
    return f"""
    WITH wrong AS (
        SELECT f.{link.fact_key} AS fact_key, f.{key} AS natural_key, f.{sk} AS has,
               v.{sk} AS valid, f.order_ts
        FROM {link.source}
        LEFT JOIN {SCHEMA}.{d.dim} AS v
               ON v.{key} = f.{key} AND f.order_ts >= v.record_start_ts
              AND (f.order_ts < v.record_end_ts OR v.is_current)
        WHERE f.{sk} IS DISTINCT FROM v.{sk} AND {link_where(link, keys)})
    SELECT fact_key, natural_key, has, valid, order_ts, count(*) OVER () AS n
    FROM wrong ORDER BY fact_key LIMIT {int(limit)}"""


def chain_sql(dim: Scd2, limit: int, keys: Any = None) -> str:
    """Versions that end before they start, overlap the next version of their key, or are
    current but not the latest: the first `limit`, each with the count of all of them.
    `keys`: only these natural keys."""
    key, sk = dim.key, dim.surrogate_key
    where = "true" if keys is None else f"{key} IN {in_list(keys)}"
    return f"""
    WITH ordered AS (
        SELECT {key} AS k, {sk} AS sk, record_start_ts AS s, record_end_ts AS e, is_current,
               lead(record_start_ts) OVER w AS next_start, lead({sk}) OVER w AS next_sk
        FROM {SCHEMA}.{dim.dim} WHERE {where}
        WINDOW w AS (PARTITION BY {key} ORDER BY record_start_ts, {sk})),
    bad AS (SELECT * FROM ordered
            WHERE e <= s
               OR (next_start IS NOT NULL
                   AND (is_current OR e > next_start OR s = next_start)))
    SELECT k, sk, s, e, is_current, next_sk, next_start, count(*) OVER () AS n
    FROM bad ORDER BY k, s LIMIT {int(limit)}"""


def generation_sql(dim: Scd2) -> str:
    return (f"SELECT generation, count(*) FROM {SCHEMA}.{dim.dim} "
            "GROUP BY generation ORDER BY count(*) DESC")


def check(cur: Any, silver_generations: dict[str, str | None], limit: int,
          keys: dict[str, Any] | None = None
          ) -> tuple[dict[str, int], dict[str, int], list[VersionDifference]]:
    """(rows checked per gold table, wrong rows per table, the first wrong rows).

    `silver_generations`: dimension -> the generation of the silver table it is loaded from
    (None: unknown, not checked). `keys` (source table -> keys): an incremental check of
    the facts and versions those keys reach; None checks everything.
    """
    checked: dict[str, int] = {}
    counts: dict[str, int] = {}
    shown: list[VersionDifference] = []

    def add(table: str, n: int, rows: list[VersionDifference]) -> None:
        if n:
            counts[table] = counts.get(table, 0) + n
            shown.extend(rows)

    for link in LINKS:
        cur.execute(f"SELECT count(*) FROM {link.source} WHERE {link_where(link, keys)}")
        checked[link.fact] = int(cur.fetchone()[0])
        cur.execute(link_sql(link, limit, keys))
        rows = cur.fetchall()
        sk, entity = link.dim.surrogate_key, link.dim.entity
        add(link.fact, int(rows[0][5]) if rows else 0, [
            VersionDifference(link.fact, str(fact_key),
                              f"{sk} {has if has is not None else 'NULL'}, but the version of "
                              f"{entity} {natural} valid at order_ts {order_ts} is "
                              f"{valid if valid is not None else 'none'}")
            for fact_key, natural, has, valid, order_ts, _ in rows])
    for dim in SCD2_DIMS:
        natural = None if keys is None else keys.get(
            {"dim_customer": "customers", "dim_product": "products"}[dim.dim], set())
        where = "true" if natural is None else f"{dim.key} IN {in_list(natural)}"
        cur.execute(f"SELECT count(*) FROM {SCHEMA}.{dim.dim} WHERE {where}")
        checked[dim.dim] = int(cur.fetchone()[0])
        cur.execute(chain_sql(dim, limit, natural))
        rows = cur.fetchall()
        add(dim.dim, int(rows[0][7]) if rows else 0, [
            VersionDifference(dim.dim, f"{dim.entity} {k}",
                              f"version {sk} ({s} to {e}{', current' if current else ''}) "
                              + ("ends before it starts" if e <= s else
                                 ("overlaps" if e > next_start or s == next_start
                                  else "is current but is followed by")
                                 + f" version {next_sk} (from {next_start})"))
            for k, sk, s, e, current, next_sk, next_start, _ in rows])
        want = silver_generations.get(dim.dim)
        if want is None:
            continue
        cur.execute(generation_sql(dim))
        foreign = [(g, int(n)) for g, n in cur.fetchall() if g != want]
        n = sum(count for _, count in foreign)
        add(dim.dim, n, [VersionDifference(
            dim.dim, "(versions)",
            f"{n} version(s) derive from another bronze full load "
            f"({', '.join(str(g) for g, _ in foreign[:3])}) than silver's ({want}): "
            "gold must be rebuilt from the new snapshot")] if n else [])
    return checked, counts, shown
