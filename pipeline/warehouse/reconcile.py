"""Check gold against the source: per day, in total, and row by row.

Per day (the UTC date of `order_ts`) we compare
  orders      count of orders                      vs count of fact_orders
  items       count of order_items rows            vs count of fact_order_items
  quantity    sum of order_items.quantity          vs sum of fact_order_items.quantity
  revenue     sum of quantity * unit_price         vs sum of fact_order_items.line_total
  order_total the same source revenue              vs sum of fact_orders.order_total
(`items` counts lines, `quantity` units: a line changed from 1 to 3 units shows in the
second only.) In total, customers and products in the source are compared with the current
versions of dim_customer and dim_product. Row by row (`rowdiff.py`), the attributes gold
carries are compared for every key through bucket checksums, and differing keys are named.
What the dashboards read through the dimensions is checked too (`versions.py`): every fact
points at the version valid at its order time, versions never overlap, and every version
derives from the bronze full load silver holds now.

Rows held in quarantine (their latest change failed validation, so gold keeps the
previous state) are not differences: they are reported apart, as gold being behind the
source, and left out of the numbers on both sides so that everything else must match.

The source is read live, in one consistent snapshot: reconcile after a run has caught up
with a quiet source, or expect the changes made since to show as differences.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg2
import pymysql

from pipeline.aws.secrets import mysql_credentials
from pipeline.config import Settings
from pipeline.progress import Progress, SilentProgress
from pipeline.source.db import connect, translated
from pipeline.warehouse import rowdiff, versions
from pipeline.warehouse.errors import from_psycopg
from pipeline.warehouse.load import session
from pipeline.warehouse.model import SCHEMA
from pipeline.warehouse.scope import Scope

LOG = logging.getLogger(__name__)

DAY_METRICS = ("orders", "items", "quantity", "revenue", "order_total")
"""What is compared per day, in report order."""

TOTAL_METRICS = ("customers", "products")
"""What is compared once, over the whole source."""

NO_DATE = "(no valid date)"
"""The day of a source order whose order_ts is a zero or invalid date."""

Number = int | Decimal
Held = dict[str, set[str]]
"""table -> keys held in quarantine."""


def _not_in(column: str, keys: set[str]) -> str:
    """`column NOT IN (...)` for integer keys; TRUE when there are none (NOT IN () is
    invalid SQL and NOT IN (NULL) matches nothing)."""
    ints = sorted({int(k) for k in keys if str(k).lstrip("-").isdigit()})
    return f"{column} NOT IN ({', '.join(map(str, ints))})" if ints else "TRUE"


ITEM_ORDERS = "orders of held order_items"
"""Held-keys entry: the orders a held order item belongs to. Gold's order_total of such an
order still counts the item's previous value, so their totals are left out on both sides."""


# A zero or invalid order_ts gets no day of its own (DATE() would return text).
SOURCE_DAY = ("CASE WHEN YEAR(order_ts) = 0 OR MONTH(order_ts) = 0 OR DAYOFMONTH(order_ts) = 0 "
              "THEN NULL ELSE DATE(order_ts) END")


def _source_days_where(days: set[date | str] | None, column: str) -> str:
    """Only `days` (an incremental reconcile's): TRUE for all of them."""
    if days is None:
        return "TRUE"
    dated = sorted(d for d in days if isinstance(d, date))
    parts = []
    if dated:
        listed = ", ".join(f"'{d.isoformat()}'" for d in dated)
        # The range lets MySQL use the order_ts index; the list picks the days in it. (Its
        # end is the last day's last microsecond: 9999-12-31 + 1 day would be NULL.)
        parts.append(f"({column} >= '{dated[0].isoformat()}' AND {column} <= "
                     f"'{dated[-1].isoformat()} 23:59:59.999999' AND "
                     f"{SOURCE_DAY.replace('order_ts', column)} IN ({listed}))")
    if NO_DATE in days:
        parts.append(f"{SOURCE_DAY.replace('order_ts', column)} IS NULL")
    return "(" + " OR ".join(parts) + ")" if parts else "FALSE"


