"""Job bookmarks, like Glue's: which input files a job has already processed.

A bookmark maps each processed bronze key to its ETag. A key whose ETag changed, or a
processed key that vanished, means bronze was rebuilt (a new full load after the CDC lost
its checkpoint): the job must then start over from the whole of bronze.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from pipeline.aws.clients import aws_client
from pipeline.config import Settings

LOG = logging.getLogger(__name__)


@dataclass
class Bookmark:
    job: str
    table: str
    processed: dict[str, str] = field(default_factory=dict)
    """bronze key -> ETag"""
    run_id: str = ""


def _key(job: str, table: str) -> str:
    return f"glue/bookmarks/{job}/{table}.json"


def load_bookmark(settings: Settings, job: str, table: str) -> Bookmark:
    s3 = aws_client(settings, "s3")
    try:
        body = s3.get_object(Bucket=settings.lake.artifacts_bucket,
                             Key=_key(job, table))["Body"].read()
    except s3.exceptions.NoSuchKey:
        return Bookmark(job, table)
    return Bookmark(**json.loads(body))


def save_bookmark(settings: Settings, bookmark: Bookmark) -> None:
    aws_client(settings, "s3").put_object(
        Bucket=settings.lake.artifacts_bucket, Key=_key(bookmark.job, bookmark.table),
        Body=json.dumps(bookmark.__dict__).encode())


def reset_bookmark(settings: Settings, job: str, table: str) -> None:
    aws_client(settings, "s3").delete_object(Bucket=settings.lake.artifacts_bucket,
                                             Key=_key(job, table))


def list_objects(settings: Settings, bucket: str, prefix: str) -> dict[str, str]:
    """key -> ETag of every object under prefix."""
    s3 = aws_client(settings, "s3")
    found: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["ETag"]
    return found


def new_files(bookmark: Bookmark, current: dict[str, str]) -> tuple[list[str], bool]:
    """(keys to process, rebuilt). When bronze was rebuilt, every current key is new."""
    rebuilt = any(current.get(k) != etag for k, etag in bookmark.processed.items())
    if rebuilt:
        LOG.warning("bronze of `%s` was rebuilt since the last run of `%s`: reprocessing all "
                    "%d files", bookmark.table, bookmark.job, len(current))
        return sorted(current), True
    return sorted(k for k in current if k not in bookmark.processed), False
