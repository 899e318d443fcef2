"""What silver holds per source table: typed columns, keys, validation rules, PII to hash.

The contract between bronze_to_silver and the load_* jobs. Every silver table also has
`_change_seq` (DMS AR_H_CHANGE_SEQ of the row's last change), `_commit_ts`, `ingest_date`
(the day the row's current version was ingested) and `_run_id` (the pipeline run that
wrote it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pipeline.warehouse.widen import MAX_PRECISION, DecimalTooWideError, parse_numeric

ORDER_STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "returned")
PLATFORMS = ("Website", "Mobile", "In-store")
META_COLUMNS = ("_change_seq", "_commit_ts", "ingest_date", "_run_id")


@dataclass(frozen=True)
class SilverTable:
    name: str
    columns: tuple[tuple[str, str], ...]
    """(silver column, Spark SQL type) in order; hashed PII columns are named `<col>_hash`."""
    primary_key: tuple[str, ...] = ("id",)
    required: tuple[str, ...] = ()
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    non_negative: tuple[str, ...] = ()
    positive: tuple[str, ...] = ()
    pii: tuple[str, ...] = ()
    """Source columns replaced by a salted SHA-256 `<col>_hash`."""
    lowercase: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.columns]

    def source_column(self, silver_name: str) -> str:
        return silver_name[:-5] if silver_name.endswith("_hash") else silver_name

    def with_source_types(self, source_types: dict[str, str]) -> SilverTable:
        """This table with its decimals widened to what the source now holds (a source
        `ALTER ... MODIFY price DECIMAL(14,4)` must not be rounded back to 2 places).
        `source_types`: the catalog's column types (`decimal(14,4)`)."""
        columns = []
        for name, typ in self.columns:
            mine = parse_numeric(typ)
            theirs = parse_numeric(source_types.get(self.source_column(name), ""))
            if mine and theirs and not mine.covers(theirs):
                wide = mine.union(theirs)
                if wide.precision > MAX_PRECISION:
                    raise DecimalTooWideError(f"{self.name}.{name}", wide)
                typ = f"decimal({wide.precision},{wide.scale})"
            columns.append((name, typ))
        return replace(self, columns=tuple(columns))


TABLES: dict[str, SilverTable] = {t.name: t for t in (
    SilverTable(
        "customers",
        (("id", "int"), ("name", "string"), ("email_hash", "string"),
         ("phone_hash", "string"), ("city", "string"), ("country", "string"),
         ("created_at", "timestamp"), ("updated_at", "timestamp")),
        required=("name", "email", "city", "country", "created_at", "updated_at"),
        pii=("email", "phone")),
    SilverTable(
        "products",
        (("id", "int"), ("name", "string"), ("category", "string"),
         ("price", "decimal(12,2)"), ("active", "boolean"), ("updated_at", "timestamp")),
        required=("name", "category", "price", "updated_at"), non_negative=("price",)),
    SilverTable(
        "orders",
        (("id", "int"), ("customer_id", "int"), ("status", "string"), ("platform", "string"),
         ("payment_method", "string"), ("order_ts", "timestamp"),
         ("updated_at", "timestamp")),
        required=("customer_id", "status", "platform", "payment_method", "order_ts",
                  "updated_at"),
        enums={"status": ORDER_STATUSES, "platform": PLATFORMS}, lowercase=("status",)),
    SilverTable(
        "order_items",
        (("id", "int"), ("order_id", "int"), ("product_id", "int"), ("quantity", "int"),
         ("unit_price", "decimal(12,2)")),
        required=("order_id", "product_id", "quantity", "unit_price"),
        positive=("quantity",), non_negative=("unit_price",)),
)}