def _gold_days_where(days: set[date | str] | None) -> str:
    if days is None:
        return "TRUE"
    keys = sorted(d.year * 10000 + d.month * 100 + d.day for d in days if isinstance(d, date))
    return f"date_key IN ({', '.join(map(str, keys))})" if keys else "FALSE"


def source_day_sql(held: Held, days: set[date | str] | None = None) -> str:
    orders, items = held.get("orders", set()), held.get("order_items", set())
    totals = orders | held.get(ITEM_ORDERS, set())
    day = SOURCE_DAY
    return (
        "SELECT d, SUM(orders), SUM(items), SUM(quantity), SUM(revenue), SUM(total) FROM ("
        f" SELECT {day} AS d, COUNT(*) AS orders, 0 AS items, 0 AS quantity,"
        f"        0 AS revenue, 0 AS total FROM orders WHERE {_not_in('id', orders)}"
        f"        AND {_source_days_where(days, 'order_ts')} GROUP BY d"
        " UNION ALL"
        f" SELECT {day.replace('order_ts', 'o.order_ts')}, 0, COUNT(*), SUM(i.quantity),"
        "        SUM(i.quantity * i.unit_price),"
        f"        SUM(CASE WHEN {_not_in('o.id', totals)} THEN i.quantity * i.unit_price"
        "                 ELSE 0 END)"
        " FROM order_items i JOIN orders o ON o.id = i.order_id"
        f" WHERE {_not_in('o.id', orders)} AND {_not_in('i.id', items)}"
        f" AND {_source_days_where(days, 'o.order_ts')}"
        f" GROUP BY {day.replace('order_ts', 'o.order_ts')}"
        ") per_day GROUP BY d")


def gold_day_sql(held: Held, days: set[date | str] | None = None) -> str:
    orders, items = held.get("orders", set()), held.get("order_items", set())
    totals = orders | held.get(ITEM_ORDERS, set())
    only = _gold_days_where(days)
    return f"""
    SELECT to_date(date_key::text, 'YYYYMMDD'), sum(orders), sum(items), sum(quantity),
           sum(revenue), sum(order_total)
    FROM (SELECT date_key, count(*) AS orders, 0 AS items, 0 AS quantity, 0 AS revenue,
                 sum(order_total) FILTER (WHERE {_not_in('order_id', totals)}) AS order_total
          FROM {SCHEMA}.fact_orders WHERE {_not_in('order_id', orders)} AND {only}
          GROUP BY date_key
          UNION ALL
          SELECT date_key, 0, count(*), sum(quantity), sum(line_total), 0
          FROM {SCHEMA}.fact_order_items
          WHERE {_not_in('order_id', orders)} AND {_not_in('order_item_id', items)}
            AND {only}
          GROUP BY date_key) AS per_day
    GROUP BY date_key"""


def source_total_sql(held: Held) -> str:
    return (f"SELECT (SELECT COUNT(*) FROM customers WHERE "
            f"{_not_in('id', held.get('customers', set()))}), "
            f"(SELECT COUNT(*) FROM products WHERE {_not_in('id', held.get('products', set()))})")


def gold_total_sql(held: Held) -> str:
    return (f"SELECT (SELECT count(*) FROM {SCHEMA}.dim_customer WHERE is_current AND "
            f"{_not_in('customer_id', held.get('customers', set()))}), "
            f"(SELECT count(*) FROM {SCHEMA}.dim_product WHERE is_current AND "
            f"{_not_in('product_id', held.get('products', set()))})")


def _json(value: Number) -> int | str:
    # Money as a string keeps every cent exact; a JSON float would not.
    return value if isinstance(value, int) else str(value)


