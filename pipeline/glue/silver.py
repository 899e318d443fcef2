"""Silver tables as immutable snapshots plus a pointer, so a crashed job never leaves half a
table: a run writes `snapshots/<run_id>/` (partitioned by ingestion date), then flips
`_current.json` (one atomic PUT), then drops snapshots older than the previous one.
Spark ignores the `_`-prefixed pointer when it lists the table folder.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pipeline.aws.s3 import delete_keys, get_json, list_objects, put_json
from pipeline.config import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

LOG = logging.getLogger(__name__)


def table_prefix(settings: Settings, table: str) -> str:
    return f"{settings.mysql.database}/{table}"


def s3a(bucket: str, key: str) -> str:
    return f"s3a://{bucket}/{key}"


def _pointer_key(settings: Settings, table: str) -> str:
    return f"{table_prefix(settings, table)}/_current.json"


def current_snapshot(settings: Settings, table: str) -> dict | None:
    return get_json(settings, settings.lake.silver_bucket, _pointer_key(settings, table))


def snapshot_path(settings: Settings, table: str, run_id: str) -> str:
    return s3a(settings.lake.silver_bucket, f"{table_prefix(settings, table)}/snapshots/{run_id}")


def read_current(spark: SparkSession, settings: Settings, table: str) -> DataFrame | None:
    """The table's current state, or None before its first run."""
    pointer = current_snapshot(settings, table)
    if pointer is None:
        return None
    return spark.read.parquet(snapshot_path(settings, table, pointer["run_id"]))


def publish(settings: Settings, table: str, run_id: str, rows: int) -> None:
    """Make snapshot `run_id` current, then delete all but it and its predecessor."""
    bucket = settings.lake.silver_bucket
    previous = current_snapshot(settings, table)
    put_json(settings, bucket, _pointer_key(settings, table), {"run_id": run_id, "rows": rows})
    keep = {run_id, previous["run_id"] if previous else run_id}
    prefix = f"{table_prefix(settings, table)}/snapshots/"
    delete_keys(settings, bucket, [k for k in list_objects(settings, bucket, prefix)
                                   if k[len(prefix):].split("/", 1)[0] not in keep])


def quarantine_path(settings: Settings, table: str, run_id: str) -> str:
    return s3a(settings.lake.silver_bucket,
               f"quarantine/{table_prefix(settings, table)}/run_id={run_id}")


def drop_table(settings: Settings, table: str) -> None:
    """Forget a silver table entirely (a rebuild from bronze follows)."""
    bucket = settings.lake.silver_bucket
    for prefix in (f"{table_prefix(settings, table)}/",
                   f"quarantine/{table_prefix(settings, table)}/"):
        delete_keys(settings, bucket, list(list_objects(settings, bucket, prefix)))
