"""The crawler's schema inference and versioning, with the catalog and S3 faked in memory."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipeline.catalog import crawler, files
from pipeline.catalog.crawler import CrawlResult, _crawl_table, _merge, glue_type
from pipeline.cdc.format import change_seq, encode, write_order
from pipeline.config import Settings, load_settings

pytestmark = pytest.mark.unit
EXPECTED = Path(__file__).parent / "expected"

BUCKET = "shoplake-bronze"
LOAD = "shop/orders/LOAD00000001.parquet"
CDC1 = "shop/orders/20261126-1134011234.parquet"
CDC2 = "shop/orders/20261126-1200000000.parquet"

ORDERS = [("Op", "string"), ("commit_ts", "string"), ("id", "bigint"),
          ("customer_id", "bigint"), ("status", "string"), ("platform", "string"),
          ("payment_method", "string"), ("order_ts", "timestamp"), ("updated_at", "timestamp"),
          ("AR_H_CHANGE_SEQ", "string")]
"""The orders table as the CDC writes it: Op and commit time first, the change sequence last."""

ORDERS_WITH_DISCOUNT = ORDERS[:-1] + [("discount", "decimal(12,2)")] + ORDERS[-1:]
"""The CDC's layout after `ALTER TABLE orders ADD discount DECIMAL(12,2)`."""


class FakeCatalog:
    """The S3 seams of the crawler, in memory; everything round-trips through JSON as in S3."""

    def __init__(self) -> None:
        self.tables: dict[str, str] = {}
        self.indexes: dict[str, str] = {}
        self.schemas: dict[str, tuple[list[tuple[str, str]], int]] = {}
        self.reads: list[str] = []
        self.versions: dict[str, list[bool]] = {}
        """Per table, whether each put asked Glue to archive a new version."""

    def find_table(self, settings: Settings, table: str,
                   database: str | None = None) -> dict[str, Any] | None:
        raw = self.tables.get(table)
        return json.loads(raw) if raw else None

    def put_table(self, settings: Settings, entry: dict[str, Any],
                  new_version: bool = True) -> None:
        self.tables[entry["Name"]] = json.dumps(entry, default=str)
        self.versions.setdefault(entry["Name"], []).append(new_version)

    def get_part(self, settings: Settings, table: str, part: str) -> Any | None:
        raw = self.indexes.get(f"{table}/{part}")
        return json.loads(raw) if raw else None

    def put_part(self, settings: Settings, table: str, part: str, value: Any) -> None:
        self.indexes[f"{table}/{part}"] = json.dumps(value)

    def drop_parts(self, settings: Settings, table: str) -> None:
        self.indexes = {k: v for k, v in self.indexes.items() if not k.startswith(f"{table}/")}

    def file_schema(self, settings: Settings, bucket: str,
                    key: str) -> tuple[list[tuple[str, str]], int]:
        assert bucket == BUCKET
        self.reads.append(key)
        return self.schemas[key]

    def entry(self, table: str) -> dict[str, Any]:
        return json.loads(self.tables[table])

    def index(self, table: str) -> dict[str, Any]:
        """Every file's entry, from the head and the day shards, as one mapping."""
        out = dict(json.loads(self.indexes[f"{table}/head"])["files"])
        for part, raw in sorted(self.indexes.items()):
            if part.startswith(f"{table}/cdc/"):
                out.update(json.loads(raw))
        return dict(sorted(out.items(), key=lambda kv: write_order(kv[0])))

    def head(self, table: str) -> dict[str, Any]:
        return json.loads(self.indexes[f"{table}/head"])


@pytest.fixture
def settings() -> Settings:
    return load_settings(environ={})


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> FakeCatalog:
    """The catalog store faked; files are still read by the real `_file_schema`."""
    fake = FakeCatalog()
    monkeypatch.setattr(crawler, "find_table", fake.find_table)
    monkeypatch.setattr(crawler, "put_table", fake.put_table)
    monkeypatch.setattr(files, "get_part", fake.get_part)
    monkeypatch.setattr(files, "put_part", fake.put_part)
    monkeypatch.setattr(crawler, "drop_parts", fake.drop_parts)
    return fake


