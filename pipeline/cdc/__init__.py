"""The CDC service: stands in for AWS DMS (full load + ongoing replication to S3).

It reads the source's binlog as a least-privilege replication user whose credentials come
from Secrets Manager, and writes the DMS S3 target format to the bronze bucket:
`<schema>/<table>/LOAD00000001.parquet` for the full load, then time-named CDC files whose
rows start with `Op` (I/U/D), carry the commit time and the after image. A checkpoint
(binlog file + position, only at transaction boundaries) sits in S3 next to the data.
"""

from __future__ import annotations

from pipeline.cdc.service import CdcReport, reset, run, sync_with_follower
from pipeline.cdc.status import CdcStatus, cdc_status

__all__ = ["CdcReport", "CdcStatus", "cdc_status", "reset", "run", "sync_with_follower"]
