"""The lake on disk: what LocalStack's S3 and moto's Glue catalog forget when they stop.

LocalStack community keeps every object in memory (persistence is a Pro feature) and moto
keeps the catalog in memory, while MariaDB and PostgreSQL keep their data. A restart
would leave the warehouse and silver's Iceberg catalog (in PostgreSQL) pointing at files
that are gone, and the CDC's checkpoint (in bronze) lost, so the next run would take a new
full snapshot and rebuild everything.

So the stack keeps a mirror of the lake in its state folder (`<state>/lake`): `save` copies
what changed since the last save (compared by ETag and size: bronze's DMS files and
silver's Iceberg files never change once written, so a save copies what landed since), and
`restore` puts the save back into buckets that came up empty. `stack down` saves before it
stops LocalStack, and so does the end of every run, so a crash loses at most what landed
after the last run.

What keeps a save whole and consistent:
- each saved version of an object is its own file, named by a digest of bucket, key and
  ETag (never a path built from the key): a save never overwrites what the previous
  manifest points at, and any key maps to a file;
- the manifest is written last and atomically; files only the previous manifest named are
  removed after it, so a save interrupted anywhere leaves the previous one whole;
- the CDC's checkpoints are listed and copied first, at the version listed (IfMatch), then
  everything else: every file a saved checkpoint covers was written before it, so it is in
  the save (files after it are ones the CDC drops as uncommitted when it resumes);
- a save takes the run lease (shared from a run's report, passing through inside `run
  --local`): no run commits to silver while it is copied; and one save or restore at a
  time on this state folder (an flock), whichever process;
- a restore holds the CDC's single-writer lock (no follower writes bronze meanwhile), puts
  the checkpoints back last, and leaves a marker until it is complete: while the marker
  is there, saves are refused and the next `stack up` finishes the restore.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from pipeline.config import Settings
from pipeline.errors import ServiceUnavailableError, TerminalError, TransientError, first_line
from pipeline.progress import Progress, SilentProgress

LOG = logging.getLogger(__name__)

THREADS = 8
"""Objects copied at once each way (small files: the time is per request)."""

VERSION = 2
"""The manifest's format; a manifest of another version counts as no save."""

CONTROL_PREFIXES = ("_shoplake_cdc/",)
"""Keys saved first and restored last: the CDC's checkpoints (pipeline/cdc/bronze.py)."""

LOCK_WAIT_S = 120.0


class LakeEmptyError(TerminalError):
    def __init__(self, settings: Settings, saved_at: str) -> None:
        super().__init__(
            f"the lake's buckets are empty but its save in {mirror_dir(settings)} (of "
            f"{saved_at}) is not: LocalStack restarted, and the save is kept",
            hint="run `shoplake stack up`: it puts the save back")


class RestorePendingError(TerminalError):
    def __init__(self, settings: Settings) -> None:
        super().__init__(
            f"a restore of the lake from {mirror_dir(settings)} did not finish: the save "
            "is kept until it does", hint="run `shoplake stack up`: it finishes the restore")


@dataclass(frozen=True)
class LakeCopy:
    """What a save or restore did."""

    objects: int
    """Objects in the lake (save) or in the save (restore)."""
    copied: int
    """Objects copied this time (save: new or changed; restore: put back)."""
    removed: int
    bytes: int
    """Bytes copied this time."""
    tables: int
    """Catalog tables saved or registered again."""
    seconds: float

    def describe(self) -> str:
        return (f"{self.copied} of {self.objects} object(s), {_size(self.bytes)}, "
                f"{self.tables} catalog table(s) in {self.seconds:.1f} s")


def mirror_dir(settings: Settings) -> Path:
    return settings.state_dir / "lake"


def _manifest_path(settings: Settings) -> Path:
    return mirror_dir(settings) / "manifest.json"


def _marker(settings: Settings) -> Path:
    return mirror_dir(settings) / "restore-pending"


def _file_id(bucket: str, key: str, etag: str) -> str:
    return hashlib.sha256(f"{bucket}\0{key}\0{etag}".encode()).hexdigest()[:40]


def _object_path(settings: Settings, file_id: str) -> Path:
    return mirror_dir(settings) / "objects" / file_id[:2] / file_id


