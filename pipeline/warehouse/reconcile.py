"""Check gold against the source: per day, and in total, the numbers must be equal.

Per day (the UTC date of `order_ts`) we compare
  orders      count of orders                      vs count of fact_orders
  items       count of order_items rows            vs count of fact_order_items
  quantity    sum of order_items.quantity          vs sum of fact_order_items.quantity
  revenue     sum of quantity * unit_price         vs sum of fact_order_items.line_total
  order_total the same source revenue              vs sum of fact_orders.order_total
(`items` counts lines, `quantity` units: a line changed from 1 to 3 units shows in the
second only.) In total, customers and products in the source are compared with the current
versions of dim_customer and dim_product.

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
from pipeline.warehouse.errors import from_psycopg
from pipeline.warehouse.load import session
from pipeline.warehouse.model import SCHEMA

LOG = logging.getLogger(__name__)

DAY_METRICS = ("orders", "items", "quantity", "revenue", "order_total")
"""What is compared per day, in report order."""

TOTAL_METRICS = ("customers", "products")
"""What is compared once, over the whole source."""

Number = int | Decimal

SOURCE_DAY_SQL = (
    "SELECT d, SUM(orders), SUM(items), SUM(quantity), SUM(revenue), SUM(revenue) FROM ("
    " SELECT DATE(order_ts) AS d, COUNT(*) AS orders, 0 AS items, 0 AS quantity,"
    "        0 AS revenue FROM orders GROUP BY DATE(order_ts)"
    " UNION ALL"
    " SELECT DATE(o.order_ts), 0, COUNT(*), SUM(i.quantity), SUM(i.quantity * i.unit_price)"
    " FROM order_items i JOIN orders o ON o.id = i.order_id GROUP BY DATE(o.order_ts)"
    ") per_day GROUP BY d")

GOLD_DAY_SQL = f"""
    SELECT to_date(date_key::text, 'YYYYMMDD'), sum(orders), sum(items), sum(quantity),
           sum(revenue), sum(order_total)
    FROM (SELECT date_key, count(*) AS orders, 0 AS items, 0 AS quantity, 0 AS revenue,
                 sum(order_total) AS order_total
          FROM {SCHEMA}.fact_orders GROUP BY date_key
          UNION ALL
          SELECT date_key, 0, count(*), sum(quantity), sum(line_total), 0
          FROM {SCHEMA}.fact_order_items GROUP BY date_key) AS per_day
    GROUP BY date_key"""

SOURCE_TOTAL_SQL = "SELECT (SELECT COUNT(*) FROM customers), (SELECT COUNT(*) FROM products)"

GOLD_TOTAL_SQL = (f"SELECT (SELECT count(*) FROM {SCHEMA}.dim_customer WHERE is_current), "
                  f"(SELECT count(*) FROM {SCHEMA}.dim_product WHERE is_current)")


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
    """Every compared number that differs, plus the totals of both sides."""

    days: int = 0
    """Days present on either side."""
    differences: list[Difference] = field(default_factory=list)
    source_totals: dict[str, Number] = field(default_factory=dict)
    gold_totals: dict[str, Number] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.differences

    @property
    def differing_days(self) -> list[str]:
        return sorted({d.key for d in self.differences if d.scope == "day"})

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "days": self.days, "differing_days": self.differing_days,
                "source_totals": {k: _json(v) for k, v in self.source_totals.items()},
                "gold_totals": {k: _json(v) for k, v in self.gold_totals.items()},
                "differences": [d.as_dict() for d in self.differences]}


def _number(metric: str, value: Any) -> Number:
    # MySQL returns SUM() of integers as DECIMAL; counts and units are compared as ints.
    if value is None:
        value = 0
    return Decimal(value) if metric in ("revenue", "order_total") else int(value)


def _per_day(rows: list[tuple]) -> dict[date, dict[str, Number]]:
    return {row[0]: {m: _number(m, v) for m, v in zip(DAY_METRICS, row[1:])} for row in rows}


@contextlib.contextmanager
def _source(settings: Settings) -> Iterator[pymysql.cursors.Cursor]:
    creds = mysql_credentials(settings)
    conn = connect(creds)
    try:
        with translated(creds, "reading the source's totals for reconciliation"), \
                conn.cursor() as cur:
            # One snapshot for every query, so a concurrent writer cannot make the per-day
            # numbers and the totals disagree with each other.
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            yield cur
            conn.rollback()
    finally:
        conn.close()


def read_source(settings: Settings) -> tuple[dict[date, dict[str, Number]], dict[str, Number]]:
    with _source(settings) as cur:
        cur.execute(SOURCE_DAY_SQL)
        days = _per_day(list(cur.fetchall()))
        cur.execute(SOURCE_TOTAL_SQL)
        totals = dict(zip(TOTAL_METRICS, (int(v) for v in cur.fetchone())))
    return days, totals


def read_gold(settings: Settings) -> tuple[dict[date, dict[str, Number]], dict[str, Number]]:
    with session(settings) as conn:
        try:
            with conn.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cur.execute(GOLD_DAY_SQL)
                days = _per_day(cur.fetchall())
                cur.execute(GOLD_TOTAL_SQL)
                totals = dict(zip(TOTAL_METRICS, (int(v) for v in cur.fetchone())))
            conn.rollback()
        except psycopg2.Error as exc:
            raise from_psycopg(exc, "reading gold totals for reconciliation") from exc
    return days, totals


def compare(source_days: dict[date, dict[str, Number]], gold_days: dict[date, dict[str, Number]],
            source_totals: dict[str, Number], gold_totals: dict[str, Number]) -> ReconcileReport:
    """The report of two sides' numbers; a day missing on one side counts as zeros there."""
    zeros = {m: _number(m, 0) for m in DAY_METRICS}
    report = ReconcileReport(days=len(source_days.keys() | gold_days.keys()))
    for day in sorted(source_days.keys() | gold_days.keys()):
        src, gld = source_days.get(day, zeros), gold_days.get(day, zeros)
        report.differences += [Difference("day", day.isoformat(), m, src[m], gld[m])
                               for m in DAY_METRICS if src[m] != gld[m]]
    for metric in DAY_METRICS:
        report.source_totals[metric] = sum((d[metric] for d in source_days.values()),
                                           zeros[metric])
        report.gold_totals[metric] = sum((d[metric] for d in gold_days.values()), zeros[metric])
    for metric in TOTAL_METRICS:
        report.source_totals[metric] = source_totals[metric]
        report.gold_totals[metric] = gold_totals[metric]
        if source_totals[metric] != gold_totals[metric]:
            report.differences.append(Difference("total", metric, metric,
                                                 source_totals[metric], gold_totals[metric]))
    return report


def reconcile(settings: Settings, progress: Progress | None = None) -> ReconcileReport:
    """Compare the source `shop` with gold; the report lists every differing number."""
    progress = progress or SilentProgress()
    progress.start("reconcile", "comparing source and gold per day")
    try:
        source_days, source_totals = read_source(settings)
        gold_days, gold_totals = read_gold(settings)
    except BaseException:
        progress.finish("reconcile", ok=False)
        raise
    report = compare(source_days, gold_days, source_totals, gold_totals)
    progress.finish("reconcile", ok=report.ok,
                    message=f"{report.days} days, {len(report.differences)} differences")
    if not report.ok:
        LOG.warning("reconciliation found %d differences on %d days", len(report.differences),
                    len(report.differing_days))
    return report
