"""Every table of the `sales` schema, described once and rendered for Postgres and Redshift.

Types are portable names (`int`, `bigint`, `smallint`, `date`, `timestamp`, `boolean`,
`numeric(p,s)`, `string(n)` for text of up to n characters, `ascii(n)` for ASCII-only text
such as hex hashes); `ddl.py` maps them per engine. Redshift-only properties
(DISTSTYLE, DISTKEY, SORTKEY, ENCODE) and Postgres-only ones (indexes) live here too, so one
edit changes both renderings and a unit test keeps the committed files in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent / "sql"
"""Folder of the committed SQL: the two renderings and the hand-written procedures."""

POSTGRES_FILE = SQL_DIR / "postgres.sql"
"""The Postgres rendering of the model; `warehouse init` runs it."""

REDSHIFT_FILE = SQL_DIR / "redshift.sql"
"""The Redshift rendering of the model; documentation of the AWS shape, never run here."""

PROCEDURES_FILE = SQL_DIR / "procedures.sql"
"""Hand-written PL/pgSQL: helper functions, the fact procedures, the mart view."""

MERGES_FILE = SQL_DIR / "merges.sql"
"""The SCD2 merge procedures, rendered from `SCD2_DIMS` (`python -m pipeline.warehouse.ddl`)."""

SCHEMA = "sales"
"""Schema of the Gold layer, in Postgres as on Redshift."""

OPEN_END = "9999-12-31 00:00:00"
"""`record_end_ts` of a dimension's current version. Lookups treat a current version as
open-ended (`order_ts < record_end_ts OR is_current`), so an order stamped at the very
end of MySQL's range (9999-12-31 23:59:59.999999) still finds it."""

FIRST_START = "0001-01-01 00:00:00"
"""`record_start_ts` of a key's first version, so it covers every order placed before
(MySQL's DATETIME starts at 1000-01-01)."""

DIM_DATE_RANGE = (date(2020, 1, 1), date(2030, 12, 31))
"""Days `warehouse init` puts in dim_date; the fact procedure adds any order day outside."""

@dataclass(frozen=True)
class Load:
    """One load job: the staging tables it brings up to silver, the procedure that merges
    them into gold, and the state-machine step that runs it. One script
    (spark_jobs/load_gold.py) serves every load job; its name picks the row here."""

    job: str
    staging: tuple[str, ...]
    procedure: str
    step: str
    """The state's name stem in the state machine (`Load<step>`, `Merge<step>`)."""
    kind: str
    """`dim` loads run side by side; `fact` loads run after them, one after the other."""


LOADS: tuple[Load, ...] = (
    Load("load_dim_customer", ("stg_customers",), "sp_merge_dim_customer", "Customer", "dim"),
    Load("load_dim_product", ("stg_products",), "sp_merge_dim_product", "Product", "dim"),
    Load("load_fact_orders", ("stg_orders", "stg_order_items"), "sp_load_fact_orders",
         "FactOrders", "fact"),
    Load("load_fact_order_items", ("stg_orders", "stg_order_items"),
         "sp_load_fact_order_items", "FactOrderItems", "fact"),
)
"""The load jobs, in the order a run calls them (facts look up the dims' versions)."""

PROCEDURES = tuple(load.procedure for load in LOADS)
"""The load procedures, in the order a run calls them."""


def load_of(job: str) -> Load:
    """The load job `job` (a ValueError names the known ones)."""
    for load in LOADS:
        if load.job == job:
            return load
    raise ValueError(f"`{job}` is not a load job; load jobs: "
                     f"{', '.join(load.job for load in LOADS)}")

_TYPE = re.compile(r"^(int|bigint|smallint|date|timestamp|boolean|numeric\(\d+,\d+\)|"
                   r"(?:string|ascii)\(\d+\))$")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True
    identity: bool = False
    default: str | None = None
    encode: str | None = None
    """Redshift compression; None derives it from the type (see `Table.encoding`)."""

    def __post_init__(self) -> None:
        if not _TYPE.match(self.type):
            raise ValueError(f"column `{self.name}` has unknown portable type `{self.type}`")


