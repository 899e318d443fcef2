"""`shoplake crawl`: infer bronze tables' schemas from their files and catalog them."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.aws.clients import aws_client
from pipeline.aws.s3 import list_objects
from pipeline.catalog.store import find_table, load_file_index, put_table, save_file_index
from pipeline.cdc.format import OP_COLUMN, SEQ_COLUMN, is_cdc_file, is_dms_file, write_order
from pipeline.config import Settings
from pipeline.errors import first_line
from pipeline.progress import Progress, SilentProgress

LOG = logging.getLogger(__name__)

# Columns the CDC adds to every row; their types are fixed, not inferred.
_STRING_COLUMNS = {"Op", "AR_H_CHANGE_SEQ"}


@dataclass(frozen=True)
class CrawlResult:
    table: str
    version: int
    columns: int
    records: int
    files: int
    changed: bool
    rejected: tuple[tuple[str, str], ...] = ()
    """(key, what is wrong) of each file left out."""


def glue_type(t: pa.DataType) -> str:
    """Arrow type -> Glue/Hive type name."""
    if pa.types.is_int64(t):
        return "bigint"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_date(t):
        return "date"
    return "string"


def _file_schema(settings: Settings, bucket: str, key: str) -> tuple[list[tuple[str, str]], int]:
    """(columns, rows) of one bronze file. Parquet: the footer only; CSV: the whole file."""
    s3 = aws_client(settings, "s3")
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if key.endswith(".parquet"):
        meta = pq.read_metadata(io.BytesIO(body))
        schema = meta.schema.to_arrow_schema()
        return [(f.name, glue_type(f.type)) for f in schema], meta.num_rows
    import pyarrow.csv as pacsv

    text = body.decode("utf-8")
    header = next(csv.reader(io.StringIO(text)), [])
    table = pacsv.read_csv(
        io.BytesIO(body),
        convert_options=pacsv.ConvertOptions(
            null_values=[settings.cdc.csv_null_value], strings_can_be_null=True,
            column_types={c: pa.string() for c in header
                          if c in _STRING_COLUMNS or c == settings.cdc.timestamp_column}))
    return [(f.name, glue_type(f.type)) for f in table.schema], table.num_rows


def _merge(columns: list[tuple[str, str]], new: list[tuple[str, str]],
           exact: bool = False) -> list[tuple[str, str]]:
    """Union by name in order of first appearance; a later file's type wins for a name.

    `exact` files (Parquet) always carry their real type; a CSV column inferred as
    `string` may just be all NULL there, so it does not override a type already known.
    """
    merged = dict(columns)
    order = [n for n, _ in columns]
    for name, typ in new:
        if name not in merged:
            order.append(name)
        if exact or typ != "string" or name not in merged:
            merged[name] = typ
    return [(n, merged[n]) for n in order]


class BadBronzeFile(Exception):  # noqa: N818 - a verdict on a file, caught in this module
    """A bronze file the crawler refuses to catalog: unreadable, or not a DMS file.

    `blocks`: the file is part of the table's change stream (a DMS name) but cannot be
    read, so the jobs stop the table before it; foreign content is only left out."""

    def __init__(self, reason: str, blocks: bool = False) -> None:
        super().__init__(reason)
        self.blocks = blocks


def _inspect(settings: Settings, bucket: str, key: str) -> tuple[list[tuple[str, str]], int]:
    """The file's columns and rows, or BadBronzeFile saying what is wrong with it."""
    name = key.rsplit("/", 1)[-1]
    if not is_dms_file(name):
        raise BadBronzeFile("not a DMS file name (LOAD00000001.parquet, "
                            "20261126-1134010000.parquet, or .csv)")
    try:
        columns, rows = _file_schema(settings, bucket, key)
    except (pa.ArrowException, UnicodeDecodeError, csv.Error, ValueError, OSError) as exc:
        raise BadBronzeFile(f"unreadable {name.rsplit('.', 1)[-1]} file "
                            f"({first_line(exc)})", blocks=True) from exc
    names = {n for n, _ in columns}
    required = {SEQ_COLUMN, settings.cdc.timestamp_column}
    if is_cdc_file(name) or settings.cdc.include_op_for_full_load:
        required.add(OP_COLUMN)
    missing = sorted(required - names)
    if missing:
        raise BadBronzeFile(f"lacks the DMS column(s) {', '.join(missing)} "
                            f"(its columns: {', '.join(sorted(names))[:200]})")
    return columns, rows


