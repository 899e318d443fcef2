"""`shoplake crawl`: infer bronze tables' schemas from their files and catalog them."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.aws.clients import aws_client
from pipeline.aws.s3 import list_folders
from pipeline.catalog.files import FileIndex, drop_parts, list_table_files
from pipeline.catalog.store import find_table, put_table
from pipeline.cdc.format import (
    OP_COLUMN,
    SEQ_COLUMN,
    is_cdc_file,
    is_dms_file,
    is_load_key,
    write_order,
)
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


Lister = Callable[[str, Iterable[str]], dict[str, str]]
"""(after, also) -> key -> ETag: the table's full-load files, the files after `after` (all
of them when empty), and those of `also` that exist (`files.list_table_files`)."""


def crawl(settings: Settings, progress: Progress | None = None) -> list[CrawlResult]:
    """Catalog every table under the bronze bucket; only files not seen before are read,
    and only they (with the full-load files) are listed."""
    progress = progress or SilentProgress()
    bucket = settings.lake.bronze_bucket
    tables = [tuple(folder.rstrip("/").split("/"))
              for schema in list_folders(settings, bucket)
              if not schema.startswith("_")
              for folder in list_folders(settings, bucket, schema)]
    results = []
    progress.start("crawl", f"crawling s3://{bucket}", total=len(tables))
    for schema, table in sorted(tables):
        def lister(after: str, also: Iterable[str], schema: str = schema,
                   table: str = table) -> dict[str, str]:
            return list_table_files(settings, schema, table, after, also)

        results.append(_crawl_table(settings, bucket, schema, table, lister))
        progress.update("crawl", advance=1)
    changed = sum(r.changed for r in results)
    rejected = sum(len(r.rejected) for r in results)
    progress.finish("crawl", message=f"{len(results)} tables, {changed} schema change(s)"
                    + (f", {rejected} file(s) rejected" if rejected else ""))
    return results


def _stale(index: FileIndex, files: dict[str, str]) -> str | None:
    """Why the index no longer describes bronze, or None. A full-load file, the watermark
    file or a rejected file whose ETag changed means it was rewritten (a new full load
    reuses the names); a full-load or watermark file that vanished means bronze was
    rebuilt; a full-load file after change files were seen is a new full load."""
    for key, etag in index.known().items():
        if files.get(key) == etag:
            continue
        if key not in files and index.files.get(key, {}).get("rejected"):
            continue  # a rejected file that was removed: forgotten, below
        return f"s3://.../{key} {'changed' if key in files else 'vanished'}"
    if index.watermark and any(is_load_key(k) and k not in index.files for k in files):
        return "a new full load"
    return None


def _crawl_table(settings: Settings, bucket: str, schema: str, table: str,
                 lister: Lister) -> CrawlResult:
    entry = find_table(settings, table)
    index = FileIndex.load(settings, table) if entry else FileIndex(table)
    fresh = not (index.files or index.watermark)
    if not fresh:
        files = lister(index.watermark, [*index.files, index.watermark])
        if why := _stale(index, files):
            # Bronze was rebuilt or rewritten: start over from every file there is.
            LOG.info("bronze of `%s` changed under the crawler (%s): reading all its files",
                     table, why)
            fresh = True
    if fresh:
        index = FileIndex(table)
        drop_parts(settings, table)  # no stale shard entries of another bronze
        files = lister("", ())
    for key in [k for k in index.rejected() if k not in files]:
        index.forget(key)
    columns = [tuple(c) for c in index.columns]
    for key in sorted(files, key=write_order):
        if not index.is_new(key):
            continue
        try:
            cols, rows = _inspect(settings, bucket, key)
            seen = {"etag": files[key], "rows": rows, "columns": cols}
        except BadBronzeFile as bad:
            seen = {"etag": files[key], "rows": 0, "columns": [], "rejected": str(bad),
                    "blocks": bad.blocks, "at": datetime.now(UTC).isoformat()}
            LOG.warning("rejected s3://%s/%s (table `%s`): %s; it is left out of the "
                        "catalog%s", bucket, key, table, bad,
                        " and its table waits at it" if bad.blocks else "")
        index.add(settings, key, seen)
        if not seen.get("rejected"):
            columns = _merge(columns, [tuple(c) for c in cols], exact=key.endswith(".parquet"))
            index.csv = index.csv or not key.endswith(".parquet")
    index.columns = [list(c) for c in columns]
    rejected = tuple(sorted((k, v["rejected"]) for k, v in index.rejected().items()))
    # The table's schema version: Glue's own VersionId also counts updates that changed
    # only the counts (moto ignores SkipArchive), so the crawler keeps its own.
    version = int((entry.get("Parameters") or {}).get("schemaVersion", 0)) if entry else 0
    if not columns:  # nothing readable yet: no catalog entry rather than an empty schema
        index.save(settings)
        return CrawlResult(table, version, 0, 0, index.objects, False, rejected)
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
    classification = "csv" if index.csv else "parquet"
    put_table(settings, {
        "Name": table,
        "DatabaseName": settings.glue.database,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": classification, "recordCount": str(index.rows),
                       "objectCount": str(index.objects), "sourceSchema": schema,
                       "schemaVersion": str(version)},
        "StorageDescriptor": {
            "Columns": [{"Name": n, "Type": t} for n, t in columns],
            "Location": f"s3://{bucket}/{schema}/{table}/",
            "InputFormat": ("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
                            if classification == "parquet"
                            else "org.apache.hadoop.mapred.TextInputFormat"),
        },
        "PartitionKeys": [],
    }, new_version=changed)
    index.save(settings)
    return CrawlResult(table, version, len(columns), index.rows, index.objects, changed,
                       rejected)
