"""Catalog tables as JSON objects in S3, in the shape of Glue's GetTable response."""

from __future__ import annotations

from typing import Any

from pipeline.aws.s3 import get_json, list_objects, put_json
from pipeline.catalog.files import FileIndex
from pipeline.config import Settings
from pipeline.errors import TerminalError


def _key(database: str, table: str) -> str:
    return f"glue/catalog/{database}/{table}.json"


def get_table(settings: Settings, table: str, database: str | None = None) -> dict[str, Any]:
    """The catalog entry of `table`; raises with a hint when the crawler has not run."""
    database = database or settings.glue.database
    entry = get_json(settings, settings.lake.artifacts_bucket, _key(database, table))
    if entry is None:
        raise TerminalError(f"table `{database}.{table}` is not in the catalog",
                            hint="run `shoplake crawl` after the CDC has written bronze")
    return entry


def find_table(settings: Settings, table: str, database: str | None = None
               ) -> dict[str, Any] | None:
    return get_json(settings, settings.lake.artifacts_bucket,
                    _key(database or settings.glue.database, table))


def put_table(settings: Settings, entry: dict[str, Any]) -> None:
    put_json(settings, settings.lake.artifacts_bucket,
             _key(entry["DatabaseName"], entry["Name"]), entry, indent=1)


def list_tables(settings: Settings, database: str | None = None) -> list[dict[str, Any]]:
    database = database or settings.glue.database
    keys = list_objects(settings, settings.lake.artifacts_bucket, f"glue/catalog/{database}/")
    return [get_table(settings, k.rsplit("/", 1)[-1][:-5], database) for k in sorted(keys)]


def columns(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, Glue type) pairs of a catalog entry."""
    return [(c["Name"], c["Type"]) for c in entry["StorageDescriptor"]["Columns"]]


def rejected_files(settings: Settings, table: str) -> dict[str, dict[str, Any]]:
    """Bronze files of `table` the crawler refused (key -> {rejected: why, at, etag})."""
    return FileIndex.load(settings, table).rejected()