def crawl(settings: Settings, progress: Progress | None = None) -> list[CrawlResult]:
    """Catalog every table under the bronze bucket; only files not seen before are read."""
    progress = progress or SilentProgress()
    bucket = settings.lake.bronze_bucket
    by_table: dict[tuple[str, str], dict[str, str]] = {}
    for key, etag in list_objects(settings, bucket).items():
        parts = key.split("/")
        if len(parts) == 3 and not parts[0].startswith("_"):
            by_table.setdefault((parts[0], parts[1]), {})[key] = etag
    results = []
    progress.start("crawl", f"crawling s3://{bucket}", total=len(by_table))
    for (schema, table), files in sorted(by_table.items()):
        results.append(_crawl_table(settings, bucket, schema, table, files))
        progress.update("crawl", advance=1)
    changed = sum(r.changed for r in results)
    rejected = sum(len(r.rejected) for r in results)
    progress.finish("crawl", message=f"{len(results)} tables, {changed} schema change(s)"
                    + (f", {rejected} file(s) rejected" if rejected else ""))
    return results


def _crawl_table(settings: Settings, bucket: str, schema: str, table: str,
                 files: dict[str, str]) -> CrawlResult:
    entry = find_table(settings, table)
    seen: dict[str, Any] = load_file_index(settings, table) if entry else {}
    # A file whose ETag changed, or that vanished, means bronze was rebuilt: start over.
    if any(files.get(k) != v["etag"] for k, v in seen.items()):
        seen = {}
    columns: list[tuple[str, str]] = []
    rejected = []
    for key in sorted(files, key=write_order):
        if key not in seen:
            try:
                cols, rows = _inspect(settings, bucket, key)
                seen[key] = {"etag": files[key], "rows": rows, "columns": cols}
            except BadBronzeFile as bad:
                seen[key] = {"etag": files[key], "rows": 0, "columns": [],
                             "rejected": str(bad), "blocks": bad.blocks,
                             "at": datetime.now(UTC).isoformat()}
                LOG.warning("rejected s3://%s/%s (table `%s`): %s; it is left out of the "
                            "catalog%s", bucket, key, table, bad,
                            " and its table waits at it" if bad.blocks else "")
        if seen[key].get("rejected"):
            rejected.append((key, seen[key]["rejected"]))
            continue  # never part of the schema
        columns = _merge(columns, [tuple(c) for c in seen[key]["columns"]],
                         exact=key.endswith(".parquet"))
    version = int(entry["VersionId"]) if entry else 0
    accepted = [k for k in files if not seen[k].get("rejected")]
    if not columns:  # nothing readable yet: no catalog entry rather than an empty schema
        save_file_index(settings, table, seen)
        return CrawlResult(table, version, 0, 0, len(files), False, tuple(rejected))
    old_columns = ([(c["Name"], c["Type"]) for c in entry["StorageDescriptor"]["Columns"]]
                   if entry else None)
    changed = old_columns != columns
    if changed:
        version += 1
        if entry:
            before, after = dict(old_columns or []), dict(columns)
            added = [n for n in after if n not in before]
            removed = [n for n in before if n not in after]
            retyped = [f"{n} {before[n]} -> {after[n]}" for n in after
                       if n in before and before[n] != after[n]]
            LOG.warning("schema of `%s.%s` changed (version %d): added %s, removed %s, "
                        "retyped %s", settings.glue.database, table, version,
                        added or "none", removed or "none", retyped or "none")
    classification = "parquet" if all(k.endswith(".parquet") for k in accepted) else "csv"
    records = sum(v["rows"] for v in seen.values())
    now = datetime.now(UTC).isoformat()
    put_table(settings, {
        "Name": table,
        "DatabaseName": settings.glue.database,
        "TableType": "EXTERNAL_TABLE",
        "CreateTime": entry["CreateTime"] if entry else now,
        "UpdateTime": now,
        "VersionId": str(version),
        "Parameters": {"classification": classification, "recordCount": str(records),
                       "objectCount": str(len(files)), "sourceSchema": schema},
        "StorageDescriptor": {
            "Columns": [{"Name": n, "Type": t} for n, t in columns],
            "Location": f"s3://{bucket}/{schema}/{table}/",
            "InputFormat": ("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
                            if classification == "parquet"
                            else "org.apache.hadoop.mapred.TextInputFormat"),
        },
        "PartitionKeys": [],
    })
    save_file_index(settings, table, seen)
    return CrawlResult(table, version, len(columns), records, len(files), changed,
                       tuple(rejected))
