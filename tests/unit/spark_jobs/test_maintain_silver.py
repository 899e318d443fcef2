"""When maintain_silver compacts or expires a silver table: its thresholds."""

from __future__ import annotations

import time

import pytest

from pipeline.config import load_settings
from spark_jobs.maintain_silver import due

pytestmark = pytest.mark.unit

NOW_MS = int(time.time() * 1000)


def health(**over: int) -> dict[str, int]:
    return {"data_files": 4, "delete_files": 0, "rows": 1000, "position_deletes": 0,
            "snapshots": 3, "oldest_snapshot_ms": NOW_MS, **over}


def test_a_fresh_small_table_needs_nothing() -> None:
    assert due(load_settings(), health()) == {}


def test_many_files_or_many_deletes_make_compaction_due() -> None:
    settings = load_settings()
    many = settings.lake.compact_min_files + 1
    assert "data files" in due(settings, health(data_files=many))["compact"]
    deleted = due(settings, health(delete_files=2, position_deletes=300))
    assert "position deletes 30.0% of rows" in deleted["compact"]
    # a few deletes are cheaper to apply on read than to rewrite
    assert due(settings, health(delete_files=2, position_deletes=10)) == {}


def test_old_snapshots_expire_but_the_latest_are_kept() -> None:
    settings = load_settings()
    old = NOW_MS - int((settings.lake.snapshot_retention_hours + 1) * 3_600_000)
    keep = settings.lake.snapshots_retained
    assert "expire" in due(settings, health(snapshots=keep + 1, oldest_snapshot_ms=old))
    assert due(settings, health(snapshots=keep, oldest_snapshot_ms=old)) == {}


def test_force_does_what_can_be_done() -> None:
    settings = load_settings()
    assert due(settings, health(snapshots=30), force=True) == {
        "compact": "requested", "expire": "requested"}
    assert due(settings, health(data_files=1, snapshots=1), force=True) == {}