@dataclass(frozen=True)
class Index:
    """A Postgres index; Redshift has none (its sort keys do that job)."""

    name: str
    columns: tuple[str, ...]
    unique: bool = False
    where: str | None = None


@dataclass(frozen=True)
class Table:
    name: str
    layer: str
    doc: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    diststyle: str
    distkey: str | None = None
    sortkey: tuple[str, ...] = ()
    indexes: tuple[Index, ...] = field(default=())

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def encoding(self, column: Column) -> str:
        """Explicit ENCODE, else RAW for the leading sort key column (so zone maps stay
        sharp, as AWS advises), AZ64 for numbers and times, ZSTD for the rest."""
        if column.encode:
            return column.encode
        if self.sortkey and column.name == self.sortkey[0]:
            return "raw"
        if column.type.split("(")[0] in ("int", "bigint", "smallint", "date", "timestamp",
                                         "numeric"):
            return "az64"
        return "zstd"


def _c(name: str, type_: str, nullable: bool = True) -> Column:
    return Column(name, type_, nullable=nullable)


def _key(name: str) -> Column:
    return Column(name, "int", nullable=False)


LOADED_RUN = Column("loaded_run", "ascii(64)")
"""The pipeline run (execution name) that wrote the row's current values: a gold row traces
to its run, and the run to its silver snapshot (sales.load_state, the silver pointer)."""


CHANGE_SEQ = Column("change_seq", "ascii(35)")
"""The source change's position in the binlog (DMS AR_H_CHANGE_SEQ: file, offset, row; it
sorts as text). Staging carries it per row; a dimension version keeps the one of the change
that opened it, so versions follow the log's order, not a column the application may set."""

COMMIT_TS = Column("commit_ts", "timestamp")
"""When the source committed the row's last change (DMS's TimestampColumnName)."""

GENERATION = Column("generation", "ascii(16)")
"""The bronze full load (snapshot) a version derives from. A re-snapshot (`shoplake cdc
reset`, or LocalStack forgetting bronze) starts a new one, and the dimension is rebuilt from
it as a fresh load would be: versions of another dataset never stay beside the new one."""


def _scd2(sk: str, natural: str, attributes: tuple[Column, ...]) -> tuple[Column, ...]:
    """Surrogate key, natural key, the tracked attributes, then the SCD2 bookkeeping (the
    columns after `loaded_run` came later: appended, so older warehouses gain them)."""
    return (Column(sk, "bigint", nullable=False, identity=True), _key(natural), *attributes,
            Column("attr_hash", "ascii(32)", nullable=False),
            Column("record_start_ts", "timestamp", nullable=False),
            Column("record_end_ts", "timestamp", nullable=False, default=f"'{OPEN_END}'"),
            Column("is_current", "boolean", nullable=False, default="true"), LOADED_RUN,
            CHANGE_SEQ, GENERATION)


def _scd2_indexes(name: str, natural: str) -> tuple[Index, ...]:
    # One current version per key is the invariant every merge relies on; let Postgres
    # enforce it. The second index serves the "version valid at order_ts" lookups.
    return (Index(f"ux_{name}_current", (natural,), unique=True, where="is_current"),
            Index(f"ix_{name}_validity", (natural, "record_start_ts")))


CUSTOMER_ATTRIBUTES = (_c("name", "string(100)"), _c("email_hash", "ascii(64)"),
                       _c("city", "string(100)"), _c("country", "string(100)"))
PRODUCT_ATTRIBUTES = (_c("name", "string(200)"), _c("category", "string(50)"),
                      _c("price", "numeric(12,2)"), _c("active", "boolean"))