@dataclass(frozen=True)
class Difference:
    """One number that differs: a metric of a day (`scope` "day") or a total."""

    scope: str
    key: str
    metric: str
    source: Number
    gold: Number

    @property
    def delta(self) -> Number:
        return self.gold - self.source

    def as_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "key": self.key, "metric": self.metric,
                "source": _json(self.source), "gold": _json(self.gold),
                "delta": _json(self.delta)}


@dataclass
class ReconcileReport:
    """Every compared number and row that differs, the held rows, and both sides' totals."""

    days: int = 0
    """Days present on either side."""
    differences: list[Difference] = field(default_factory=list)
    rows: list[rowdiff.RowDifference | versions.VersionDifference] = field(
        default_factory=list)
    """Keys whose current state differs (at most `reconcile.max_rows_shown` per table), and
    facts or versions whose dimension version is wrong."""
    row_counts: dict[str, int] = field(default_factory=dict)
    """Differing keys per table, all of them counted."""
    rows_compared: dict[str, int] = field(default_factory=dict)
    versions_checked: dict[str, int] = field(default_factory=dict)
    """Gold rows whose dimension version was checked: facts, and the versions themselves."""

    @property
    def facts_checked(self) -> int:
        """Facts whose dimension version was checked."""
        return sum(n for t, n in self.versions_checked.items() if t.startswith("fact_"))
    held: list[dict[str, Any]] = field(default_factory=list)
    """Rows held in quarantine: gold is behind the source for them."""
    source_totals: dict[str, Number] = field(default_factory=dict)
    gold_totals: dict[str, Number] = field(default_factory=dict)
    kind: str = "full"
    """`full`, or `incremental`: only the days and keys the loads changed since the last
    reconcile that passed (`pipeline.warehouse.scope`)."""
    why: str = ""
    """Why this kind ran."""

    @property
    def ok(self) -> bool:
        """Gold matches the source, apart from the rows held in quarantine."""
        return not self.differences and not self.row_counts

    @property
    def behind(self) -> bool:
        return bool(self.held)

    @property
    def differing_days(self) -> list[str]:
        return sorted({d.key for d in self.differences if d.scope == "day"})

    def held_summary(self) -> str:
        """"3 rows of `orders` (unknown status 'lost'), 1 row of `products` (...)"."""
        by_table: dict[str, list[dict[str, Any]]] = {}
        for h in self.held:
            by_table.setdefault(h["table"], []).append(h)
        parts = []
        for table, rows in sorted(by_table.items()):
            reasons = sorted({r["reason"] for r in rows})
            noun = "row" if len(rows) == 1 else "rows"
            shown = "; ".join(reasons[:3]) + ("; ..." if len(reasons) > 3 else "")
            parts.append(f"{len(rows)} {noun} of `{table}` ({shown})")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "behind": self.behind, "kind": self.kind, "why": self.why,
                "days": self.days,
                "differing_days": self.differing_days,
                "source_totals": {k: _json(v) for k, v in self.source_totals.items()},
                "gold_totals": {k: _json(v) for k, v in self.gold_totals.items()},
                "rows_compared": self.rows_compared, "differing_rows": self.row_counts,
                "versions_checked": self.versions_checked,
                "differences": [d.as_dict() for d in self.differences]
                + [r.as_dict() for r in self.rows],
                "held": [{"table": h["table"], "key": h["key"], "reason": h["reason"],
                          "since_run": h.get("quarantined_run"),
                          "since": h.get("quarantined_at")} for h in self.held]}


def _number(metric: str, value: Any) -> Number:
    # MySQL returns SUM() of integers as DECIMAL; counts and units are compared as ints.
    if value is None:
        value = 0
    return Decimal(value) if metric in ("revenue", "order_total") else int(value)


def _day(value: Any) -> date | str:
    return value if isinstance(value, date) else NO_DATE


def _per_day(rows: list[tuple]) -> dict[date | str, dict[str, Number]]:
    return {_day(row[0]): {m: _number(m, v) for m, v in zip(DAY_METRICS, row[1:])}
            for row in rows}