@contextlib.contextmanager
def _exclusive(settings: Settings, what: str) -> Iterator[None]:
    """One save or restore at a time on this state folder, across processes."""
    folder = mirror_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_WAIT_S
    with (folder / ".lock").open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TransientError(f"{what}: another save or restore of the lake in "
                                         f"{folder} took longer than {LOCK_WAIT_S:.0f} s",
                                         hint="try again once it ended") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_manifest(settings: Settings) -> dict[str, Any]:
    """The last save's manifest ({} when the lake was never saved)."""
    try:
        manifest = json.loads(_manifest_path(settings).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        LOG.warning("the lake's manifest %s is unreadable (%s): it is ignored",
                    _manifest_path(settings), exc)
        return {}
    if manifest.get("version") != VERSION:
        LOG.warning("the lake's save in %s is of another format (version %s, not %s): it is "
                    "ignored, and the next save replaces it", mirror_dir(settings),
                    manifest.get("version", 1), VERSION)
        return {}
    return manifest


def size_on_disk(settings: Settings) -> tuple[int, int]:
    """(objects, bytes) of the last save, from its manifest."""
    buckets = read_manifest(settings).get("buckets", {})
    objects = sum(len(keys) for keys in buckets.values())
    return objects, sum(e["size"] for keys in buckets.values() for e in keys.values())


def size_line(settings: Settings) -> str:
    """`stack status`'s line about the lake: what the buckets hold now, and the last save."""
    from pipeline.aws.clients import aws_client
    from pipeline.stack.localstack import LocalStackService
    from pipeline.stack.manager import process_of

    try:
        if process_of(settings, LocalStackService(settings)).running() is None:
            raise RuntimeError("LocalStack is not running")
        s3 = aws_client(settings, "s3")
        listed = [_list(s3, b) for b in settings.lake.buckets]
        live = (f"{sum(len(x) for x in listed)} object(s), "
                f"{_size(sum(size for x in listed for _, size in x.values()))} in S3")
    except Exception as exc:  # noqa: BLE001 - a status line, never a failure
        live = f"S3 not readable ({first_line(exc)[:60]})"
    if not settings.stack.keep_lake:
        return f"lake: {live}; not kept on disk (`stack.keep_lake` is off)"
    if _marker(settings).exists():
        return f"lake: {live}; a restore did not finish (`stack up` finishes it)"
    saved = read_manifest(settings).get("saved_at")
    if not saved:
        return f"lake: {live}; never saved to {mirror_dir(settings)}"
    objects, size = size_on_disk(settings)
    return (f"lake: {live}; saved {saved[:19].replace('T', ' ')} UTC: {objects} object(s), "
            f"{_size(size)} in {mirror_dir(settings)}")


def _list(s3: Any, bucket: str, prefix: str = "") -> dict[str, tuple[str, int]]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            out[item["Key"]] = (item["ETag"], int(item["Size"]))
    return out


def _control(key: str) -> bool:
    return key.startswith(CONTROL_PREFIXES)


def _any_object(s3: Any, bucket: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=bucket, MaxKeys=1).get("Contents"))


# -- save ---------------------------------------------------------------------------------------
def save(settings: Settings, progress: Progress | None = None) -> LakeCopy:
    """Copy what changed in the lake's buckets and catalog since the last save (the caller
    holds the run lease, or no run can be writing)."""
    progress = progress or SilentProgress()
    with _exclusive(settings, "saving the lake"):
        if _marker(settings).exists():
            raise RestorePendingError(settings)
        return _save(settings, progress)