@pytest.fixture
def catalog(monkeypatch: pytest.MonkeyPatch, store: FakeCatalog) -> FakeCatalog:
    """The store faked, and each file's schema taken from `catalog.schemas`."""
    monkeypatch.setattr(crawler, "_file_schema", store.file_schema)
    return store


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> type[datetime]:
    """Pins `datetime.now` inside the crawler; set `clock.at` to move time."""

    class Clock(datetime):
        at = datetime(2026, 11, 26, 11, 40, tzinfo=UTC)

        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return cls.at

    monkeypatch.setattr(crawler, "datetime", Clock)
    return Clock


def lister_of(bronze: dict[str, str], listed: list[tuple[str, tuple[str, ...]]] | None = None
              ) -> crawler.Lister:
    """The bounded listing of `bronze` (key -> ETag), as S3 gives it: the full-load files,
    the keys after `after`, and those of `also` that exist; each call noted in `listed`."""
    def lister(after: str, also: Any) -> dict[str, str]:
        also = tuple(also)
        if listed is not None:
            listed.append((after, also))
        if not after:
            return dict(bronze)
        out = {k: v for k, v in bronze.items() if "/LOAD" in k or k > after}
        out.update({k: bronze[k] for k in also if k in bronze})
        return out
    return lister


def crawl_orders(settings: Settings, bronze: dict[str, str],
                 listed: list[tuple[str, tuple[str, ...]]] | None = None) -> CrawlResult:
    return _crawl_table(settings, BUCKET, "shop", "orders", lister_of(bronze, listed))


def columns_of(entry: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["Name"], c["Type"]) for c in entry["StorageDescriptor"]["Columns"]]


# -- glue_type ------------------------------------------------------------------------------
@pytest.mark.parametrize(("arrow", "glue"), [
    (pa.int64(), "bigint"),
    (pa.decimal128(12, 2), "decimal(12,2)"),
    (pa.decimal128(10, 0), "decimal(10,0)"),
    (pa.float64(), "double"),
    (pa.string(), "string"),
    (pa.timestamp("us"), "timestamp"),
    (pa.date32(), "date"),
    (pa.bool_(), "boolean"),
    (pa.null(), "string"),  # an all-null CSV column: pyarrow cannot tell its type
])
def test_glue_type_of_every_type_the_cdc_writes(arrow: pa.DataType, glue: str) -> None:
    assert glue_type(arrow) == glue


# -- _merge ---------------------------------------------------------------------------------
def test_merge_unions_by_name_in_order_of_first_appearance() -> None:
    got = _merge([("Op", "string"), ("id", "bigint")],
                 [("id", "bigint"), ("coupon", "string"), ("Op", "string"), ("qty", "bigint")])
    assert got == [("Op", "string"), ("id", "bigint"), ("coupon", "string"), ("qty", "bigint")]


def test_merge_into_nothing_keeps_the_file_order() -> None:
    assert _merge([], ORDERS) == ORDERS


def test_merge_a_later_files_type_wins() -> None:
    got = _merge([("id", "bigint"), ("price", "decimal(10,2)")],
                 [("id", "bigint"), ("price", "decimal(12,2)")])
    assert got == [("id", "bigint"), ("price", "decimal(12,2)")]


def test_merge_an_all_null_csv_column_does_not_override_a_known_type() -> None:
    got = _merge([("id", "bigint"), ("order_ts", "timestamp")],
                 [("id", "string"), ("order_ts", "string"), ("note", "string")])
    assert got == [("id", "bigint"), ("order_ts", "timestamp"), ("note", "string")]


def test_merge_a_typed_column_replaces_one_first_seen_as_string() -> None:
    # The first file had only NULLs in `order_ts`; the next one knows better.
    got = _merge([("order_ts", "string")], [("order_ts", "timestamp")])
    assert got == [("order_ts", "timestamp")]