TABLES: tuple[Table, ...] = (
    # Staging: the full current state of each silver table, truncated and COPY-loaded each
    # run. Keys and the columns facts cannot do without are NOT NULL so a bad hand-off fails
    # at COPY, naming the table, rather than deep inside a procedure.
    Table("stg_customers", "staging", "Silver customers, full current state (COPY target).",
          (_key("customer_id"), _c("name", "string(100)"), _c("email_hash", "ascii(64)"),
           _c("phone_hash", "ascii(64)"), _c("city", "string(100)"),
           _c("country", "string(100)"), _c("created_at", "timestamp"),
           _c("updated_at", "timestamp"), CHANGE_SEQ, COMMIT_TS),
          ("customer_id",), "KEY", "customer_id", ("customer_id",)),
    Table("stg_products", "staging", "Silver products, full current state (COPY target).",
          (_key("product_id"), _c("name", "string(200)"), _c("category", "string(50)"),
           _c("price", "numeric(12,2)"), _c("active", "boolean"), _c("updated_at", "timestamp"),
           CHANGE_SEQ, COMMIT_TS),
          ("product_id",), "KEY", "product_id", ("product_id",)),
    Table("stg_orders", "staging", "Silver orders, full current state (COPY target).",
          (_key("order_id"), _key("customer_id"), _c("status", "string(16)"),
           _c("platform", "string(16)"), _c("payment_method", "string(32)"),
           _c("order_ts", "timestamp", nullable=False), _c("updated_at", "timestamp")),
          ("order_id",), "KEY", "order_id", ("order_id",)),
    Table("stg_order_items", "staging", "Silver order items, full current state (COPY target).",
          (_key("order_item_id"), _key("order_id"), _key("product_id"), _key("quantity"),
           _c("unit_price", "numeric(12,2)", nullable=False)),
          ("order_item_id",), "KEY", "order_id", ("order_id",)),
    # Dimensions are small: a full copy on every Redshift node (DISTSTYLE ALL) makes every
    # join to a fact node-local.
    Table("dim_customer", "dimension", "Customers, SCD type 2 on name, email, city, country.",
          _scd2("customer_sk", "customer_id", CUSTOMER_ATTRIBUTES),
          ("customer_sk",), "ALL", None, ("customer_id", "record_start_ts"),
          _scd2_indexes("dim_customer", "customer_id")),
    Table("dim_product", "dimension", "Products, SCD type 2 on name, category, price, active.",
          _scd2("product_sk", "product_id", PRODUCT_ATTRIBUTES),
          ("product_sk",), "ALL", None, ("product_id", "record_start_ts"),
          _scd2_indexes("dim_product", "product_id")),
    Table("dim_date", "dimension", "One row per calendar day; date_key is yyyymmdd.",
          (_key("date_key"), _c("full_date", "date", nullable=False),
           _c("year", "smallint", nullable=False), _c("quarter", "smallint", nullable=False),
           _c("month", "smallint", nullable=False), _c("month_name", "string(9)", nullable=False),
           _c("day", "smallint", nullable=False), _c("day_of_week", "smallint", nullable=False),
           _c("is_weekend", "boolean", nullable=False)),
          ("date_key",), "ALL", None, ("date_key",)),
    # Both facts are distributed on order_id so the order/items join never moves rows, and
    # sorted on date_key because dashboards filter by date range.
    Table("fact_orders", "fact", "One row per order, with its items summed.",
          (_key("order_id"), _key("customer_id"), _c("customer_sk", "bigint"),
           _key("date_key"), _c("status", "string(16)"), _c("platform", "string(16)"),
           _c("payment_method", "string(32)"), _c("order_ts", "timestamp", nullable=False),
           _c("updated_at", "timestamp"), Column("item_count", "bigint", nullable=False),
           _c("order_total", "numeric(38,2)", nullable=False), LOADED_RUN),
          ("order_id",), "KEY", "order_id", ("date_key", "order_id"),
          (Index("ix_fact_orders_date_key", ("date_key",)),
           Index("ix_fact_orders_customer_id", ("customer_id",)))),
    Table("fact_order_items", "fact", "One row per order line, priced at the time of the order.",
          (_key("order_item_id"), _key("order_id"), _key("product_id"),
           _c("product_sk", "bigint"), _key("date_key"), _key("quantity"),
           _c("unit_price", "numeric(12,2)", nullable=False),
           _c("line_total", "numeric(22,2)", nullable=False), LOADED_RUN),
          ("order_item_id",), "KEY", "order_id", ("date_key", "order_id"),
          (Index("ix_fact_order_items_order_id", ("order_id",)),
           Index("ix_fact_order_items_date_key", ("date_key",)))),
)

