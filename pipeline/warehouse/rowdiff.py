"""Row-by-row comparison of the source's current state with gold, through checksums.

The attributes gold carries (order status, platform, payment method, order time, prices,
quantities, customer city and country, product category and active flag) are compared
for every key, the way reladiff diffs MySQL against PostgreSQL: both sides reduce each
bucket of keys (`FLOOR(id / bucket_rows)`) to a row count and a sum of 60-bit hashes of
the rows' canonical text; only buckets whose sums differ are fetched and compared row by
row, so a matching warehouse costs a few aggregate queries whatever its size.

The canonical text is built by each database from the same rules, mirroring what
bronze_to_silver does to a value (strings trimmed with inner whitespace collapsed, status
lower-cased), so a row that went through the pipeline unchanged has the same text on
both sides: decimals without trailing zeros (a widened scale is not a difference),
timestamps to the microsecond, booleans as true/false, NULL as \\N.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

SEP_CODE = 31
"""ASCII unit separator between a row's fields (no source value holds it)."""


@dataclass(frozen=True)
class Attr:
    name: str
    """Source column; gold's is the same unless `gold` says otherwise."""
    kind: str  # text | status | int | decimal | timestamp | bool
    gold: str = ""

    @property
    def gold_column(self) -> str:
        return self.gold or self.name


@dataclass(frozen=True)
class Entity:
    """A source table and the gold table holding its current state."""

    table: str
    gold_table: str
    gold_key: str
    attrs: tuple[Attr, ...]
    gold_where: str = "true"
    key: str = "id"


ENTITIES: tuple[Entity, ...] = (
    Entity("orders", "fact_orders", "order_id",
           (Attr("customer_id", "int"), Attr("status", "status"), Attr("platform", "text"),
            Attr("payment_method", "text"), Attr("order_ts", "timestamp"))),
    Entity("order_items", "fact_order_items", "order_item_id",
           (Attr("order_id", "int"), Attr("product_id", "int"), Attr("quantity", "int"),
            Attr("unit_price", "decimal"))),
    Entity("customers", "dim_customer", "customer_id",
           (Attr("city", "text"), Attr("country", "text")), gold_where="is_current"),
    Entity("products", "dim_product", "product_id",
           (Attr("category", "text"), Attr("price", "decimal"), Attr("active", "bool")),
           gold_where="is_current"),
)
"""What is compared, per source table."""


def _mysql_value(col: str, kind: str) -> str:
    text = f"REGEXP_REPLACE(TRIM(`{col}`), '[[:space:]]+', ' ')"
    expr = {
        "text": text,
        "status": f"LOWER({text})",
        "int": f"CAST(`{col}` AS CHAR)",
        # 12.30 -> 12.3, 10.00 -> 10, 7 -> 7
        "decimal": (f"IF(LOCATE('.', CAST(`{col}` AS CHAR)) > 0, TRIM(TRAILING '.' FROM "
                    f"TRIM(TRAILING '0' FROM CAST(`{col}` AS CHAR))), CAST(`{col}` AS CHAR))"),
        "timestamp": f"DATE_FORMAT(`{col}`, '%Y-%m-%d %H:%i:%s.%f')",
        "bool": f"IF(`{col}`, 'true', 'false')",
    }[kind]
    return f"COALESCE({expr}, '\\\\N')"


def _postgres_value(col: str, kind: str) -> str:
    expr = {
        "text": col,
        "status": col,
        "int": f"{col}::text",
        "decimal": f"trim_scale({col})::text",
        "timestamp": f"to_char({col}, 'YYYY-MM-DD HH24:MI:SS.US')",
        "bool": f"{col}::text",
    }[kind]
    return f"coalesce({expr}, '\\N')"


def mysql_row(e: Entity) -> str:
    parts = [f"CAST(`{e.key}` AS CHAR)"] + [_mysql_value(a.name, a.kind) for a in e.attrs]
    return f"CONCAT_WS(CHAR({SEP_CODE}), {', '.join(parts)})"


