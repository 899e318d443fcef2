"""Which bronze files a job still has to process, from its bookmark and the current listing."""

from __future__ import annotations

import logging

import pytest

from pipeline.glue.bookmarks import Bookmark, new_files

pytestmark = pytest.mark.unit

LOAD1 = "shop/orders/LOAD00000001.parquet"
LOAD2 = "shop/orders/LOAD00000002.parquet"
CDC1 = "shop/orders/20261126-1134011234.parquet"
CDC2 = "shop/orders/20261126-1200000000.parquet"


def bookmark(processed: dict[str, str]) -> Bookmark:
    return Bookmark("bronze_to_silver", "orders", dict(processed), run_id="r1")


def test_nothing_processed_gives_every_key_sorted() -> None:
    current = {LOAD2: '"b"', CDC1: '"c"', LOAD1: '"a"'}
    assert new_files(bookmark({}), current) == ([CDC1, LOAD1, LOAD2], False)


def test_nothing_processed_and_nothing_there() -> None:
    assert new_files(bookmark({}), {}) == ([], False)


def test_only_files_not_processed_yet_are_new() -> None:
    current = {LOAD1: '"a"', LOAD2: '"b"', CDC2: '"d"', CDC1: '"c"'}
    got = new_files(bookmark({LOAD1: '"a"', LOAD2: '"b"'}), current)
    assert got == ([CDC1, CDC2], False)


def test_everything_processed_gives_nothing() -> None:
    current = {LOAD1: '"a"', CDC1: '"c"'}
    assert new_files(bookmark(current), current) == ([], False)


def test_a_changed_etag_means_bronze_was_rebuilt(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pipeline.glue.bookmarks")
    current = {LOAD1: '"new"', CDC1: '"c"', CDC2: '"d"'}
    got = new_files(bookmark({LOAD1: '"a"', CDC1: '"c"'}), current)
    assert got == ([CDC1, CDC2, LOAD1], True)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "bronze of `orders` was rebuilt since the last run of `bronze_to_silver`: "
                    "reprocessing all 3 files")]


def test_a_vanished_key_means_bronze_was_rebuilt() -> None:
    current = {LOAD1: '"a2"'}  # the CDC file is gone: a new full load replaced everything
    got = new_files(bookmark({LOAD1: '"a"', CDC1: '"c"'}), current)
    assert got == ([LOAD1], True)


def test_a_vanished_key_alone_is_enough_to_rebuild() -> None:
    current = {LOAD1: '"a"', CDC2: '"d"'}
    got = new_files(bookmark({LOAD1: '"a"', CDC1: '"c"'}), current)
    assert got == ([CDC2, LOAD1], True)
