"""Silver tables as immutable snapshots plus a pointer, so a crashed job never leaves half a
table: a run writes `snapshots/<run_id>/` (partitioned by ingestion date), then flips
`_current.json` (one atomic PUT), then drops snapshots older than the previous one.
Spark ignores the `_`-prefixed pointer when it lists the table folder.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from pipeline.aws.clients import aws_client
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
    s3 = aws_client(settings, "s3")
    try:
        body = s3.get_object(Bucket=settings.lake.silver_bucket,
                             Key=_pointer_key(settings, table))["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)


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
    s3 = aws_client(settings, "s3")
    previous = current_snapshot(settings, table)
    s3.put_object(Bucket=settings.lake.silver_bucket, Key=_pointer_key(settings, table),
                  Body=json.dumps({"run_id": run_id, "rows": rows}).encode())
    keep = {run_id, previous["run_id"] if previous else run_id}
    prefix = f"{table_prefix(settings, table)}/snapshots/"
    doomed = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.lake.silver_bucket,
                                                              Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"][len(prefix):].split("/", 1)[0] not in keep:
                doomed.append({"Key": obj["Key"]})
    for i in range(0, len(doomed), 1000):
        s3.delete_objects(Bucket=settings.lake.silver_bucket,
                          Delete={"Objects": doomed[i:i + 1000], "Quiet": True})


def quarantine_path(settings: Settings, table: str, run_id: str) -> str:
    return s3a(settings.lake.silver_bucket,
               f"quarantine/{table_prefix(settings, table)}/run_id={run_id}")


def drop_table(settings: Settings, table: str) -> None:
    """Forget a silver table entirely (a rebuild from bronze follows)."""
    s3 = aws_client(settings, "s3")
    for prefix in (f"{table_prefix(settings, table)}/",
                   f"quarantine/{table_prefix(settings, table)}/"):
        keys = [{"Key": o["Key"]}
                for page in s3.get_paginator("list_objects_v2").paginate(
                    Bucket=settings.lake.silver_bucket, Prefix=prefix)
                for o in page.get("Contents", [])]
        for i in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=settings.lake.silver_bucket,
                              Delete={"Objects": keys[i:i + 1000], "Quiet": True})
