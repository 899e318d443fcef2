"""Catalog tables as JSON objects in S3, in the shape of Glue's GetTable response."""

from __future__ import annotations

import json
from typing import Any

from pipeline.aws.clients import aws_client
from pipeline.config import Settings
from pipeline.errors import TerminalError


def _key(database: str, table: str) -> str:
    return f"glue/catalog/{database}/{table}.json"


def get_table(settings: Settings, table: str, database: str | None = None) -> dict[str, Any]:
    """The catalog entry of `table`; raises with a hint when the crawler has not run."""
    database = database or settings.glue.database
    s3 = aws_client(settings, "s3")
    try:
        body = s3.get_object(Bucket=settings.lake.artifacts_bucket,
                             Key=_key(database, table))["Body"].read()
    except s3.exceptions.NoSuchKey as exc:
        raise TerminalError(f"table `{database}.{table}` is not in the catalog",
                            hint="run `shoplake crawl` after the CDC has written bronze") from exc
    return json.loads(body)


def find_table(settings: Settings, table: str, database: str | None = None
               ) -> dict[str, Any] | None:
    try:
        return get_table(settings, table, database)
    except TerminalError:
        return None


def put_table(settings: Settings, entry: dict[str, Any]) -> None:
    aws_client(settings, "s3").put_object(
        Bucket=settings.lake.artifacts_bucket,
        Key=_key(entry["DatabaseName"], entry["Name"]),
        Body=json.dumps(entry, indent=1, default=str).encode())


def list_tables(settings: Settings, database: str | None = None) -> list[dict[str, Any]]:
    database = database or settings.glue.database
    s3 = aws_client(settings, "s3")
    names = []
    for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=settings.lake.artifacts_bucket, Prefix=f"glue/catalog/{database}/"):
        names.extend(o["Key"].rsplit("/", 1)[-1][:-5] for o in page.get("Contents", []))
    return [get_table(settings, n, database) for n in sorted(names)]


def columns(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, Glue type) pairs of a catalog entry."""
    return [(c["Name"], c["Type"]) for c in entry["StorageDescriptor"]["Columns"]]


def _index_key(database: str, table: str) -> str:
    return f"glue/crawler/{database}/{table}.json"


def load_file_index(settings: Settings, table: str) -> dict[str, Any]:
    """The crawler's memory: bronze key -> {etag, rows, columns}, so it reads new files only.

    Jobs use it too: files of one table may differ in columns (CSV is positional), so a
    job reads each group of files with its own column list.
    """
    s3 = aws_client(settings, "s3")
    try:
        body = s3.get_object(Bucket=settings.lake.artifacts_bucket,
                             Key=_index_key(settings.glue.database, table))["Body"].read()
    except s3.exceptions.NoSuchKey:
        return {}
    return json.loads(body)


def save_file_index(settings: Settings, table: str, index: dict[str, Any]) -> None:
    aws_client(settings, "s3").put_object(
        Bucket=settings.lake.artifacts_bucket, Key=_index_key(settings.glue.database, table),
        Body=json.dumps(index).encode())
