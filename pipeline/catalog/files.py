"""The crawler's memory of a table's bronze files, and the listing of them, both bounded.

Bronze gains a change file per table each time the CDC flushes, for as long as the lake
lives, so nothing a run reads may hold every file ever written:

- A table's files are listed from a watermark, the newest change file already seen. S3
  lists in key order and the CDC names change files by time, strictly increasing
  (`cdc.format.next_cdc_name`), so `ListObjectsV2(StartAfter=watermark)` is exactly what
  came since, followed by the full-load files (`LOAD...`, as many as the snapshot has),
  whose `L` sorts after the digits. The watermark file itself is checked with a HEAD: if
  it vanished or changed, bronze was rebuilt (`shoplake cdc reset`, LocalStack forgetting
  its buckets).
- The index is a small head (the full-load files, the files it rejected until they are
  replaced or removed, the watermark, the schema folded so far, row and file counts) and a
  shard a day of change files (`.../cdc/20261207.json`, the day of the file's name). The
  crawler writes the shards of the days it saw files of; a job reads only the shards of
  the days of the files it has not processed yet.

A file put by hand under a name that sorts before the watermark (a change-file name of an
earlier time, or `.keep`, `1.csv`) is not seen (the CDC never writes one); the jobs leave
it out with a warning. A foreign name such as `export.csv` sorts after every change file,
so it is seen, rejected and named.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pipeline.aws.s3 import delete_keys, get_json, head_etag, list_objects, put_json
from pipeline.cdc.format import is_cdc_key, is_load_key, write_order
from pipeline.config import Settings

LOG = logging.getLogger(__name__)

FORMAT = 2
"""The index's layout; an index in another (the single object of every file's entry that
came before) is not trusted: the crawler reads the table's files again, once."""

def day_of(key: str) -> str:
    """The shard of a change file: the day in its name (20261207-1134010000.parquet)."""
    return key.rsplit("/", 1)[-1][:8]


def list_table_files(settings: Settings, schema: str, table: str, after: str = "",
                     also: Iterable[str] = ()) -> dict[str, str]:
    """key -> ETag of the table's full-load files and of every file after `after` (all of
    them when `after` is empty), plus those of `also` that still exist."""
    bucket = settings.lake.bronze_bucket
    # One listing: after a change file (20261207-...) come the later ones and then every
    # full-load file, since `L` sorts after the digits.
    found = list_objects(settings, bucket, f"{schema}/{table}/",
                         start_after=after if is_cdc_key(after) else "")
    for key in also:
        if key and key not in found and (etag := head_etag(settings, bucket, key)):
            found[key] = etag
    return found


def behind_the_crawler(keys: Iterable[str], entries: dict[str, Any], watermark: str
                       ) -> list[str]:
    """Those of `keys` without an entry that sort before the crawler's watermark: put into
    bronze by hand after the crawl passed, so never listed by it (only a job's full listing,
    from an empty bookmark, shows them). Waiting for them would stop the table for good."""
    return [k for k in keys if k not in entries and not is_load_key(k)
            and watermark and k < watermark]


def _part_key(settings: Settings, table: str, part: str) -> str:
    return f"glue/crawler/{settings.glue.database}/{table}/{part}.json"


def get_part(settings: Settings, table: str, part: str) -> Any | None:
    return get_json(settings, settings.lake.artifacts_bucket, _part_key(settings, table, part))


def put_part(settings: Settings, table: str, part: str, value: Any) -> None:
    put_json(settings, settings.lake.artifacts_bucket, _part_key(settings, table, part), value)


def drop_parts(settings: Settings, table: str) -> None:
    """Every part of the table's index (and the single-object index of the old layout)."""
    bucket = settings.lake.artifacts_bucket
    prefix = f"glue/crawler/{settings.glue.database}/{table}/"
    keys = sorted(list_objects(settings, bucket, prefix))
    keys.append(f"glue/crawler/{settings.glue.database}/{table}.json")
    delete_keys(settings, bucket, keys)


