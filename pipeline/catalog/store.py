"""Catalog tables through the Glue Data Catalog API (boto3 `glue`): on AWS the real one,
here moto's server (`glue.endpoint_url`). The crawler registers databases and tables (an
update keeps the previous version: `get_table_versions`), the jobs resolve bronze tables
here, `shoplake catalog show` lists them.

An endpoint that does not answer is a transient error naming it (the state machine retries
it); a table the crawler has not registered is a terminal one saying to crawl.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from pipeline.aws import errors as aws_errors
from pipeline.aws.clients import aws_client
from pipeline.catalog.files import FileIndex
from pipeline.config import Settings
from pipeline.errors import ServiceUnavailableError, TerminalError

TABLE_INPUT_KEYS = ("Name", "Description", "Owner", "Retention", "StorageDescriptor",
                    "PartitionKeys", "TableType", "Parameters")
"""What a TableInput may carry (create_table / update_table); GetTable's answer has more
(DatabaseName, CreateTime, UpdateTime, VersionId, CatalogId), which Glue itself sets."""


TRANSIENT_CODES = aws_errors.TRANSIENT_CODES | {
    "InternalServiceException", "OperationTimeoutException", "ConcurrentModificationException"}
"""Error codes that mean "ask again later": AWS's own (pipeline/aws/errors.py) and Glue's."""


def unavailable(settings: Settings, what: str, exc: BaseException
                ) -> ServiceUnavailableError | None:
    """The transient error for `exc` when it says the catalog is down, slow, busy or
    throttling (the state machine retries those); None for any other error."""
    where = f"the Glue Data Catalog at {settings.glue.endpoint_url}"
    if isinstance(exc, EndpointConnectionError | ConnectionError):
        said, hint = (f"{where} is not reachable ({what})",
                      "start it with `shoplake stack up` (`shoplake stack status` shows it)")
    elif isinstance(exc, aws_errors.UNREACHABLE) or (
            isinstance(exc, BotoCoreError)
            and ("Connect" in type(exc).__name__ or "timed out" in str(exc))):
        said, hint = (f"{where} did not answer ({what}): {exc}",
                      "`shoplake stack status` shows it; `shoplake stack up` restarts it")
    elif isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if error.get("Code") not in TRANSIENT_CODES and status < 500:
            return None
        said, hint = (f"{where} is busy ({what}): {error.get('Code') or status} "
                      f"{error.get('Message', '')}".rstrip(),
                      "it passes: the run's step is retried; run again if it was a command")
    else:
        return None
    return ServiceUnavailableError(said, service="glue", port=settings.glue.port, hint=hint)


@contextlib.contextmanager
def _glue(settings: Settings, what: str) -> Iterator[Any]:
    try:
        yield aws_client(settings, "glue")
    except (BotoCoreError, ClientError, ConnectionError) as exc:
        error = unavailable(settings, what, exc)
        if error is None:
            raise
        raise error from exc


def _not_found(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "EntityNotFoundException"


def get_table(settings: Settings, table: str, database: str | None = None) -> dict[str, Any]:
    """The catalog entry of `table` (Glue's GetTable `Table`); raises with a hint when the
    crawler has not registered it."""
    database = database or settings.glue.database
    entry = find_table(settings, table, database)
    if entry is None:
        raise TerminalError(f"table `{database}.{table}` is not in the Glue Data Catalog",
                            hint="run `shoplake crawl` after the CDC has written bronze")
    return entry


def find_table(settings: Settings, table: str, database: str | None = None
               ) -> dict[str, Any] | None:
    database = database or settings.glue.database
    with _glue(settings, f"reading `{database}.{table}`") as glue:
        try:
            return glue.get_table(DatabaseName=database, Name=table)["Table"]
        except ClientError as exc:
            if _not_found(exc):
                return None
            raise


def ensure_database(settings: Settings, database: str | None = None) -> None:
    database = database or settings.glue.database
    with _glue(settings, f"creating database `{database}`") as glue:
        try:
            glue.create_database(DatabaseInput={
                "Name": database,
                "Description": "bronze: the DMS files of the source, as the crawler found them"})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "AlreadyExistsException":
                raise


def put_table(settings: Settings, entry: dict[str, Any], new_version: bool = True) -> None:
    """Register `entry` (GetTable-shaped): create the table, or update it. Glue keeps the
    previous definition as a table version when `new_version` (a schema change); an update
    of the counts alone skips the archive (SkipArchive, which AWS honours and moto
    ignores)."""
    database = entry.get("DatabaseName") or settings.glue.database
    table_input = {k: entry[k] for k in TABLE_INPUT_KEYS if k in entry}
    with _glue(settings, f"registering `{database}.{entry['Name']}`") as glue:
        try:
            glue.update_table(DatabaseName=database, TableInput=table_input,
                              SkipArchive=not new_version)
            return
        except ClientError as exc:
            if not _not_found(exc):
                raise
        ensure_database(settings, database)
        try:
            glue.create_table(DatabaseName=database, TableInput=table_input)
        except ClientError as exc:  # a concurrent crawl created it in between
            if exc.response.get("Error", {}).get("Code") != "AlreadyExistsException":
                raise
            glue.update_table(DatabaseName=database, TableInput=table_input,
                              SkipArchive=not new_version)


def list_tables(settings: Settings, database: str | None = None) -> list[dict[str, Any]]:
    database = database or settings.glue.database
    out: list[dict[str, Any]] = []
    with _glue(settings, f"listing `{database}`") as glue:
        token = None
        while True:
            try:
                page = glue.get_tables(DatabaseName=database,
                                       **({"NextToken": token} if token else {}))
            except ClientError as exc:
                if _not_found(exc):
                    return []
                raise
            out += page.get("TableList", [])
            token = page.get("NextToken")
            if not token:
                break
    return sorted(out, key=lambda t: t["Name"])


def table_versions(settings: Settings, table: str, database: str | None = None) -> list[str]:
    """The version ids Glue keeps of `table`, oldest first."""
    database = database or settings.glue.database
    with _glue(settings, f"reading the versions of `{database}.{table}`") as glue:
        versions: list[str] = []
        try:
            for page in glue.get_paginator("get_table_versions").paginate(
                    DatabaseName=database, TableName=table):
                versions += [v["VersionId"] for v in page.get("TableVersions", [])]
        except ClientError as exc:
            if _not_found(exc):
                return []
            raise
    return sorted(versions, key=int)


def columns(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, Glue type) pairs of a catalog entry."""
    return [(c["Name"], c["Type"]) for c in entry["StorageDescriptor"]["Columns"]]


def rejected_files(settings: Settings, table: str) -> dict[str, dict[str, Any]]:
    """Bronze files of `table` the crawler refused (key -> {rejected: why, at, etag})."""
    return FileIndex.load(settings, table).rejected()
