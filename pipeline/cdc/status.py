"""`shoplake cdc status`: checkpoint, lag in bytes and seconds, rows written per table."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from pipeline.aws.secrets import cdc_credentials
from pipeline.cdc.bronze import Bronze
from pipeline.cdc.format import TIMESTAMP_FORMAT
from pipeline.cdc.source import binlog_files, bytes_behind, connect, current_position


@dataclass(frozen=True)
class CdcStatus:
    checkpoint: str
    source_position: str
    lag_bytes: int
    lag_seconds: float
    last_commit_ts: str
    full_load_at: str
    rows: dict[str, dict[str, int]]

    def as_dict(self) -> dict:
        return asdict(self)


def cdc_status(settings) -> CdcStatus | None:  # noqa: ANN001 - Settings
    """None when the CDC service has never run (no checkpoint)."""
    creds = cdc_credentials(settings)
    cp = Bronze(settings, creds.dbname).load_checkpoint()
    if cp is None:
        return None
    conn = connect(creds)
    try:
        head = current_position(conn)
        lag = bytes_behind(binlog_files(conn), cp.position)
    finally:
        conn.close()
    lag_s = 0.0
    if lag and cp.last_commit_ts:
        last = datetime.strptime(cp.last_commit_ts, TIMESTAMP_FORMAT)
        lag_s = (datetime.now(UTC).replace(tzinfo=None) - last).total_seconds()
    return CdcStatus(str(cp.position), str(head), lag, round(max(0.0, lag_s), 1),
                     cp.last_commit_ts, cp.full_load_at, cp.rows)
