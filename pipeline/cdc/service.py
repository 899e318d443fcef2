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

from pipeline.aws.secrets import DbCredentials, cdc_credentials
from pipeline.cdc.bronze import Bronze
from pipeline.cdc.errors import BinlogPositionLostError, CdcError, CdcSyncTimeoutError
from pipeline.cdc.snapshot import full_load
from pipeline.cdc.source import (
    binlog_files,
    connect,
    current_position,
    discover_tables,
    writer_lock,
)
from pipeline.cdc.stream import Replicator
from pipeline.config import Settings
from pipeline.errors import ServiceUnavailableError, TransientError, first_line
from pipeline.progress import Progress, SilentProgress
from pipeline.source.db import error_code, translate

LOG = logging.getLogger(__name__)


@dataclass
class CdcReport:
    full_load: bool
    full_load_rows: dict[str, int] = field(default_factory=dict)
    changes: int = 0
    files: int = 0
    position: str = ""
    seconds: float = 0.0
    waited_for_follower: bool = False


def _excluded(settings: Settings) -> set[str]:
    return {t.strip() for t in settings.cdc.exclude_tables.split(",") if t.strip()}


LOCK_WAIT_S = 15.0
"""How long a starting follower waits for another writer's lease to be released."""
ONCE_LOCK_WAIT_S = 2.0
"""`--once` waits this long (a killed writer's session closing) before it concludes that a
follower is running and waits for that instead."""
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
    lock = None
    try:
        with _translated(creds, settings):
            # A restarted follower waits briefly for its killed predecessor's session to go.
            lock = writer_lock(creds, creds.dbname, ONCE_LOCK_WAIT_S if once else LOCK_WAIT_S)
            if lock is None:
                if not once:
                    raise CdcError(f"another CDC process is replicating `{creds.dbname}`",
                                   hint="stop it first; `shoplake cdc --once` waits for a "
                                        "running follower instead of writing itself")
                _wait_for_follower(settings, creds, bronze, progress, report)
                return
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
        progress.finish("cdc", ok=False, message=first_line(exc))
        raise
    finally:
        if lock is not None:
            lock.close()
    progress.finish("cdc", message=f"{report.changes} changes in {report.files} files, "
                                   f"at {report.position}")


def sync_with_follower(settings: Settings, progress: Progress | None = None
                       ) -> CdcReport | None:
    """The "wait for DMS sync" step: when a follower runs (it holds the writer lease), wait
    until it has replicated everything committed now. None when no follower runs; the
    caller then replicates itself (`run(settings, once=True)`, "replicate now")."""
    progress = progress or SilentProgress()
    creds = cdc_credentials(settings)
    bronze = Bronze(settings, creds.dbname)
    began = time.monotonic()
    with _translated(creds, settings):
        lock = writer_lock(creds, creds.dbname, 0)
        if lock is not None:  # nobody replicates: no follower to wait for
            lock.close()
            return None
        report = CdcReport(full_load=False)
        _wait_for_follower(settings, creds, bronze, progress, report)
    report.seconds = time.monotonic() - began
    return report


def _wait_for_follower(settings: Settings, creds: DbCredentials, bronze: Bronze,
                       progress: Progress, report: CdcReport) -> None:
    """`--once` beside a running follower: wait until its checkpoint passes what is
    committed now (the "wait for DMS sync" step), without writing anything."""
    conn = connect(creds)
    try:
        target = current_position(conn)
    finally:
        conn.close()
    progress.start("cdc", f"a follower is running: waiting for it to reach {target}")
    deadline = time.monotonic() + settings.cdc.sync_timeout_s
    while True:
        cp = bronze.load_checkpoint()
        if cp is not None and not cp.position < target:
            report.position, report.waited_for_follower = str(cp.position), True
            progress.finish("cdc", message=f"the follower reached {cp.position}")
            return
        if time.monotonic() > deadline:
            raise CdcSyncTimeoutError(str(target), str(cp.position) if cp else "none",
                                      settings.cdc.sync_timeout_s)
        time.sleep(0.5)


@contextlib.contextmanager
def _translated(creds: DbCredentials, settings: Settings) -> Iterator[None]:
    """Driver errors as shoplake errors: transient (retry) or terminal (stop), by code."""
    try:
        yield
    except pymysql.err.Error as exc:
        if error_code(exc) == 1236:  # the server no longer has the binlog file we asked for
            raise BinlogPositionLostError("checkpoint", "unknown") from exc
        raise translate(exc, creds, "replicating the binlog") from exc
    except (EndpointConnectionError, ConnectionClosedError) as exc:
        raise ServiceUnavailableError(f"S3 at {settings.localstack.endpoint_url} is "
                                      f"unreachable: {exc}", service="localstack",
                                      port=settings.localstack.port,
                                      hint="run `shoplake stack up`") from exc


def reset(settings: Settings) -> int:
    """Forget the checkpoint and the bronze files: the next run starts with a full load."""
    creds = cdc_credentials(settings)
    bronze = Bronze(settings, creds.dbname)
    lock = writer_lock(creds, creds.dbname, 0)
    if lock is None:
        raise CdcError(f"a CDC process is replicating `{creds.dbname}`; resetting under it "
                       "would mix two loads", hint="stop `shoplake cdc` first")
    try:
        removed = bronze.delete_all()
        bronze.drop_checkpoint()
    finally:
        lock.close()
    return removed
