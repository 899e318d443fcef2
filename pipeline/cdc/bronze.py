"""The bronze bucket as the CDC service writes it: data files and the checkpoint beside them."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.aws.clients import aws_client
from pipeline.cdc.format import is_cdc_file
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
        found: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.schema}/"):
            found.extend(obj["Key"] for obj in page.get("Contents", []))
        return found

    def _delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[i:i + 1000]]
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})

    def delete_uncommitted(self, last_file: str) -> int:
        """Delete CDC files written after the checkpoint (a crash between file and checkpoint)."""
        last_stem = last_file.rsplit(".", 1)[0]
        doomed = [k for k in self.keys()
                  if is_cdc_file(k.rsplit("/", 1)[-1])
                  and k.rsplit("/", 1)[-1].rsplit(".", 1)[0] > last_stem]
        self._delete(doomed)
        if doomed:
            LOG.warning("deleted %d uncommitted CDC file(s) newer than %s", len(doomed),
                        last_file or "the full load")
        return len(doomed)

    def delete_all(self) -> int:
        """Before a full load: no file of an earlier, abandoned load may survive."""
        keys = self.keys()
        self._delete(keys)
        return len(keys)

    def load_checkpoint(self) -> Checkpoint | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.checkpoint_key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        data: dict[str, Any] = json.loads(body)
        return Checkpoint(**data)

    def save_checkpoint(self, cp: Checkpoint) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self.checkpoint_key,
                           Body=json.dumps(asdict(cp), indent=1).encode())

    def drop_checkpoint(self) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self.checkpoint_key)