@contextlib.contextmanager
def _source(settings: Settings) -> Iterator[pymysql.cursors.Cursor]:
    creds = mysql_credentials(settings)
    conn = connect(creds)
    try:
        with translated(creds, "reading the source for reconciliation"), \
                conn.cursor() as cur:
            # One snapshot for every query, so a concurrent writer cannot make the per-day
            # numbers and the totals disagree with each other.
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            check_source_columns(cur, creds.dbname)
            yield cur
            conn.rollback()
    finally:
        conn.close()


@dataclass
class Side:
    """What one side (source or gold) says."""

    days: dict[date | str, dict[str, Number]]
    totals: dict[str, Number]
    buckets: dict[str, list[tuple]]


def source_columns() -> dict[str, dict[str, str]]:
    """Source table -> {column reconcile reads: the gold column that carries it}."""
    out: dict[str, dict[str, str]] = {}
    for e in rowdiff.ENTITIES:
        cols = out.setdefault(e.table, {})
        cols[e.key] = f"{SCHEMA}.{e.gold_table}.{e.gold_key}"
        for a in e.attrs:
            cols[a.name] = f"{SCHEMA}.{e.gold_table}.{a.gold_column}"
    # What the per-day numbers read besides.
    out["order_items"].setdefault("quantity", f"{SCHEMA}.fact_order_items.quantity")
    out["order_items"].setdefault("unit_price", f"{SCHEMA}.fact_order_items.unit_price")
    return out


def check_source_columns(cur: Any, database: str) -> None:
    """SourceDriftError when a source table lacks a column gold carries (renamed or dropped
    at the source), rather than the server's "unknown column" half-way through."""
    from pipeline.errors import SourceDriftError
    from pipeline.source.generate import COLUMNS

    cur.execute("SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, ORDINAL_POSITION", (database,))
    have: dict[str, list[str]] = {}
    for table, column in cur.fetchall():
        have.setdefault(table, []).append(column)
    for table, needed in source_columns().items():
        if table not in have:
            continue  # a missing table is reported by the queries themselves
        missing = {c: gold for c, gold in needed.items() if c not in have[table]}
        if missing:
            unknown = [c for c in have[table] if c not in COLUMNS.get(table, ())]
            raise SourceDriftError(f"{database}.{table}", missing, unknown)


def read_held(settings: Settings) -> list[dict[str, Any]]:
    """Every key held in quarantine over the four silver tables, and every bronze file the
    crawler rejected (the table waits at it)."""
    from pipeline.catalog.store import rejected_files
    from pipeline.glue import silver

    held = []
    bucket = settings.lake.bronze_bucket
    for e in rowdiff.ENTITIES:
        held += silver.held_rows(settings, e.table)
        held += [{"table": e.table, "key": f"s3://{bucket}/{key}", "op": "file",
                  "reason": f"bronze file rejected: {info['rejected']}",
                  "quarantined_at": info.get("at"), "quarantined_run": None}
                 for key, info in sorted(rejected_files(settings, e.table).items())]
    return held


def _held_keys(held: list[dict[str, Any]]) -> Held:
    keys: Held = {}
    for h in held:
        keys.setdefault(h["table"], set()).add(str(h["key"]))
    return keys