def postgres_row(e: Entity) -> str:
    parts = [f"{e.gold_key}::text"] + [_postgres_value(a.gold_column, a.kind) for a in e.attrs]
    return f"concat_ws(chr({SEP_CODE}), {', '.join(parts)})"


def mysql_buckets_sql(e: Entity, bucket_rows: int) -> str:
    return (f"SELECT FLOOR(`{e.key}` / {bucket_rows}) AS b, COUNT(*), "
            f"SUM(CAST(CONV(LEFT(MD5({mysql_row(e)}), 15), 16, 10) AS UNSIGNED)) "
            f"FROM `{e.table}` GROUP BY b")


def postgres_buckets_sql(e: Entity, bucket_rows: int, schema: str) -> str:
    return (f"SELECT floor({e.gold_key} / {bucket_rows})::bigint AS b, count(*), "
            f"sum(('x' || left(md5({postgres_row(e)}), 15))::bit(60)::bigint) "
            f"FROM {schema}.{e.gold_table} WHERE {e.gold_where} GROUP BY b")


def mysql_rows_sql(e: Entity, bucket_rows: int, buckets: Iterable[int]) -> str:
    ids = ", ".join(str(int(b)) for b in buckets)
    return (f"SELECT `{e.key}`, {mysql_row(e)} FROM `{e.table}` "
            f"WHERE FLOOR(`{e.key}` / {bucket_rows}) IN ({ids})")


def postgres_rows_sql(e: Entity, bucket_rows: int, buckets: Iterable[int], schema: str) -> str:
    ids = ", ".join(str(int(b)) for b in buckets)
    return (f"SELECT {e.gold_key}, {postgres_row(e)} FROM {schema}.{e.gold_table} "
            f"WHERE {e.gold_where} AND floor({e.gold_key} / {bucket_rows})::bigint IN ({ids})")


@dataclass(frozen=True)
class RowDifference:
    """One key whose current state differs: missing on a side, or attributes that differ."""

    table: str
    key: str
    attributes: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    """attribute -> (source value, gold value); `(row)` for a key missing on one side."""
    source_values: dict[str, str] = field(default_factory=dict, compare=False)
    """Every attribute of the source's row, when it has one."""

    def describe(self) -> str:
        parts = [f"{name}: source {_shown(s)}, gold {_shown(g)}"
                 for name, (s, g) in self.attributes.items()]
        return f"{self.table} {self.key}: " + "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"scope": "row", "table": self.table, "key": self.key,
                "attributes": {n: {"source": s, "gold": g}
                               for n, (s, g) in self.attributes.items()}}


def _shown(value: str | None) -> str:
    if value is None:
        return "(no row)"
    return "NULL" if value == "\\N" else repr(value)


def buckets_that_differ(source: Iterable[tuple], gold: Iterable[tuple]) -> list[int]:
    """Buckets whose (count, hash sum) differ, or that one side lacks."""
    src = {int(b): (int(n), int(h or 0)) for b, n, h in source}
    gld = {int(b): (int(n), int(h or 0)) for b, n, h in gold}
    return sorted(b for b in src.keys() | gld.keys() if src.get(b) != gld.get(b))


def row_differences(e: Entity, source: Iterable[tuple], gold: Iterable[tuple]
                    ) -> list[RowDifference]:
    """Compare fetched (key, canonical text) rows of the same buckets."""
    sep = chr(SEP_CODE)
    src = {str(k): t for k, t in source}
    gld = {str(k): t for k, t in gold}
    names = [a.name for a in e.attrs]
    out = []
    for key in sorted(src.keys() | gld.keys(), key=lambda k: (len(k), k)):
        s, g = src.get(key), gld.get(key)
        if s == g:
            continue
        sv = dict(zip(names, s.split(sep)[1:])) if s is not None else {}
        if s is None or g is None:
            out.append(RowDifference(e.table, key, {"(row)": (None if s is None else "row",
                                                              None if g is None else "row")},
                                     sv))
            continue
        gv = dict(zip(names, g.split(sep)[1:]))
        out.append(RowDifference(e.table, key, {n: (sv.get(n), gv.get(n)) for n in names
                                                if sv.get(n) != gv.get(n)}, sv))
    return out
