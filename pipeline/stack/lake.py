"""The lake on disk: what LocalStack's S3 and moto's Glue catalog forget when they stop.

LocalStack community keeps every object in memory (persistence is a Pro feature) and moto
keeps the catalog in memory, while MariaDB and PostgreSQL keep their data. A restart
would leave the warehouse and silver's Iceberg catalog (in PostgreSQL) pointing at files
that are gone, and the CDC's checkpoint (in bronze) lost, so the next run would take a new
full snapshot and rebuild everything.

So the stack keeps a mirror of the lake in its state folder (`<state>/lake`): `save` copies
what changed since the last save (objects are compared by ETag and size; bronze's DMS files
and silver's Iceberg files never change once written, so a save costs what landed since),
and `restore` puts back what the buckets lack when they come up empty. `stack down` saves
before it stops LocalStack, and so does the end of every run (the worker's report step),
so a crash loses at most what landed after the last run. The catalog's databases and
tables are saved beside the objects.

On disk: `objects/<bucket>/<key>` and `manifest.json` ({bucket: {key: [etag, size,
content type]}}, the catalog, when it was saved). The manifest is written last and
atomically, and files it no longer lists are removed only after it: a save interrupted
anywhere leaves the previous save whole.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from pipeline.config import Settings
from pipeline.errors import ServiceUnavailableError, TerminalError, first_line
from pipeline.progress import Progress, SilentProgress

LOG = logging.getLogger(__name__)

THREADS = 8
"""Objects copied at once each way (small files: the time is per request)."""

_LOCK = threading.Lock()
"""One save at a time in this process (a worker's pollers may end runs side by side)."""


class LakeEmptyError(TerminalError):
    def __init__(self, settings: Settings, saved_at: str) -> None:
        super().__init__(
            f"the lake's buckets are empty but its save in {mirror_dir(settings)} (of "
            f"{saved_at}) is not: LocalStack restarted, and the save is kept",
            hint="run `shoplake stack up`: it puts the save back")


@dataclass(frozen=True)
class LakeCopy:
    """What a save or restore did."""

    objects: int
    """Objects in the lake (save) or put back (restore)."""
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


def _object_path(settings: Settings, bucket: str, key: str) -> Path:
    if key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"refusing to mirror s3://{bucket}/{key}: not a plain key")
    return mirror_dir(settings) / "objects" / bucket / key


def read_manifest(settings: Settings) -> dict[str, Any]:
    """The last save's manifest ({} when the lake was never saved)."""
    try:
        return json.loads(_manifest_path(settings).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        LOG.warning("the lake's manifest %s is unreadable (%s): it is ignored",
                    _manifest_path(settings), exc)
        return {}


def size_on_disk(settings: Settings) -> tuple[int, int]:
    """(objects, bytes) of the last save, from its manifest."""
    buckets = read_manifest(settings).get("buckets", {})
    objects = sum(len(keys) for keys in buckets.values())
    return objects, sum(entry[1] for keys in buckets.values() for entry in keys.values())


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
    saved = read_manifest(settings).get("saved_at")
    if not settings.stack.keep_lake:
        return f"lake: {live}; not kept on disk (`stack.keep_lake` is off)"
    if not saved:
        return f"lake: {live}; never saved to {mirror_dir(settings)}"
    objects, size = size_on_disk(settings)
    return (f"lake: {live}; saved {saved[:19].replace('T', ' ')} UTC: {objects} object(s), "
            f"{_size(size)} in {mirror_dir(settings)}")


def _list(s3: Any, bucket: str) -> dict[str, tuple[str, int]]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            out[item["Key"]] = (item["ETag"], int(item["Size"]))
    return out


def _any_object(s3: Any, bucket: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=bucket, MaxKeys=1).get("Contents"))


