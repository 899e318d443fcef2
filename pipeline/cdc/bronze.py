"""The bronze bucket as the CDC service writes it: data files and the checkpoint beside them."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from pipeline.aws.clients import aws_client
from pipeline.aws.s3 import delete_keys, get_json, list_folders, list_objects, put_json
from pipeline.cdc.format import is_cdc_key
from pipeline.cdc.source import BinlogPosition
from pipeline.config import Settings

LOG = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "_shoplake_cdc"
"""Folder of the checkpoints; the leading underscore keeps Spark and the crawler away."""


@dataclass
class Checkpoint:
    """Where replication stands; written only after the files it covers."""

    log_file: str
    log_pos: int
    last_file: str = ""
    """Name of the newest committed CDC file; any newer file is uncommitted."""
    last_commit_ts: str = ""
    full_load_at: str = ""
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    """Rows written per table and Op (I/U/D; L for the full load)."""

    @property
    def position(self) -> BinlogPosition:
        return BinlogPosition(self.log_file, self.log_pos)

    def count(self, table: str, op: str, n: int) -> None:
        per = self.rows.setdefault(table, {})
        per[op] = per.get(op, 0) + n


class Bronze:
    """Keys are `<schema>/<table>/<file>`, as DMS lays out its S3 target."""

    def __init__(self, settings: Settings, schema: str) -> None:
        self.settings = settings
        self.s3 = aws_client(settings, "s3")
        self.bucket = settings.lake.bronze_bucket
        self.schema = schema
        self.checkpoint_key = f"{CHECKPOINT_PREFIX}/{schema}/checkpoint.json"

    def key(self, table: str, name: str) -> str:
        return f"{self.schema}/{table}/{name}"

    def put(self, table: str, name: str, body: bytes) -> None:
        # A PUT is atomic: the object appears whole or not at all.
        self.s3.put_object(Bucket=self.bucket, Key=self.key(table, name), Body=body)

    def keys(self) -> list[str]:
        return list(list_objects(self.settings, self.bucket, f"{self.schema}/"))

    def delete_uncommitted(self, last_file: str) -> int:
        """Delete CDC files written after the checkpoint (a crash between file and checkpoint)."""
        last_stem = last_file.rsplit(".", 1)[0]
        # Only what sorts after the checkpoint's file is listed (CDC names increase across
        # tables), not the table's whole history.
        after = [k for folder in list_folders(self.settings, self.bucket, f"{self.schema}/")
                 for k in list_objects(self.settings, self.bucket, folder,
                                       start_after=f"{folder}{last_stem}" if last_stem else "")]
        doomed = [k for k in after
                  if is_cdc_key(k)
                  and k.rsplit("/", 1)[-1].rsplit(".", 1)[0] > last_stem]
        delete_keys(self.settings, self.bucket, doomed)
        if doomed:
            LOG.warning("deleted %d uncommitted CDC file(s) newer than %s", len(doomed),
                        last_file or "the full load")
        return len(doomed)

    def delete_all(self) -> int:
        """Before a full load: no file of an earlier, abandoned load may survive."""
        keys = self.keys()
        delete_keys(self.settings, self.bucket, keys)
        return len(keys)

    def load_checkpoint(self) -> Checkpoint | None:
        data = get_json(self.settings, self.bucket, self.checkpoint_key)
        return None if data is None else Checkpoint(**data)

    def save_checkpoint(self, cp: Checkpoint) -> None:
        put_json(self.settings, self.bucket, self.checkpoint_key, asdict(cp), indent=1)

    def drop_checkpoint(self) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self.checkpoint_key)
