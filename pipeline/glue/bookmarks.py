"""Job bookmarks, like Glue's: which input files a job has already processed.

A bookmark maps each processed bronze key to its ETag. A key whose ETag changed, or a
processed key that vanished, means bronze was rebuilt (a new full load after the CDC lost
its checkpoint): the job must then start over from the whole of bronze.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pipeline.aws.clients import aws_client
from pipeline.aws.s3 import get_json, put_json
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
    data = get_json(settings, settings.lake.artifacts_bucket, _key(job, table))
    return Bookmark(job, table) if data is None else Bookmark(**data)


def save_bookmark(settings: Settings, bookmark: Bookmark) -> None:
    put_json(settings, settings.lake.artifacts_bucket, _key(bookmark.job, bookmark.table),
             bookmark.__dict__)


def reset_bookmark(settings: Settings, job: str, table: str) -> None:
    aws_client(settings, "s3").delete_object(Bucket=settings.lake.artifacts_bucket,
                                             Key=_key(job, table))


def new_files(bookmark: Bookmark, current: dict[str, str]) -> tuple[list[str], bool]:
    """(keys to process, rebuilt). When bronze was rebuilt, every current key is new."""
    rebuilt = any(current.get(k) != etag for k, etag in bookmark.processed.items())
    if rebuilt:
        LOG.warning("bronze of `%s` was rebuilt since the last run of `%s`: reprocessing all "
                    "%d files", bookmark.table, bookmark.job, len(current))
        return sorted(current), True
    return sorted(k for k in current if k not in bookmark.processed), False
