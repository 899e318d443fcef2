"""`shoplake cdc status`: checkpoint, lag in bytes and seconds, rows written per table."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import QueryEvent, XidEvent

from pipeline.aws.secrets import DbCredentials, cdc_credentials
from pipeline.cdc.bronze import Bronze, Checkpoint
from pipeline.cdc.source import binlog_files, bytes_behind, connect, current_position
from pipeline.config import Settings

STATUS_SERVER_ID_OFFSET = 1000
"""The status probe reads the binlog under its own replica id: one with the follower's id
would push the follower off the server."""


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


def _oldest_unreplicated(settings: Settings, creds: DbCredentials,
                         cp: Checkpoint) -> float | None:
    """Epoch seconds of the first binlog event after the checkpoint: the age of the oldest
    change still waiting (the time since the last replicated commit would overstate it
    after an idle spell)."""
    reader = BinLogStreamReader(
        connection_settings={"host": creds.host, "port": creds.port, "user": creds.username,
                             "password": creds.password.reveal()},
        server_id=settings.cdc.server_id + STATUS_SERVER_ID_OFFSET, resume_stream=True,
        blocking=False, log_file=cp.log_file, log_pos=cp.log_pos,
        only_events=[XidEvent, QueryEvent], is_mariadb=False, enable_logging=False)
    try:
        for event in reader:
            if event.timestamp:
                return float(event.timestamp)
    finally:
        reader.close()
    return None


def cdc_status(settings: Settings) -> CdcStatus | None:
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
    if lag:
        oldest = _oldest_unreplicated(settings, creds, cp)
        if oldest is not None:
            lag_s = time.time() - oldest
    return CdcStatus(str(cp.position), str(head), lag, round(max(0.0, lag_s), 1),
                     cp.last_commit_ts, cp.full_load_at, cp.rows)