@dataclass
class FileIndex:
    """What the crawler knows of one table's files; see the module's doc."""

    table: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The head's entries: full-load files and rejected files, key -> {etag, rows,
    columns} (+ rejected, blocks, at)."""
    watermark: str = ""
    """The newest change file seen (accepted or rejected); files after it are new."""
    watermark_etag: str = ""
    columns: list[list[str]] = field(default_factory=list)
    """The table's columns folded over every accepted file in write order, so far."""
    csv: bool = False
    """Whether any accepted file is CSV."""
    cdc_rows: int = 0
    cdc_files: int = 0
    """Rows and files of the accepted change files (their entries are in the shards)."""
    shards: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    dirty: set[str] = field(default_factory=set, repr=False)

    # -- storage ------------------------------------------------------------------------
    @classmethod
    def load(cls, settings: Settings, table: str) -> FileIndex:
        head = get_part(settings, table, "head")
        if not head or head.get("format") != FORMAT:
            return cls(table)
        return cls(table, head["files"], head["watermark"], head["watermark_etag"],
                   head["columns"], head["csv"], head["cdc_rows"], head["cdc_files"])

    def save(self, settings: Settings) -> None:
        """The shards first, then the head: a crash in between leaves shard entries the
        head does not count yet, and the next crawl writes them again, the same."""
        for day in sorted(self.dirty):
            put_part(settings, self.table, f"cdc/{day}", self.shards[day])
        self.dirty.clear()
        put_part(settings, self.table, "head", {
            "format": FORMAT, "files": self.files, "watermark": self.watermark,
            "watermark_etag": self.watermark_etag, "columns": self.columns, "csv": self.csv,
            "cdc_rows": self.cdc_rows, "cdc_files": self.cdc_files})

    def _shard(self, settings: Settings, day: str) -> dict[str, Any]:
        if day not in self.shards:
            self.shards[day] = get_part(settings, self.table, f"cdc/{day}") or {}
        return self.shards[day]

    # -- reading --------------------------------------------------------------------------
    def known(self) -> dict[str, str]:
        """key -> ETag of the files a bounded listing must show unchanged: the full-load
        and rejected files, and the watermark file."""
        out = {k: v["etag"] for k, v in self.files.items()}
        if self.watermark and self.watermark_etag:
            out[self.watermark] = self.watermark_etag
        return out

    def rejected(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.files.items() if v.get("rejected")}

    def entry(self, settings: Settings, key: str) -> dict[str, Any] | None:
        if key in self.files:
            return self.files[key]
        if not is_cdc_key(key):
            return None
        return self._shard(settings, day_of(key)).get(key)

    def entries(self, settings: Settings, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """key -> entry of those of `keys` the crawler has seen."""
        return {k: e for k in keys if (e := self.entry(settings, k)) is not None}

    def is_new(self, key: str) -> bool:
        """Not seen yet: a key in neither the head nor at or before the watermark."""
        if key in self.files:
            return False
        if is_cdc_key(key) and self.watermark:
            return write_order(key) > write_order(self.watermark)
        return True

    @property
    def rows(self) -> int:
        return self.cdc_rows + sum(int(v.get("rows") or 0) for v in self.files.values()
                                   if not v.get("rejected"))

    @property
    def objects(self) -> int:
        return self.cdc_files + len(self.files)

    # -- writing --------------------------------------------------------------------------
    def add(self, settings: Settings, key: str, entry: dict[str, Any]) -> None:
        if entry.get("rejected") or not is_cdc_key(key):
            self.files[key] = entry
        else:
            # Only keys after the head's watermark are added, so each is counted once; one
            # already in its shard is from a crawl that died before saving the head, which
            # did not count it.
            shard = self._shard(settings, day_of(key))
            self.cdc_rows += int(entry.get("rows") or 0)
            self.cdc_files += 1
            shard[key] = entry
            self.dirty.add(day_of(key))
        if is_cdc_key(key) and (not self.watermark
                                or write_order(key) > write_order(self.watermark)):
            self.watermark, self.watermark_etag = key, entry["etag"]

    def forget(self, key: str) -> None:
        """A rejected file that was removed. When it was the watermark, the watermark stays
        (the listing still starts after it) without an ETag to check."""
        self.files.pop(key, None)
        if key == self.watermark:
            self.watermark_etag = ""