def reconcile(settings: Settings, progress: Progress | None = None,
              scope: Scope | None = None) -> ReconcileReport:
    """Compare the source `shop` with gold; the report lists every differing number and
    row, and the rows held in quarantine. With `scope`, only the days and keys it reaches
    (an incremental reconcile, `reconcile_run`); else everything."""
    progress = progress or SilentProgress()
    progress.start("reconcile", "comparing source and gold per day and row by row"
                   if scope is None else f"comparing the {scope.size:,} changed key(s) and "
                                         "their days")
    bucket_rows = settings.reconcile.bucket_rows
    try:
        held = read_held(settings)
        keys = _held_keys(held)
        with _source(settings) as src_cur, session(settings) as gold_conn:
            try:
                with gold_conn.cursor() as gold_cur:
                    gold_cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, "
                                     "READ ONLY")
                    _orders_of_held_items(keys, src_cur, gold_cur)
                    if scope is None:
                        source = _read(src_cur, keys, bucket_rows, "mysql")
                        gold = _read(gold_cur, keys, bucket_rows, "postgres")
                        report = compare(source.days, gold.days, source.totals, gold.totals)
                        report.held = held
                        for entity in rowdiff.ENTITIES:
                            _compare_rows(report, entity, source, gold, src_cur, gold_cur,
                                          keys, settings)
                        _check_versions(report, gold_cur, settings)
                    else:
                        report = _reconcile_scope(scope, src_cur, gold_cur, keys, settings)
                        report.held = held
                gold_conn.rollback()
            except psycopg2.Error as exc:
                raise from_psycopg(exc, "reading gold for reconciliation") from exc
    except BaseException as exc:
        from pipeline.errors import first_line

        progress.finish("reconcile", ok=False, message=first_line(exc))
        raise
    compared = sum(report.rows_compared.values())
    progress.finish("reconcile", ok=report.ok,
                    message=f"{report.days} days, {compared} rows, "
                            f"{len(report.differences) + sum(report.row_counts.values())} "
                            f"differences, {len(held)} held")
    if not report.ok:
        LOG.warning("reconciliation found %d differing numbers and %d differing rows",
                    len(report.differences), sum(report.row_counts.values()))
    return report


def reconcile_run(settings: Settings, progress: Progress | None = None, full: bool = False,
                  run_id: str | None = None) -> ReconcileReport:
    """The reconcile a run (or `shoplake reconcile`) does: incremental or full by the rules
    of `pipeline.warehouse.scope`, recorded when gold is found exact."""
    from pipeline.warehouse import scope as scopes

    choice = scopes.choose(settings, full=full)
    report = reconcile(settings, progress, choice.scope)
    report.kind, report.why = choice.kind, choice.why
    if report.ok:
        scopes.record(settings, choice, run_id)
    return report


def _ints(rows: Any) -> set[int]:
    return {int(r[0]) for r in rows if r[0] is not None}


