"""Job bookmarks, like Glue's: which input files a job has already processed.

A bookmark is bounded, whatever bronze's history: the full-load files it processed (key ->
ETag; as many as the snapshot has) and a watermark, the newest change file it processed
with its ETag. The CDC names change files by time, strictly increasing, so the files after
the watermark (`catalog.files.list_table_files`) are exactly the new ones.

A full-load file whose ETag changed, or the watermark file or a full-load file that
vanished, means bronze was rebuilt (a new full load after the CDC lost its checkpoint):
the job must then start over from the whole of bronze.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.aws.clients import aws_client
from pipeline.aws.s3 import get_json, put_json
from pipeline.cdc.format import is_cdc_key, write_order
from pipeline.config import Settings

LOG = logging.getLogger(__name__)


@dataclass
class Bookmark:
    job: str
    table: str
    loads: dict[str, str] = field(default_factory=dict)
    """full-load key -> ETag"""
    after: str = ""
    """The newest change file processed ("" before the first)."""
    after_etag: str = ""
    run_id: str = ""
    skipped: dict[str, str] = field(default_factory=dict)
    """Rejected files the job left out without stopping (not DMS output), key -> ETag: a
    later replacement (another ETag) is read then, even behind the watermark."""

    def known(self) -> dict[str, str]:
        """key -> ETag of the processed files a listing must still show unchanged."""
        return {**self.loads, **({self.after: self.after_etag} if self.after else {})}

    def is_processed(self, key: str, etag: str | None = None) -> bool:
        if key in self.skipped:
            return etag is None or etag == self.skipped[key]
        if key in self.loads or key == self.after:
            return True
        return bool(self.after) and is_cdc_key(key) and write_order(key) < write_order(
            self.after)

    def advance(self, current: dict[str, str], keys: Sequence[str],
                skipped: Sequence[str] = ()) -> None:
        """Mark `keys` (files of `current`) processed, and `skipped` left out."""
        self.skipped = {k: current[k] for k in (*self.skipped, *skipped)
                        if k in current and k not in keys}
        self.loads = {k: current[k] for k in current
                      if (k in self.loads or k in keys) and not is_cdc_key(k)}
        changes = [k for k in keys if is_cdc_key(k)]
        if changes:
            newest = max(changes, key=write_order)
            if not self.after or write_order(newest) > write_order(self.after):
                self.after, self.after_etag = newest, current[newest]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bookmark:
        if "processed" in data:  # the old layout: every processed key -> ETag
            mark = cls(data["job"], data["table"], run_id=data.get("run_id", ""))
            mark.advance(data["processed"], list(data["processed"]))
            return mark
        return cls(**data)


def _key(job: str, table: str) -> str:
    return f"glue/bookmarks/{job}/{table}.json"


def load_bookmark(settings: Settings, job: str, table: str) -> Bookmark:
    data = get_json(settings, settings.lake.artifacts_bucket, _key(job, table))
    return Bookmark(job, table) if data is None else Bookmark.from_json(data)


def save_bookmark(settings: Settings, bookmark: Bookmark) -> None:
    put_json(settings, settings.lake.artifacts_bucket, _key(bookmark.job, bookmark.table),
             bookmark.__dict__)


def reset_bookmark(settings: Settings, job: str, table: str) -> None:
    aws_client(settings, "s3").delete_object(Bucket=settings.lake.artifacts_bucket,
                                             Key=_key(job, table))


def new_files(bookmark: Bookmark, current: dict[str, str]) -> tuple[list[str], bool]:
    """(keys to process, rebuilt), from a listing of the full-load files and the files
    after the bookmark's watermark (with the watermark file). When bronze was rebuilt,
    every current key is new (the caller lists all of bronze again)."""
    rebuilt = any(current.get(k) != etag for k, etag in bookmark.known().items())
    if rebuilt:
        LOG.warning("bronze of `%s` was rebuilt since the last run of `%s`: reprocessing all "
                    "%d files", bookmark.table, bookmark.job, len(current))
        return sorted(current), True
    return sorted(k for k, etag in current.items() if not bookmark.is_processed(k, etag)), False