def _save(settings: Settings, progress: Progress) -> LakeCopy:
    from pipeline.aws.clients import aws_client

    began = time.monotonic()
    s3 = aws_client(settings, "s3")
    old_manifest = read_manifest(settings)
    old = old_manifest.get("buckets", {})
    new: dict[str, dict[str, dict[str, Any]]] = {b: {} for b in settings.lake.buckets}
    copied = {"objects": 0, "bytes": 0}

    def fetch(item: tuple[str, str, str, int]) -> tuple[str, str, dict[str, Any] | None]:
        bucket, key, etag, _ = item
        file_id = _file_id(bucket, key, etag)
        path = _object_path(settings, file_id)
        try:
            # The listing's version only: an object rewritten since (a checkpoint) could
            # name files the listing did not see.
            answer = s3.get_object(Bucket=bucket, Key=key, IfMatch=etag)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                return bucket, key, None  # deleted since the listing: not in this save
            if code in ("PreconditionFailed", "412"):
                return bucket, key, {}  # rewritten since: the version saved before stays
            raise
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
        try:
            with part.open("wb") as out:
                shutil.copyfileobj(answer["Body"], out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            part.replace(path)
        finally:
            part.unlink(missing_ok=True)
        progress.update("lake:save", advance=1)
        return bucket, key, {"etag": etag, "size": int(answer["ContentLength"]),
                             "type": answer.get("ContentType") or "", "file": file_id}

    def copy_phase(listed: dict[str, dict[str, tuple[str, int]]]) -> None:
        todo = []
        for bucket, keys in listed.items():
            for key, (etag, size) in keys.items():
                kept = old.get(bucket, {}).get(key)
                if kept and kept["etag"] == etag and kept["size"] == size \
                        and _object_path(settings, kept["file"]).is_file():
                    new[bucket][key] = kept
                else:
                    todo.append((bucket, key, etag, size))
        progress.update("lake:save", description=f"saving the lake: {len(todo)} new "
                        "object(s)")
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            for bucket, key, entry in pool.map(fetch, todo):
                if entry:
                    new[bucket][key] = entry
                    copied["objects"] += 1
                    copied["bytes"] += entry["size"]
                elif entry == {} and key in old.get(bucket, {}):
                    new[bucket][key] = old[bucket][key]

    progress.start("lake:save", "saving the lake")
    # First the checkpoints, then everything else (see the module's docstring).
    copy_phase({b: {k: v for p in CONTROL_PREFIXES for k, v in _list(s3, b, p).items()}
                for b in settings.lake.buckets})
    rest = {b: {k: v for k, v in _list(s3, b).items() if not _control(k)}
            for b in settings.lake.buckets}
    if any(old.values()) and not any(new.values()) and not any(rest.values()):
        # An empty lake where the last save had objects: LocalStack restarted and nothing
        # restored it yet. Saving now would throw the save away.
        progress.finish("lake:save", ok=False, message="refused: the lake is empty")
        raise LakeEmptyError(settings, old_manifest.get("saved_at", "?"))
    copy_phase(rest)
    try:
        tables = _catalog(settings)
    except ServiceUnavailableError as exc:
        LOG.warning("%s: the catalog's last save is kept", exc.message)
        tables = old_manifest.get("catalog", {})
    manifest = {"version": VERSION, "saved_at": datetime.now(UTC).isoformat(),
                "buckets": new, "catalog": tables}
    path = _manifest_path(settings)
    tmp = path.with_name(f".manifest.{uuid.uuid4().hex}.part")
    try:
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(manifest, out, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    keep = {e["file"] for keys in new.values() for e in keys.values()}
    removed = 0
    for keys in old.values():
        for entry in keys.values():
            if entry["file"] not in keep:
                _object_path(settings, entry["file"]).unlink(missing_ok=True)
                removed += 1
    result = LakeCopy(sum(len(k) for k in new.values()), copied["objects"], removed,
                      copied["bytes"], sum(len(t) for t in tables.values()),
                      time.monotonic() - began)
    progress.finish("lake:save", message=f"saved {result.describe()}")
    LOG.info("lake saved to %s: %s", mirror_dir(settings), result.describe())
    return result


def _catalog(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Every table of the lake's catalog databases, as TableInputs."""
    from pipeline.catalog.store import TABLE_INPUT_KEYS, list_tables

    out = {}
    for database in (settings.glue.database,):
        out[database] = [{k: t[k] for k in TABLE_INPUT_KEYS if k in t}
                         for t in list_tables(settings, database)]
    return out


def save_after_run(settings: Settings, what: str, shared: bool) -> dict[str, Any]:
    """The end of a run (`what`): save the lake, so a crash loses only what lands after
    it. Holds the run lease (`shared` from a state-machine report; inside `run --local`
    the lease it holds already); never fails the run: a save that fails is named, and
    the last one stays."""
    if not settings.stack.keep_lake or settings.mode != "native":
        return {}
    from pipeline.orchestration.lease import run_lease

    try:
        with run_lease(settings, f"saving the lake after {what}", wait_s=30.0,
                       shared=shared):
            done = save(settings)
    except Exception as exc:  # noqa: BLE001 - the run's work is done and committed
        LOG.warning("the lake was not saved after %s: %s (the save of %s stays)", what,
                    first_line(exc), read_manifest(settings).get("saved_at", "never"))
        return {"lake_saved": False}
    return {"lake_saved": done.copied, "lake_save_s": round(done.seconds, 2)}


# -- restore ------------------------------------------------------------------------------------
def restore(settings: Settings, progress: Progress | None = None) -> LakeCopy | None:
    """Put the last save back into buckets that came up empty (LocalStack restarted), or
    finish a restore that did not, and register catalog tables moto lost; None when there
    is no save or nothing was lost.

    Objects go back only into a lake whose buckets are all empty (or whose restore did not
    finish): a LocalStack that kept running deleted what is not there on purpose (the CDC
    drops files past its checkpoint when it resumes), and putting those back would replay
    changes twice."""
    progress = progress or SilentProgress()
    with _exclusive(settings, "restoring the lake"):
        return _restore(settings, progress)


def _restore(settings: Settings, progress: Progress) -> LakeCopy | None:
    from pipeline.aws.clients import aws_client
    from pipeline.catalog.store import ensure_database, find_table, put_table

    manifest = read_manifest(settings)
    if not manifest:
        _marker(settings).unlink(missing_ok=True)
        return None
    began = time.monotonic()
    s3 = aws_client(settings, "s3")
    pending = _marker(settings).exists()
    lost = pending or all(not _any_object(s3, b) for b in settings.lake.buckets)
    saved = {b: keys for b, keys in manifest.get("buckets", {}).items()
             if b in settings.lake.buckets}  # a renamed bucket's old contents are not ours
    todo: list[tuple[str, str, dict[str, Any]]] = []
    writer = None
    if lost and any(saved.values()):
        writer = _cdc_writer(settings)
        if writer is None:
            progress.finish("lake:restore", ok=False, message="not restored: a CDC follower "
                            "is writing bronze")
            LOG.warning("the lake was not restored from %s: a CDC follower (`shoplake cdc`) "
                        "holds bronze's writer lock. Stop it and run `shoplake stack up` "
                        "again; left as is, the CDC starts bronze anew from a full load",
                        mirror_dir(settings))
            return None
        _marker(settings).write_text(datetime.now(UTC).isoformat(), encoding="utf-8")
        for bucket, keys in saved.items():
            there = _list(s3, bucket)
            todo += [(bucket, key, entry) for key, entry in keys.items()
                     if there.get(key, ("", -1))[0] != entry["etag"]]
        # Checkpoints last: they may only name files that are back already.
        todo.sort(key=lambda item: _control(item[1]))
    tables = [(db, t) for db, ts in manifest.get("catalog", {}).items() for t in ts]
    missing_tables = [(db, t) for db, t in tables
                      if find_table(settings, t["Name"], db) is None]
    if not todo and not missing_tables:
        if writer is not None:
            writer.close()
        _marker(settings).unlink(missing_ok=True)
        return None
    progress.start("lake:restore", f"restoring the lake from {mirror_dir(settings)}: "
                   f"{len(todo)} object(s)", total=len(todo) or None)

    def put(item: tuple[str, str, dict[str, Any]]) -> int:
        bucket, key, entry = item
        extra = {"ContentType": entry["type"]} if entry.get("type") else {}
        with _object_path(settings, entry["file"]).open("rb") as body:
            s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
        progress.update("lake:restore", advance=1)
        return int(entry["size"])

    try:
        gone = {(b, k) for b, k, e in todo if not _object_path(settings, e["file"]).is_file()}
        if gone:
            first = min(gone)
            LOG.warning("the lake's save lacks %d file(s) its manifest lists (first: "
                        "s3://%s/%s): they are not restored, and the next run rebuilds what "
                        "needs them", len(gone), *first)
            todo = [t for t in todo if (t[0], t[1]) not in gone]
        data = [t for t in todo if not _control(t[1])]
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            copied = sum(pool.map(put, data))
        copied += sum(put(t) for t in todo if _control(t[1]))
        for database in {db for db, _ in missing_tables}:
            ensure_database(settings, database)
        for database, table in missing_tables:
            put_table(settings, {**table, "DatabaseName": database}, new_version=False)
        _marker(settings).unlink(missing_ok=True)
    except Exception as exc:
        progress.finish("lake:restore", ok=False, message=f"stopped: {first_line(exc)}")
        raise
    finally:
        if writer is not None:
            writer.close()
    objects = sum(len(k) for k in saved.values())
    result = LakeCopy(objects, len(todo), 0, copied, len(missing_tables),
                      time.monotonic() - began)
    progress.finish("lake:restore", message=f"restored {result.describe()} (saved "
                    f"{manifest.get('saved_at', '?')})")
    LOG.info("lake restored from %s: %s", mirror_dir(settings), result.describe())
    return result


def _cdc_writer(settings: Settings) -> Any | None:
    """The CDC's single-writer lock on bronze (a MariaDB GET_LOCK), or None when a
    follower holds it."""
    from pipeline.aws.secrets import cdc_credentials
    from pipeline.cdc.source import writer_lock

    creds = cdc_credentials(settings)
    return writer_lock(creds, creds.dbname, 10.0)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
