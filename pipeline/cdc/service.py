"""`shoplake cdc`: full load when there is no checkpoint, then replicate the binlog."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

import pymysql

from pipeline.aws.secrets import cdc_credentials
from pipeline.cdc.bronze import Bronze
from pipeline.cdc.errors import BinlogPositionLostError
from pipeline.cdc.snapshot import full_load
from pipeline.cdc.source import binlog_files, connect, discover_tables
from pipeline.cdc.stream import Replicator
from pipeline.config import Settings
from pipeline.errors import ServiceUnavailableError
from pipeline.progress import Progress, SilentProgress

LOG = logging.getLogger(__name__)


@dataclass
class CdcReport:
    full_load: bool
    full_load_rows: dict[str, int] = field(default_factory=dict)
    changes: int = 0
    files: int = 0
    position: str = ""
    seconds: float = 0.0


def _excluded(settings: Settings) -> set[str]:
    return {t.strip() for t in settings.cdc.exclude_tables.split(",") if t.strip()}


def run(settings: Settings, once: bool = False, progress: Progress | None = None,
        stop: threading.Event | None = None) -> CdcReport:
    """Replicate until `stop` is set; with `once`, drain what is committed and return."""
    # Binlog TIMESTAMP values are decoded in the local zone; bronze is UTC throughout.
    os.environ["TZ"] = "UTC"
    time.tzset()
    progress = progress or SilentProgress()
    stop = stop or threading.Event()
    began = time.monotonic()
    creds = cdc_credentials(settings)
    bronze = Bronze(settings, creds.dbname)
    exclude = _excluded(settings)
    try:
        conn = connect(creds)
    except pymysql.err.OperationalError as exc:
        raise ServiceUnavailableError(f"cannot reach the source at {creds.host}:{creds.port} "
                                      f"as `{creds.username}`: {exc.args[-1]}",
                                      service="mariadb", port=creds.port,
                                      hint="run `shoplake stack up`") from exc
    report = CdcReport(full_load=False)
    try:
        tables = discover_tables(conn, creds.dbname, exclude)
        cp = bronze.load_checkpoint()
        if cp is None:
            LOG.info("no checkpoint in s3://%s/%s: running the full load", bronze.bucket,
                     bronze.checkpoint_key)
            cp = full_load(conn, tables, bronze, settings.cdc, progress)
            bronze.save_checkpoint(cp)
            report.full_load = True
            report.full_load_rows = {t: ops.get("L", 0) for t, ops in cp.rows.items()}
        else:
            files = binlog_files(conn)
            if cp.log_file not in {name for name, _ in files}:
                raise BinlogPositionLostError(str(cp.position), files[0][0] if files else "none")
            bronze.delete_uncommitted(cp.last_file)
    finally:
        conn.close()

    replicator = Replicator(creds, settings.cdc, bronze, cp, exclude, progress)
    progress.start("cdc", f"replicating from {cp.position}")
    try:
        replicator.run(blocking=not once, stop=stop)
    except pymysql.err.OperationalError as exc:
        progress.finish("cdc", ok=False, message=str(exc))
        if exc.args and exc.args[0] == 1236:  # the server no longer has our binlog file
            raise BinlogPositionLostError(str(cp.position), "unknown") from exc
        raise ServiceUnavailableError(f"lost the binlog connection: {exc}", service="mariadb",
                                      port=creds.port, hint="rerun `shoplake cdc`; it resumes "
                                      "from its checkpoint") from exc
    progress.finish("cdc", message=f"{replicator.changes} changes in {replicator.files} files, "
                                   f"at {replicator.cp.position}")
    report.changes, report.files = replicator.changes, replicator.files
    report.position = str(replicator.cp.position)
    report.seconds = time.monotonic() - began
    return report


def reset(settings: Settings) -> int:
    """Forget the checkpoint and the bronze files: the next run starts with a full load."""
    creds = cdc_credentials(settings)
    bronze = Bronze(settings, creds.dbname)
    removed = bronze.delete_all()
    bronze.drop_checkpoint()
    return removed
