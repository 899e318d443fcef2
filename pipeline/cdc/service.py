"""`shoplake cdc`: full load when there is no checkpoint, then replicate the binlog."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pymysql
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

from pipeline.aws.secrets import cdc_credentials
from pipeline.cdc.bronze import Bronze
from pipeline.cdc.errors import BinlogPositionLostError
from pipeline.cdc.snapshot import full_load
from pipeline.cdc.source import binlog_files, connect, discover_tables
from pipeline.cdc.stream import Replicator
from pipeline.config import Settings
from pipeline.errors import ServiceUnavailableError, TransientError
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


RETRY_MAX_S = 30.0
"""Longest wait between attempts when the source or S3 is unreachable (follow mode)."""


def run(settings: Settings, once: bool = False, progress: Progress | None = None,
        stop: threading.Event | None = None) -> CdcReport:
    """Replicate until `stop` is set; with `once`, drain what is committed and return.

    Following, a transient failure (the source restarting, S3 unreachable) is retried from
    the checkpoint with a growing pause; a terminal one (no primary key, a purged binlog)
    stops the service. With `once`, every failure is raised.
    """
    progress = progress or SilentProgress()
    stop = stop or threading.Event()
    began = time.monotonic()
    report = CdcReport(full_load=False)
    delay = 1.0
    while True:
        try:
            _attempt(settings, once, progress, stop, report)
            break
        except TransientError as exc:
            if once or stop.is_set():
                raise
            LOG.warning("%s; retrying from the checkpoint in %.0fs", exc.message, delay)
            if stop.wait(delay):
                break
            delay = min(delay * 2, RETRY_MAX_S)
    report.seconds = time.monotonic() - began
    return report


def _attempt(settings: Settings, once: bool, progress: Progress, stop: threading.Event,
             report: CdcReport) -> None:
    """One connection's worth of work: load or resume the checkpoint, then replicate."""
    creds = cdc_credentials(settings)
    bronze = Bronze(settings, creds.dbname)
    exclude = _excluded(settings)
    try:
        with _translated(creds.host, creds.port, settings):
            conn = connect(creds)
            try:
                tables = discover_tables(conn, creds.dbname, exclude)
                cp = bronze.load_checkpoint()
                if cp is None:
                    LOG.info("no checkpoint in s3://%s/%s: running the full load",
                             bronze.bucket, bronze.checkpoint_key)
                    cp = full_load(conn, tables, bronze, settings.cdc, progress)
                    bronze.save_checkpoint(cp)
                    report.full_load = True
                    report.full_load_rows = {t: ops.get("L", 0) for t, ops in cp.rows.items()}
                else:
                    files = binlog_files(conn)
                    if cp.log_file not in {name for name, _ in files}:
                        raise BinlogPositionLostError(str(cp.position),
                                                      files[0][0] if files else "none")
                    bronze.delete_uncommitted(cp.last_file)
            finally:
                conn.close()
            replicator = Replicator(creds, settings.cdc, bronze, cp, exclude, progress,
                                    {t.name for t in tables})
            progress.start("cdc", f"replicating from {cp.position}")
            try:
                replicator.run(blocking=not once, stop=stop)
            finally:
                report.changes += replicator.changes
                report.files += replicator.files
                report.position = str(replicator.cp.position)
    except Exception as exc:
        progress.finish("cdc", ok=False, message=str(exc).splitlines()[0])
        raise
    progress.finish("cdc", message=f"{report.changes} changes in {report.files} files, "
                                   f"at {report.position}")


@contextlib.contextmanager
def _translated(host: str, port: int, settings: Settings) -> Iterator[None]:
    """Driver errors as shoplake errors: transient (retry) or terminal (stop), by type."""
    try:
        yield
    except pymysql.err.OperationalError as exc:
        code = exc.args[0] if exc.args else 0
        if code == 1236:  # the server no longer has the binlog file we asked for
            raise BinlogPositionLostError("checkpoint", "unknown") from exc
        if code in (1044, 1045, 1227):  # access denied: retrying will not help
            raise
        raise ServiceUnavailableError(f"the source at {host}:{port} is unreachable: "
                                      f"{exc.args[-1]}", service="mariadb", port=port,
                                      hint="run `shoplake stack up`") from exc
    except (EndpointConnectionError, ConnectionClosedError) as exc:
        raise ServiceUnavailableError(f"S3 at {settings.localstack.endpoint_url} is "
                                      f"unreachable: {exc}", service="localstack",
                                      port=settings.localstack.port,
                                      hint="run `shoplake stack up`") from exc


def reset(settings: Settings) -> int:
    """Forget the checkpoint and the bronze files: the next run starts with a full load."""
    creds = cdc_credentials(settings)
    bronze = Bronze(settings, creds.dbname)
    removed = bronze.delete_all()
    bronze.drop_checkpoint()
    return removed