# -- _file_schema, with S3 faked at the client ----------------------------------------------
class FakeS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 (boto3's names)
        return {"Body": io.BytesIO(self.objects[f"{Bucket}/{Key}"])}


def serve(monkeypatch: pytest.MonkeyPatch, objects: dict[str, bytes]) -> None:
    s3 = FakeS3(objects)
    monkeypatch.setattr(crawler, "aws_client", lambda settings, service: s3)


ORDER_TYPES = (pa.string(), pa.string(), pa.int64(), pa.int64(), pa.string(), pa.string(),
               pa.string(), pa.timestamp("us"), pa.timestamp("us"), pa.string())


def order_rows(first_id: int, n: int) -> list[tuple[Any, ...]]:
    at = datetime(2026, 11, 26, 11, 34, 1, 123456)
    return [("I", "2026-11-26 11:34:01.000000", first_id + i, 7, "placed", "web", "card",
             at, at, change_seq(3, 4567, i)) for i in range(n)]


def test_file_schema_of_parquet_reads_the_footer(
        monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    names = [n for n, _ in ORDERS]
    body = encode(names, ORDER_TYPES, order_rows(1, 3), "parquet", "\\N")
    serve(monkeypatch, {f"{BUCKET}/{LOAD}": body})
    assert crawler._file_schema(settings, BUCKET, LOAD) == (ORDERS, 3)


def test_file_schema_of_csv_keeps_dms_columns_as_strings_and_nulls_as_string(
        monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    names = ["Op", "commit_ts", "id", "amount", "coupon", "order_ts", "AR_H_CHANGE_SEQ"]
    at = datetime(2026, 11, 26, 11, 34, 1, 123456)
    rows = [("I", "2026-11-26 11:34:01.000000", 1, "9.99", None, at, change_seq(3, 4567, 0)),
            ("U", "2026-11-26 11:34:02.000000", 2, "0.50", None, at, change_seq(3, 4890, 0))]
    key = "shop/orders/LOAD00000001.csv"
    serve(monkeypatch, {f"{BUCKET}/{key}": encode(names, [], rows, "csv", "\\N")})
    assert crawler._file_schema(settings, BUCKET, key) == (
        [("Op", "string"), ("commit_ts", "string"), ("id", "bigint"), ("amount", "double"),
         ("coupon", "string"), ("order_ts", "timestamp"), ("AR_H_CHANGE_SEQ", "string")], 2)


# -- _crawl_table ---------------------------------------------------------------------------
def test_first_crawl_creates_version_1(catalog: FakeCatalog, settings: Settings,
                                       caplog: pytest.LogCaptureFixture) -> None:
    catalog.schemas = {LOAD: (ORDERS, 3), CDC1: (ORDERS, 2)}
    caplog.set_level(logging.WARNING, logger="pipeline.catalog.crawler")
    result = crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"'})
    assert result == CrawlResult("orders", 1, 10, 5, 2, True)
    assert catalog.entry("orders")["Parameters"]["schemaVersion"] == "1"
    assert columns_of(catalog.entry("orders")) == ORDERS
    assert sorted(catalog.reads) == [CDC1, LOAD]
    assert catalog.index("orders") == {
        LOAD: {"etag": '"e1"', "rows": 3, "columns": [list(c) for c in ORDERS]},
        CDC1: {"etag": '"e2"', "rows": 2, "columns": [list(c) for c in ORDERS]},
    }
    assert caplog.records == []  # a new table is not a schema change


def test_second_crawl_of_the_same_files_changes_nothing_and_reads_nothing(
        catalog: FakeCatalog, settings: Settings) -> None:
    catalog.schemas = {LOAD: (ORDERS, 3), CDC1: (ORDERS, 2)}
    files = {LOAD: '"e1"', CDC1: '"e2"'}
    crawl_orders(settings, files)
    catalog.reads.clear()
    result = crawl_orders(settings, files)
    assert result == CrawlResult("orders", 1, 10, 5, 2, False)
    assert catalog.reads == []
    assert catalog.entry("orders")["Parameters"]["schemaVersion"] == "1"
    assert catalog.versions["orders"] == [True, False], "no Glue version without a change"


def test_a_new_file_with_a_new_column_gives_version_2_and_a_warning(
        catalog: FakeCatalog, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    catalog.schemas = {LOAD: (ORDERS, 3), CDC1: (ORDERS, 2), CDC2: (ORDERS_WITH_DISCOUNT, 4)}
    crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"'})
    catalog.reads.clear()
    caplog.set_level(logging.WARNING, logger="pipeline.catalog.crawler")
    result = crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"', CDC2: '"e3"'})
    assert result == CrawlResult("orders", 2, 11, 9, 3, True)
    assert catalog.reads == [CDC2]
    assert columns_of(catalog.entry("orders")) == ORDERS + [("discount", "decimal(12,2)")]
    assert catalog.entry("orders")["Parameters"]["schemaVersion"] == "2"
    assert catalog.entry("orders")["Parameters"]["schemaVersion"] == "2"
    assert catalog.versions["orders"] == [True, True], "a Glue version per schema change"
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "schema of `shop_bronze.orders` changed (version 2): "
                    "added ['discount'], removed none, retyped none")]


def test_a_type_change_gives_a_new_version_and_says_so(
        catalog: FakeCatalog, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    before = [("Op", "string"), ("commit_ts", "string"), ("price", "decimal(10,2)"),
              ("AR_H_CHANGE_SEQ", "string")]
    after = [("Op", "string"), ("commit_ts", "string"), ("price", "decimal(12,2)"),
             ("AR_H_CHANGE_SEQ", "string")]
    catalog.schemas = {CDC1: (before, 1), CDC2: (after, 1)}
    crawl_orders(settings, {CDC1: '"e1"'})
    caplog.set_level(logging.WARNING, logger="pipeline.catalog.crawler")
    result = crawl_orders(settings, {CDC1: '"e1"', CDC2: '"e2"'})
    assert result == CrawlResult("orders", 2, 4, 2, 2, True)
    assert columns_of(catalog.entry("orders")) == after
    assert [r.getMessage() for r in caplog.records] == [
        "schema of `shop_bronze.orders` changed (version 2): added none, removed none, "
        "retyped ['price decimal(10,2) -> decimal(12,2)']"]


def test_the_newest_files_type_wins_over_the_full_load(
        catalog: FakeCatalog, settings: Settings) -> None:
    before = [("Op", "string"), ("commit_ts", "string"), ("price", "decimal(10,2)"),
              ("AR_H_CHANGE_SEQ", "string")]
    after = [("Op", "string"), ("commit_ts", "string"), ("price", "decimal(12,2)"),
             ("AR_H_CHANGE_SEQ", "string")]
    catalog.schemas = {LOAD: (before, 1), CDC1: (after, 1)}  # CDC1 was written after LOAD
    crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"'})
    assert columns_of(catalog.entry("orders")) == after


def test_a_changed_etag_makes_the_crawler_forget_its_index(
        catalog: FakeCatalog, settings: Settings) -> None:
    catalog.schemas = {LOAD: (ORDERS, 3), CDC1: (ORDERS, 2)}
    crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"'})
    catalog.reads.clear()
    catalog.schemas[LOAD] = (ORDERS, 7)  # a new full load reuses the name
    result = crawl_orders(settings, {LOAD: '"e9"', CDC1: '"e2"'})
    assert sorted(catalog.reads) == [CDC1, LOAD]
    assert result == CrawlResult("orders", 1, 10, 9, 2, False)
    assert catalog.index("orders")[LOAD]["etag"] == '"e9"'
    assert catalog.entry("orders")["Parameters"]["recordCount"] == "9"


def test_a_vanished_file_makes_the_crawler_forget_its_index(
        catalog: FakeCatalog, settings: Settings) -> None:
    catalog.schemas = {LOAD: (ORDERS, 3), CDC1: (ORDERS, 2)}
    crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"'})
    catalog.reads.clear()
    result = crawl_orders(settings, {LOAD: '"e1"'})
    assert catalog.reads == [LOAD]
    assert result == CrawlResult("orders", 1, 10, 3, 1, False)
    assert list(catalog.index("orders")) == [LOAD]


def test_an_index_without_a_catalog_entry_is_not_trusted(
        catalog: FakeCatalog, settings: Settings) -> None:
    catalog.schemas = {LOAD: (ORDERS, 3)}
    crawl_orders(settings, {LOAD: '"e1"'})
    del catalog.tables["orders"]  # someone dropped the table, the crawler's memory stayed
    catalog.reads.clear()
    result = crawl_orders(settings, {LOAD: '"e1"'})
    assert catalog.reads == [LOAD]
    assert result == CrawlResult("orders", 1, 10, 3, 1, True)


def test_csv_files_are_classified_csv(catalog: FakeCatalog, settings: Settings) -> None:
    key = "shop/orders/LOAD00000001.csv"
    catalog.schemas = {key: (ORDERS, 3)}
    crawl_orders(settings, {key: '"e1"'})
    entry = catalog.entry("orders")
    assert entry["Parameters"]["classification"] == "csv"
    assert entry["StorageDescriptor"]["InputFormat"] == "org.apache.hadoop.mapred.TextInputFormat"


# -- the catalog entry, against an expected file ---------------------------------------------
def test_catalog_entry_matches_the_expected_file(
        monkeypatch: pytest.MonkeyPatch, store: FakeCatalog, settings: Settings,
        clock: type[datetime]) -> None:
    # Real DMS-format Parquet files, read by the real `_file_schema` through a fake S3.
    names = [n for n, _ in ORDERS]
    serve(monkeypatch, {
        f"{BUCKET}/{LOAD}": encode(names, ORDER_TYPES, order_rows(1, 3), "parquet", "\\N"),
        f"{BUCKET}/{CDC1}": encode(names, ORDER_TYPES, order_rows(4, 2), "parquet", "\\N"),
    })
    result = crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"'})
    assert result == CrawlResult("orders", 1, 10, 5, 2, True)
    assert store.entry("orders") == json.loads((EXPECTED / "orders_table.json").read_text())


def test_the_crawler_leaves_glues_own_fields_to_glue(
        catalog: FakeCatalog, settings: Settings, clock: type[datetime]) -> None:
    """CreateTime, UpdateTime and VersionId are Glue's (moto's here): the crawler's entry
    carries none, so a recrawl an hour later puts the very same entry."""
    catalog.schemas = {LOAD: (ORDERS, 3), CDC1: (ORDERS, 2)}
    crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"'})
    first = catalog.entry("orders")
    clock.at = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)  # type: ignore[attr-defined]
    crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"'})
    assert catalog.entry("orders") == first == json.loads(
        (EXPECTED / "orders_table.json").read_text())
    assert not {"CreateTime", "UpdateTime", "VersionId", "CatalogId"} & set(first)


def test_a_file_without_the_dms_columns_is_rejected_not_cataloged(
        catalog: FakeCatalog, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    junk = "shop/orders/20261126-1300000000.csv"
    catalog.schemas = {LOAD: (ORDERS, 3), junk: ([("colour", "string")], 1)}
    caplog.set_level(logging.WARNING, logger="pipeline.catalog.crawler")
    result = crawl_orders(settings, {LOAD: '"e1"', junk: '"e2"'})
    assert columns_of(catalog.entry("orders")) == ORDERS, "junk columns never reach the catalog"
    assert result.rejected == ((junk, "lacks the DMS column(s) AR_H_CHANGE_SEQ, Op, commit_ts "
                                      "(its columns: colour)"),)
    assert catalog.index("orders")[junk]["blocks"] is False
    assert f"rejected s3://shoplake-bronze/{junk} (table `orders`)" in caplog.text


def test_a_foreign_file_name_is_rejected_without_being_read(
        catalog: FakeCatalog, settings: Settings) -> None:
    catalog.schemas = {LOAD: (ORDERS, 3)}
    result = crawl_orders(settings, {LOAD: '"e1"', "shop/orders/export.csv": '"e2"'})
    assert [k for k, _ in result.rejected] == ["shop/orders/export.csv"]
    assert "shop/orders/export.csv" not in catalog.reads


# -- bounded: the listing and the index do not grow with history ----------------------------
CDC3 = "shop/orders/20261127-0800000000.parquet"


def test_a_later_crawl_lists_only_after_the_newest_file_it_saw(
        catalog: FakeCatalog, settings: Settings) -> None:
    catalog.schemas = {LOAD: (ORDERS, 3), CDC1: (ORDERS, 2), CDC2: (ORDERS, 1),
                       CDC3: (ORDERS, 4)}
    listed: list[tuple[str, tuple[str, ...]]] = []
    crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"'}, listed)
    catalog.reads.clear()
    result = crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"', CDC2: '"e3"', CDC3: '"e4"'},
                          listed)
    assert [after for after, _ in listed] == ["", CDC1], "once each, the second bounded"
    assert catalog.reads == [CDC2, CDC3]
    assert result == CrawlResult("orders", 1, 10, 10, 4, False)
    head = catalog.head("orders")
    assert list(head["files"]) == [LOAD], "change files live in the day shards"
    assert (head["watermark"], head["watermark_etag"]) == (CDC3, '"e4"')
    assert sorted(k for k in catalog.indexes if k.startswith("orders/cdc/")) == [
        "orders/cdc/20261126", "orders/cdc/20261127"]


def test_an_index_in_the_old_layout_is_read_again_once(
        catalog: FakeCatalog, settings: Settings) -> None:
    catalog.schemas = {LOAD: (ORDERS, 3), CDC1: (ORDERS, 2)}
    crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"'})
    catalog.indexes = {"orders/head": json.dumps({LOAD: {"etag": '"e1"'}})}  # no "format"
    catalog.reads.clear()
    crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"'})
    assert sorted(catalog.reads) == [CDC1, LOAD]
    catalog.reads.clear()
    crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"'})
    assert catalog.reads == []


def test_a_removed_rejected_file_is_forgotten_without_reading_the_rest_again(
        catalog: FakeCatalog, settings: Settings) -> None:
    junk = "shop/orders/export.csv"
    catalog.schemas = {LOAD: (ORDERS, 3), CDC1: (ORDERS, 2)}
    result = crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"', junk: '"j"'})
    assert [k for k, _ in result.rejected] == [junk]
    catalog.reads.clear()
    result = crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"'})
    assert result.rejected == () and catalog.reads == []
    assert junk not in catalog.index("orders")


def test_a_replaced_rejected_file_is_read_again(
        catalog: FakeCatalog, settings: Settings) -> None:
    catalog.schemas = {LOAD: (ORDERS, 3), CDC1: ([("colour", "string")], 1), CDC2: (ORDERS, 1)}
    result = crawl_orders(settings, {LOAD: '"e1"', CDC1: '"bad"', CDC2: '"e3"'})
    assert [k for k, _ in result.rejected] == [CDC1]
    catalog.schemas[CDC1] = (ORDERS, 2)
    result = crawl_orders(settings, {LOAD: '"e1"', CDC1: '"good"', CDC2: '"e3"'})
    assert result.rejected == () and result.records == 6
    assert catalog.index("orders")[CDC1]["etag"] == '"good"'


def test_a_crawl_that_died_between_shard_and_head_counts_each_file_once(
        catalog: FakeCatalog, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog.schemas = {LOAD: (ORDERS, 3), CDC1: (ORDERS, 2), CDC2: (ORDERS, 5)}
    crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"'})
    real_put = catalog.put_part

    def dies_at_the_head(settings: Settings, table: str, part: str, value: Any) -> None:
        if part == "head":
            raise OSError("killed")
        real_put(settings, table, part, value)

    monkeypatch.setattr(files, "put_part", dies_at_the_head)
    bronze = {LOAD: '"e1"', CDC1: '"e2"', CDC2: '"e3"'}
    with pytest.raises(OSError):
        crawl_orders(settings, bronze)
    monkeypatch.setattr(files, "put_part", real_put)
    result = crawl_orders(settings, bronze)
    assert (result.records, result.files) == (10, 3)


def test_a_removed_rejected_watermark_file_does_not_make_the_crawler_read_all_again(
        catalog: FakeCatalog, settings: Settings) -> None:
    catalog.schemas = {LOAD: (ORDERS, 3), CDC1: (ORDERS, 2), CDC2: ([("colour", "string")], 1)}
    crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"', CDC2: '"bad"'})
    crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"'})  # the bad file removed
    catalog.reads.clear()
    result = crawl_orders(settings, {LOAD: '"e1"', CDC1: '"e2"'})
    assert catalog.reads == [] and result.rejected == ()


def test_a_key_behind_the_crawler_is_named_not_waited_for() -> None:
    entries = {LOAD: {"etag": '"e1"'}, CDC2: {"etag": '"e3"'}}
    keys = [LOAD, CDC1, CDC2, "shop/orders/.keep", "shop/orders/export.csv"]
    assert files.behind_the_crawler(keys, entries, CDC2) == [CDC1, "shop/orders/.keep"]
    assert files.behind_the_crawler(keys, entries, "") == []
