"""Silver tables as immutable snapshots plus a pointer, so a crashed job never leaves half a
table: a run writes `snapshots/<snapshot>/` (partitioned by ingestion date), then flips
`_current.json` (one atomic PUT), then drops the snapshot before the previous one (other
folders, which may be a concurrent writer's in progress, only once an hour old).
Spark ignores the `_`-prefixed pointer when it lists the table folder.

Two writers can never merge their outputs: each attempt writes a folder of its own
(`<run_id>-<token>`, where run_id names the input), and the pointer is flipped only if it
still is the one the attempt started from (a conditional PUT on its ETag). The loser's
folder is deleted and it fails with a transient SilverConflictError: a retry starts from
the winner's state.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pipeline.aws.clients import aws_client
from pipeline.aws.s3 import delete_keys, get_json, list_modified, list_objects
from pipeline.config import Settings
from pipeline.errors import TransientError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

LOG = logging.getLogger(__name__)

ABANDONED_AFTER_S = 3600.0
"""A snapshot folder nobody published, untouched this long, is a crashed writer's: deleted."""


def table_prefix(settings: Settings, table: str) -> str:
    return f"{settings.mysql.database}/{table}"


def s3a(bucket: str, key: str) -> str:
    return f"s3a://{bucket}/{key}"


def _pointer_key(settings: Settings, table: str) -> str:
    return f"{table_prefix(settings, table)}/_current.json"


class SilverConflictError(TransientError):
    """Another writer published the table while this attempt was writing."""

    def __init__(self, table: str, snapshot: str) -> None:
        super().__init__(f"silver table `{table}` was published by another writer while "
                         f"snapshot `{snapshot}` was being written; it was discarded",
                         hint="retry: the job starts again from the published state "
                              "(`shoplake run` serialises runs with the run lease)")
        self.table, self.snapshot = table, snapshot


def current_snapshot(settings: Settings, table: str) -> dict | None:
    """The pointer of the table's current snapshot (run_id, snapshot, rows), or None."""
    return get_json(settings, settings.lake.silver_bucket, _pointer_key(settings, table))


def current_pointer(settings: Settings, table: str) -> tuple[dict | None, str | None]:
    """The pointer and its ETag, which `publish` requires to be unchanged."""
    s3 = aws_client(settings, "s3")
    try:
        obj = s3.get_object(Bucket=settings.lake.silver_bucket,
                            Key=_pointer_key(settings, table))
    except s3.exceptions.NoSuchKey:
        return None, None
    return json.loads(obj["Body"].read()), obj["ETag"]


def snapshot_id(pointer: dict[str, Any]) -> str:
    """The folder a pointer names (pointers written before attempts had tokens: run_id)."""
    return str(pointer.get("snapshot") or pointer["run_id"])


def new_snapshot_id(run_id: str) -> str:
    """A folder of this attempt's own, for input `run_id`."""
    return f"{run_id}-{uuid.uuid4().hex[:8]}"


def snapshot_path(settings: Settings, table: str, snapshot: str) -> str:
    return s3a(settings.lake.silver_bucket,
               f"{table_prefix(settings, table)}/snapshots/{snapshot}")


def read_current(spark: SparkSession, settings: Settings, table: str,
                 pointer: dict | None = None) -> DataFrame | None:
    """The table's current state (or that of `pointer`), or None before its first run."""
    pointer = pointer or current_snapshot(settings, table)
    if pointer is None:
        return None
    return spark.read.parquet(snapshot_path(settings, table, snapshot_id(pointer)))


def publish(settings: Settings, table: str, run_id: str, snapshot: str, rows: int,
            expected_etag: str | None, **extra: Any) -> None:
    """Make `snapshot` current if the pointer is still at `expected_etag` (None: there was
    none), then delete all snapshots but it and its predecessor."""
    bucket = settings.lake.silver_bucket
    s3 = aws_client(settings, "s3")
    previous = current_snapshot(settings, table)
    body = json.dumps({"run_id": run_id, "snapshot": snapshot, "rows": rows,
                       "previous": snapshot_id(previous) if previous else None, **extra},
                      default=str).encode()
    condition = {"IfMatch": expected_etag} if expected_etag else {"IfNoneMatch": "*"}
    try:
        s3.put_object(Bucket=bucket, Key=_pointer_key(settings, table), Body=body, **condition)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("PreconditionFailed",
                                                 "ConditionalRequestConflict"):
            raise
        discard(settings, table, snapshot)
        raise SilverConflictError(table, snapshot) from exc
    keep = {snapshot, snapshot_id(previous) if previous else snapshot}
    # The snapshot that just left the window (the predecessor's predecessor) goes now.
    # Any other folder may be a concurrent writer's, still being written (it will lose
    # its compare-and-swap and discard it): it goes only once it is stale (a crashed
    # writer's leftovers).
    gone = (previous or {}).get("previous")
    stale_before = time.time() - ABANDONED_AFTER_S
    for prefix in (f"{table_prefix(settings, table)}/snapshots/",
                   f"quarantine/{table_prefix(settings, table)}/held="):
        newest: dict[str, float] = {}
        for key, modified in list_modified(settings, bucket, prefix).items():
            folder = key[len(prefix):].split("/", 1)[0]
            newest[folder] = max(modified, newest.get(folder, 0.0))
        drop = {f for f, at in newest.items()
                if f not in keep and (f == gone or at < stale_before)}
        delete_keys(settings, bucket, [k for k in list_objects(settings, bucket, prefix)
                                       if k[len(prefix):].split("/", 1)[0] in drop])


def held_path(settings: Settings, table: str, snapshot: str) -> str:
    """Where snapshot `snapshot` keeps the keys it holds in quarantine (bronze_to_silver's
    `hold`): gold is behind the source for them."""
    return s3a(settings.lake.silver_bucket,
               f"quarantine/{table_prefix(settings, table)}/held={snapshot}")


def read_held(spark: SparkSession, settings: Settings, table: str,
              pointer: dict | None) -> DataFrame | None:
    if not pointer or not pointer.get("held"):
        return None
    return spark.read.parquet(held_path(settings, table, snapshot_id(pointer)))


def held_rows(settings: Settings, table: str) -> list[dict[str, Any]]:
    """The held keys of the current snapshot, read without Spark (reconcile, the CLI)."""
    import io

    import pyarrow.parquet as pq

    pointer = current_snapshot(settings, table)
    if not pointer or not pointer.get("held"):
        return []
    bucket = settings.lake.silver_bucket
    prefix = f"quarantine/{table_prefix(settings, table)}/held={snapshot_id(pointer)}/"
    s3 = aws_client(settings, "s3")
    rows: list[dict[str, Any]] = []
    for key in sorted(list_objects(settings, bucket, prefix)):
        if key.endswith(".parquet"):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            rows += pq.read_table(io.BytesIO(body)).to_pylist()
    return [r | {"table": table} for r in rows]


def discard(settings: Settings, table: str, snapshot: str) -> None:
    """Delete an attempt's snapshot and quarantine folders (it lost, or failed)."""
    bucket = settings.lake.silver_bucket
    for prefix in (f"{table_prefix(settings, table)}/snapshots/{snapshot}/",
                   f"quarantine/{table_prefix(settings, table)}/run_id={snapshot}/",
                   f"quarantine/{table_prefix(settings, table)}/held={snapshot}/"):
        delete_keys(settings, bucket, list(list_objects(settings, bucket, prefix)))


def quarantine_path(settings: Settings, table: str, run_id: str) -> str:
    return s3a(settings.lake.silver_bucket,
               f"quarantine/{table_prefix(settings, table)}/run_id={run_id}")