def save(settings: Settings, progress: Progress | None = None) -> LakeCopy:
    """Copy what changed in the lake's buckets and catalog since the last save."""
    from pipeline.aws.clients import aws_client

    progress = progress or SilentProgress()
    began = time.monotonic()
    with _LOCK:
        s3 = aws_client(settings, "s3")
        old = read_manifest(settings).get("buckets", {})
        new: dict[str, dict[str, list[Any]]] = {}
        todo: list[tuple[str, str, int]] = []
        etags: dict[tuple[str, str], str] = {}
        for bucket in settings.lake.buckets:
            listed = _list(s3, bucket)
            etags |= {(bucket, k): e for k, (e, _) in listed.items()}
            before = old.get(bucket, {})
            new[bucket] = {}
            for key, (etag, size) in listed.items():
                kept = before.get(key)
                if kept and kept[0] == etag and kept[1] == size \
                        and _object_path(settings, bucket, key).is_file():
                    new[bucket][key] = kept
                else:
                    todo.append((bucket, key, size))
        if old and any(old.values()) and not any(new.values()) and not todo:
            # An empty lake where the last save had objects: LocalStack restarted and
            # nothing restored it yet. Saving now would throw the mirror away.
            raise LakeEmptyError(settings, read_manifest(settings).get("saved_at", "?"))
        progress.start("lake:save", f"saving the lake: {len(todo)} new object(s)",
                       total=len(todo) or None)

        def fetch(item: tuple[str, str, int]) -> tuple[str, str, list[Any] | None]:
            bucket, key, _ = item
            path = _object_path(settings, bucket, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_name(f".{path.name}.part")
            try:
                # The listing's version only: an object rewritten since (the CDC's
                # checkpoint) could name files the listing did not see.
                answer = s3.get_object(Bucket=bucket, Key=key, IfMatch=etags[(bucket, key)])
            except s3.exceptions.NoSuchKey:
                return bucket, key, None  # deleted since the listing
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed",
                                                                     "412"):
                    raise
                return bucket, key, None  # changed since the listing: the next save
            with part.open("wb") as out:
                shutil.copyfileobj(answer["Body"], out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            part.replace(path)
            progress.update("lake:save", advance=1)
            return bucket, key, [answer["ETag"], int(answer["ContentLength"]),
                                 answer.get("ContentType") or ""]

        copied = 0
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            for bucket, key, entry in pool.map(fetch, todo):
                if entry is not None:
                    new[bucket][key] = entry
                    copied += entry[1]
                elif key in old.get(bucket, {}) and \
                        _object_path(settings, bucket, key).is_file():
                    new[bucket][key] = old[bucket][key]  # keep the version saved before
        try:
            tables = _catalog(settings)
        except ServiceUnavailableError as exc:
            LOG.warning("%s: the catalog's last save is kept", exc.message)
            tables = read_manifest(settings).get("catalog", {})
        manifest = {"saved_at": datetime.now(UTC).isoformat(), "buckets": new,
                    "catalog": tables}
        path = _manifest_path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".manifest.json.part")
        tmp.write_text(json.dumps(manifest, sort_keys=True), encoding="utf-8")
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
        removed = 0
        for bucket, keys in old.items():
            for key in set(keys) - set(new.get(bucket, {})):
                _object_path(settings, bucket, key).unlink(missing_ok=True)
                removed += 1
    result = LakeCopy(sum(len(k) for k in new.values()), len(todo), removed, copied,
                      sum(len(t) for t in tables.values()), time.monotonic() - began)
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


def restore(settings: Settings, progress: Progress | None = None) -> LakeCopy | None:
    """Put the last save back into buckets that came up empty (LocalStack restarted), and
    catalog tables moto lost; None when there is no save or nothing was lost.

    Objects go back only into a lake whose buckets are all empty: a LocalStack that kept
    running deleted what is not there on purpose (the CDC drops files past its checkpoint
    when it restarts), and putting those back would replay changes twice."""
    from pipeline.aws.clients import aws_client
    from pipeline.catalog.store import ensure_database, find_table, put_table

    manifest = read_manifest(settings)
    if not manifest:
        return None
    progress = progress or SilentProgress()
    began = time.monotonic()
    s3 = aws_client(settings, "s3")
    todo = []
    objects = 0
    empty = all(not _any_object(s3, b) for b in settings.lake.buckets)
    for bucket, keys in manifest.get("buckets", {}).items():
        if bucket not in settings.lake.buckets or not empty:
            continue  # a bucket renamed since: its old contents are not this lake's
        objects += len(keys)
        todo += [(bucket, key, entry) for key, entry in keys.items()]
    tables = [(db, t) for db, ts in manifest.get("catalog", {}).items() for t in ts]
    missing_tables = [(db, t) for db, t in tables
                      if find_table(settings, t["Name"], db) is None]
    if not todo and not missing_tables:
        return None
    progress.start("lake:restore", f"restoring the lake from {mirror_dir(settings)}: "
                   f"{len(todo)} object(s)", total=len(todo) or None)

    def put(item: tuple[str, str, list[Any]]) -> int:
        bucket, key, entry = item
        path = _object_path(settings, bucket, key)
        extra = {"ContentType": entry[2]} if len(entry) > 2 and entry[2] else {}
        with path.open("rb") as body:
            s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
        progress.update("lake:restore", advance=1)
        return int(entry[1])

    gone = [(b, k) for b, k, _ in todo if not _object_path(settings, b, k).is_file()]
    if gone:
        LOG.warning("the lake's mirror lacks %d file(s) its manifest lists (first: "
                    "s3://%s/%s): they are not restored, and the next run rebuilds what "
                    "needs them", len(gone), *gone[0])
        todo = [t for t in todo if (t[0], t[1]) not in set(gone)]
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        copied = sum(pool.map(put, todo))
    for database in {db for db, _ in missing_tables}:
        ensure_database(settings, database)
    for database, table in missing_tables:
        put_table(settings, {**table, "DatabaseName": database}, new_version=False)
    result = LakeCopy(objects, len(todo), 0, copied, len(missing_tables),
                      time.monotonic() - began)
    progress.finish("lake:restore", message=f"restored {result.describe()} (saved "
                    f"{manifest.get('saved_at', '?')})")
    LOG.info("lake restored from %s: %s", mirror_dir(settings), result.describe())
    return result


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def save_after_run(settings: Settings, what: str) -> dict[str, Any]:
    """The end of a run (`what`): save the lake, so a crash loses only what lands after
    it. Never fails the run: a save that fails is named, and the last one stays."""
    if not settings.stack.keep_lake or settings.mode != "native":
        return {}
    try:
        done = save(settings)
    except Exception as exc:  # noqa: BLE001 - the run's work is done and committed
        LOG.warning("the lake was not saved after %s: %s (the save of %s stays)", what,
                    first_line(exc), read_manifest(settings).get("saved_at", "never"))
        return {"lake_saved": False}
    return {"lake_saved": done.copied, "lake_save_s": round(done.seconds, 2)}