def _reconcile_scope(scope: Scope, src_cur: Any, gold_cur: Any, held: Held,
                     settings: Settings) -> ReconcileReport:
    """Content-level, as the full reconcile, over what the scope's keys reach: their orders
    (an item's order, on either side) and those orders' items, the days all of them fall
    on (on either side), the changed customers and products, and the facts pointing at
    them."""
    from pipeline.warehouse.versions import in_list

    keys = {t: set(k) for t, k in scope.keys.items()}
    items = keys.get("order_items", set())
    orders = set(keys.get("orders", set()))
    if items:
        src_cur.execute(f"SELECT DISTINCT order_id FROM order_items WHERE id IN {in_list(items)}")
        orders |= _ints(src_cur.fetchall())
        gold_cur.execute(f"SELECT DISTINCT order_id FROM {SCHEMA}.fact_order_items "
                         f"WHERE order_item_id IN {in_list(items)}")
        orders |= _ints(gold_cur.fetchall())
    if orders:
        src_cur.execute(f"SELECT id FROM order_items WHERE order_id IN {in_list(orders)}")
        items = items | _ints(src_cur.fetchall())
        gold_cur.execute(f"SELECT order_item_id FROM {SCHEMA}.fact_order_items "
                         f"WHERE order_id IN {in_list(orders)}")
        items |= _ints(gold_cur.fetchall())
    keys["orders"], keys["order_items"] = orders, items
    days: set[date | str] = set()
    if orders:
        src_cur.execute(f"SELECT DISTINCT {SOURCE_DAY} FROM orders WHERE id IN {in_list(orders)}")
        days |= {_day(r[0]) for r in src_cur.fetchall()}
        gold_cur.execute(f"SELECT DISTINCT to_date(date_key::text, 'YYYYMMDD') FROM "
                         f"{SCHEMA}.fact_orders WHERE order_id IN {in_list(orders)} UNION "
                         f"SELECT DISTINCT to_date(date_key::text, 'YYYYMMDD') FROM "
                         f"{SCHEMA}.fact_order_items WHERE order_item_id IN {in_list(items)}")
        days |= {_day(r[0]) for r in gold_cur.fetchall()}
    src_cur.execute(source_day_sql(held, days))
    src_days = _per_day(list(src_cur.fetchall()))
    src_cur.execute(source_total_sql(held))
    src_totals = dict(zip(TOTAL_METRICS, (int(v) for v in src_cur.fetchone())))
    gold_cur.execute(gold_day_sql(held, days))
    gold_days = _per_day(gold_cur.fetchall())
    gold_cur.execute(gold_total_sql(held))
    gold_totals = dict(zip(TOTAL_METRICS, (int(v) for v in gold_cur.fetchone())))
    report = compare(src_days, gold_days, src_totals, gold_totals)
    for e in rowdiff.ENTITIES:
        wanted = keys.get(e.table, set())
        report.rows_compared[e.table] = len(wanted)
        if not wanted:
            continue
        src_cur.execute(f"SELECT `{e.key}`, {rowdiff.mysql_row(e)} FROM `{e.table}` "
                        f"WHERE `{e.key}` IN {in_list(wanted)}")
        gold_cur.execute(f"SELECT {e.gold_key}, {rowdiff.postgres_row(e)} FROM "
                         f"{SCHEMA}.{e.gold_table} WHERE {e.gold_where} AND "
                         f"{e.gold_key} IN {in_list(wanted)}")
        _keep_real(report, e, rowdiff.row_differences(e, src_cur.fetchall(),
                                                      gold_cur.fetchall()), held, settings)
    _check_versions(report, gold_cur, settings, keys)
    return report


def _read(cur: Any, held: Held, bucket_rows: int, engine: str) -> Side:
    if engine == "mysql":
        cur.execute(source_day_sql(held))
        days = _per_day(list(cur.fetchall()))
        cur.execute(source_total_sql(held))
        totals = dict(zip(TOTAL_METRICS, (int(v) for v in cur.fetchone())))
        buckets = {}
        for e in rowdiff.ENTITIES:
            cur.execute(rowdiff.mysql_buckets_sql(e, bucket_rows))
            buckets[e.table] = list(cur.fetchall())
    else:
        cur.execute(gold_day_sql(held))
        days = _per_day(cur.fetchall())
        cur.execute(gold_total_sql(held))
        totals = dict(zip(TOTAL_METRICS, (int(v) for v in cur.fetchone())))
        buckets = {}
        for e in rowdiff.ENTITIES:
            cur.execute(rowdiff.postgres_buckets_sql(e, bucket_rows, SCHEMA))
            buckets[e.table] = list(cur.fetchall())
    return Side(days, totals, buckets)


def compare(source_days: dict[date | str, dict[str, Number]],
            gold_days: dict[date | str, dict[str, Number]], source_totals: dict[str, Number],
            gold_totals: dict[str, Number]) -> ReconcileReport:
    """The report of two sides' numbers; a day missing on one side counts as zeros there."""
    zeros = {m: _number(m, 0) for m in DAY_METRICS}
    all_days = source_days.keys() | gold_days.keys()
    report = ReconcileReport(days=len(all_days))
    for day in sorted(all_days, key=str):
        src, gld = source_days.get(day, zeros), gold_days.get(day, zeros)
        label = day.isoformat() if isinstance(day, date) else day
        report.differences += [Difference("day", label, m, src[m], gld[m])
                               for m in DAY_METRICS if src[m] != gld[m]]
    for metric in DAY_METRICS:
        report.source_totals[metric] = sum((d[metric] for d in source_days.values()),
                                           zeros[metric])
        report.gold_totals[metric] = sum((d[metric] for d in gold_days.values()),
                                         zeros[metric])
    for metric in TOTAL_METRICS:
        report.source_totals[metric] = source_totals[metric]
        report.gold_totals[metric] = gold_totals[metric]
        if source_totals[metric] != gold_totals[metric]:
            report.differences.append(Difference("total", metric, metric,
                                                 source_totals[metric], gold_totals[metric]))
    return report