LOAD_STATE = Table(
    "load_state", "meta", "Which silver snapshot each staging table holds, and which run "
    "loaded it, so unchanged input is not copied again (survives `warehouse init`).",
    (_c("staging", "string(64)", nullable=False), _c("silver_snapshot", "string(64)",
                                                      nullable=False),
     _c("rows", "bigint", nullable=False), _c("run_id", "string(128)"),
     _c("loaded_at", "timestamp", nullable=False), GENERATION),
    ("staging",), "ALL")
# Change-only loading. Each write of a staging table is a batch: a full copy (the first
# load, a re-snapshot, a rebuilt silver, `--full`) or a delta (the keys silver's change log
# names since the last batch: their rows replaced, the keys recorded in staged_keys). Each
# procedure records the last batch it merged, and merges only the keys of later batches,
# or everything when a full batch came since.
STAGING_BATCHES = Table(
    "staging_batches", "meta", "Each write of a staging table: a full copy or the changed "
    "keys only, which silver snapshot and change-log snapshot it brought, and how many rows.",
    (_c("batch", "bigint", nullable=False), _c("staging", "string(64)", nullable=False),
     _c("kind", "string(8)", nullable=False), _c("silver_snapshot", "string(64)"),
     _c("changes_snapshot", "string(64)"), _c("rows", "bigint", nullable=False),
     _c("keys", "bigint"), _c("run_id", "string(128)"),
     _c("loaded_at", "timestamp", nullable=False)),
    ("batch",), "ALL", None, ("batch",),
    (Index("ix_staging_batches_staging", ("staging", "batch")),))
STAGED_KEYS = Table(
    "staged_keys", "meta", "The keys each delta batch replaced in its staging table (present "
    "or deleted): what the procedures merge. For a dimension's keys, since: from when on "
    "its merge may have changed the key's versions (the facts re-point orders from then on). "
    "Pruned once every procedure has merged them.",
    (_c("staging", "string(64)", nullable=False), _c("batch", "bigint", nullable=False),
     _c("key", "bigint", nullable=False), _c("since", "timestamp")),
    ("staging", "batch", "key"), "ALL")
PROCEDURE_STATE = Table(
    "procedure_state", "meta", "The last staging batch each load procedure merged, whether "
    "it merged everything (full) or the changed keys only, and how many keys.",
    (_c("procedure", "string(64)", nullable=False), _c("consumed_batch", "bigint"),
     _c("full_batch", "bigint"), _c("dims_seen", "bigint"), _c("mode", "string(8)"),
     _c("keys", "bigint"), _c("called_at", "timestamp")),
    ("procedure",), "ALL")
RECONCILE_STATE = Table(
    "reconcile_state", "meta", "Up to which staging batch gold was last reconciled and "
    "found exact, and the UTC day of the last full reconcile: an incremental reconcile "
    "checks the keys of later batches only.",
    (_c("scope", "string(16)", nullable=False), _c("last_batch", "bigint"),
     _c("last_full_day", "date"), _c("last_full_run", "string(128)"),
     _c("checked_at", "timestamp")),
    ("scope",), "ALL")
# What the Pipeline Health dashboard reads. The dashboards see only the warehouse (as
# QuickSight sees only Redshift), so each run's report step records here what the run saw
# of the other layers and of Step Functions. Keyed by run: a report written again (a
# retry, `runs show`) replaces its own rows.
PIPELINE_RUNS = Table(
    "pipeline_runs", "meta", "The pipeline's Step Functions executions: status, trigger, "
    "duration, and the newest source change the run brought to gold.",
    (_c("run_id", "string(128)", nullable=False), _c("status", "string(16)", nullable=False),
     _c("trigger", "string(32)"), _c("started_at", "timestamp", nullable=False),
     _c("stopped_at", "timestamp"), _c("seconds", "numeric(12,1)"),
     _c("failed_state", "string(128)"), _c("error", "string(1000)"),
     _c("newest_change_ts", "timestamp"), _c("recorded_at", "timestamp", nullable=False)),
    ("run_id",), "ALL", None, ("started_at",))
PIPELINE_LAYER_ROWS = Table(
    "pipeline_layer_rows", "meta", "Rows of each source table in each layer (source, bronze "
    "change records, silver, gold) when a run ended.",
    (_c("run_id", "string(128)", nullable=False), _c("measured_at", "timestamp", nullable=False),
     _c("table_name", "string(64)", nullable=False), _c("layer", "string(16)", nullable=False),
     _c("rows", "bigint")),
    ("run_id", "table_name", "layer"), "ALL")
PIPELINE_HELD_ROWS = Table(
    "pipeline_held_rows", "meta", "Rows and bronze files held in quarantine when a run ended, "
    "by table and reason.",
    (_c("run_id", "string(128)", nullable=False), _c("measured_at", "timestamp", nullable=False),
     _c("table_name", "string(64)", nullable=False), _c("reason", "string(1000)",
                                                        nullable=False),
     _c("rows", "bigint", nullable=False)),
    ("run_id", "table_name", "reason"), "ALL")
TABLES = (*TABLES, LOAD_STATE, STAGING_BATCHES, STAGED_KEYS, PROCEDURE_STATE, RECONCILE_STATE,
          PIPELINE_RUNS, PIPELINE_LAYER_ROWS, PIPELINE_HELD_ROWS)

@dataclass(frozen=True)
class Scd2:
    """A dimension kept as SCD type 2 from a staging table: what its merge procedure and
    hash function are rendered from (`pipeline/warehouse/procedures.py`)."""

    dim: str
    staging: str
    key: str
    """The natural key, named alike in staging and in the dimension."""
    entity: str
    """The noun for one row (`customer`), in function names and messages."""
    attributes: tuple[Column, ...]
    """The tracked attributes: a change to any of them opens a new version."""

    @property
    def procedure(self) -> str:
        return f"sp_merge_{self.dim}"

    @property
    def hash_function(self) -> str:
        return f"fn_{self.entity}_hash"

    @property
    def surrogate_key(self) -> str:
        return table(self.dim).columns[0].name


SCD2_DIMS: tuple[Scd2, ...] = (
    Scd2("dim_customer", "stg_customers", "customer_id", "customer", CUSTOMER_ATTRIBUTES),
    Scd2("dim_product", "stg_products", "product_id", "product", PRODUCT_ATTRIBUTES),
)
"""The SCD2 dimensions, in the order a run merges them."""

STAGING_COLUMNS: dict[str, tuple[str, ...]] = {
    t.name: t.column_names for t in TABLES if t.layer == "staging"}
"""Column order of each staging table: the rows handed to `load_staging` follow it."""


def table(name: str) -> Table:
    """The model of `name` (bare or `sales.`-qualified); KeyError for unknown tables."""
    bare = name.removeprefix(f"{SCHEMA}.")
    for t in TABLES:
        if t.name == bare:
            return t
    raise KeyError(name)