def _compare_rows(report: ReconcileReport, e: rowdiff.Entity, source: Side, gold: Side,
                  src_cur: Any, gold_cur: Any, held: Held, settings: Settings) -> None:
    bucket_rows = settings.reconcile.bucket_rows
    report.rows_compared[e.table] = sum(int(n) for _, n, _ in source.buckets[e.table])
    differing = rowdiff.buckets_that_differ(source.buckets[e.table], gold.buckets[e.table])
    if not differing:
        return
    src_cur.execute(rowdiff.mysql_rows_sql(e, bucket_rows, differing))
    gold_cur.execute(rowdiff.postgres_rows_sql(e, bucket_rows, differing, SCHEMA))
    rows = rowdiff.row_differences(e, src_cur.fetchall(), gold_cur.fetchall())
    _keep_real(report, e, rows, held, settings)


def _keep_real(report: ReconcileReport, e: rowdiff.Entity, rows: list[rowdiff.RowDifference],
               held: Held, settings: Settings) -> None:
    """Count and show the differing rows that are not held in quarantine."""
    held_here = held.get(e.table, set())
    held_orders = held.get("orders", set())
    real = []
    for row in rows:
        if row.key in held_here:
            continue  # behind, not wrong: reported with the held rows
        if e.table == "order_items" and _order_of(row) in held_orders:
            continue  # the line of a held order waits with it
        real.append(row)
    if real:
        report.row_counts[e.table] = len(real)
        report.rows += real[:settings.reconcile.max_rows_shown]


def _orders_of_held_items(keys: Held, src_cur: Any, gold_cur: Any) -> None:
    """The orders held order items belong to, on either side (`ITEM_ORDERS`)."""
    items = keys.get("order_items", set())
    if not any(str(k).lstrip("-").isdigit() for k in items):
        return
    inside = _not_in("x", items).removeprefix("x NOT IN ")
    src_cur.execute(f"SELECT DISTINCT order_id FROM order_items WHERE id IN {inside}")
    gold_cur.execute(f"SELECT DISTINCT order_id FROM {SCHEMA}.fact_order_items "
                     f"WHERE order_item_id IN {inside}")
    keys[ITEM_ORDERS] = {str(r[0]) for r in [*src_cur.fetchall(), *gold_cur.fetchall()]}


def _check_versions(report: ReconcileReport, gold_cur: Any, settings: Settings,
                    keys: dict[str, set[int]] | None = None) -> None:
    """Each fact's dimension version, the versions' chains and their bronze full load."""
    from pipeline.glue import silver

    # Only where gold is fed from generation-stamped staging (a pipeline load, not staging
    # loaded by hand): there every version must be of silver's generation.
    gold_cur.execute(f"SELECT staging FROM {SCHEMA}.load_state WHERE generation IS NOT NULL")
    stamped = {row[0] for row in gold_cur.fetchall()}
    generations = {}
    for e in rowdiff.ENTITIES:
        dim = next((d for d in versions.SCD2_DIMS if d.dim == e.gold_table), None)
        if dim is not None and dim.staging in stamped:
            pointer = silver.current_snapshot(settings, e.table) or {}
            generations[e.gold_table] = pointer.get("generation")
    checked, counts, shown = versions.check(gold_cur, generations,
                                            settings.reconcile.max_rows_shown, keys)
    report.versions_checked = checked
    for table, n in counts.items():
        report.row_counts[table] = report.row_counts.get(table, 0) + n
    report.rows += shown


def _order_of(row: rowdiff.RowDifference) -> str | None:
    """The order id of an order_items difference, when the source side has the row."""
    return row.source_values.get("order_id")
