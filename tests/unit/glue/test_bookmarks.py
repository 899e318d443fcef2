"""Which bronze files a job still has to process, from its bookmark and the current listing."""

from __future__ import annotations

import json
import logging

import pytest

from pipeline.glue.bookmarks import Bookmark, new_files

pytestmark = pytest.mark.unit

LOAD1 = "shop/orders/LOAD00000001.parquet"
LOAD2 = "shop/orders/LOAD00000002.parquet"
CDC1 = "shop/orders/20261126-1134011234.parquet"
CDC2 = "shop/orders/20261126-1200000000.parquet"


def bookmark(processed: dict[str, str]) -> Bookmark:
    """The bookmark after processing `processed`, through the old layout's migration."""
    return Bookmark.from_json({"job": "bronze_to_silver", "table": "orders",
                               "processed": dict(processed), "run_id": "r1"})


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


# -- bounded: full-load files and a watermark, not every key --------------------------------
CDC3 = "shop/orders/20261127-0800000000.parquet"


def test_the_bookmark_keeps_the_full_load_and_the_newest_change_only() -> None:
    mark = bookmark({LOAD1: '"a"', CDC1: '"c"', CDC2: '"d"'})
    assert (mark.loads, mark.after, mark.after_etag) == ({LOAD1: '"a"'}, CDC2, '"d"')
    assert mark.known() == {LOAD1: '"a"', CDC2: '"d"'}


def test_files_after_the_watermark_are_new_and_before_it_processed() -> None:
    mark = bookmark({LOAD1: '"a"', CDC2: '"d"'})
    # the listing the job makes: full-load files, the watermark file, what came after
    assert new_files(mark, {LOAD1: '"a"', CDC2: '"d"', CDC3: '"e"'}) == ([CDC3], False)
    assert mark.is_processed(CDC1) and mark.is_processed(CDC2) and not mark.is_processed(CDC3)


def test_the_watermark_file_vanished_means_bronze_was_rebuilt() -> None:
    mark = bookmark({LOAD1: '"a"', CDC2: '"d"'})
    assert new_files(mark, {LOAD1: '"a"', CDC3: '"e"'}) == ([CDC3, LOAD1], True)


def test_advance_moves_the_watermark_forward_only() -> None:
    mark = bookmark({LOAD1: '"a"', CDC2: '"d"'})
    mark.advance({LOAD1: '"a"', CDC1: '"c"', CDC3: '"e"'}, [CDC3])
    assert (mark.loads, mark.after, mark.after_etag) == ({LOAD1: '"a"'}, CDC3, '"e"')
    mark.advance({LOAD1: '"a"', CDC1: '"c"'}, [CDC1])
    assert mark.after == CDC3


def test_a_new_bookmark_round_trips_through_json() -> None:
    mark = bookmark({LOAD1: '"a"', CDC1: '"c"'})
    assert Bookmark.from_json(json.loads(json.dumps(mark.__dict__))) == mark


def test_a_rejected_file_left_out_is_read_again_once_replaced() -> None:
    """A file rejected without stopping the table (not DMS output) is skipped; the
    watermark passes it; a replacement (another ETag) is new again, behind the watermark."""
    mark = bookmark({LOAD1: '"a"'})
    mark.advance({LOAD1: '"a"', CDC1: '"bad"', CDC2: '"d"'}, [CDC2], skipped=[CDC1])
    assert (mark.after, mark.skipped) == (CDC2, {CDC1: '"bad"'})
    assert new_files(mark, {LOAD1: '"a"', CDC1: '"bad"', CDC2: '"d"'}) == ([], False)
    assert new_files(mark, {LOAD1: '"a"', CDC1: '"good"', CDC2: '"d"'}) == ([CDC1], False)
    mark.advance({LOAD1: '"a"', CDC1: '"good"', CDC2: '"d"'}, [CDC1])
    assert mark.skipped == {} and mark.after == CDC2


def test_a_skipped_file_that_vanished_is_forgotten() -> None:
    mark = bookmark({LOAD1: '"a"'})
    mark.advance({LOAD1: '"a"', CDC1: '"bad"', CDC2: '"d"'}, [CDC2], skipped=[CDC1])
    mark.advance({LOAD1: '"a"', CDC2: '"d"'}, [])
    assert mark.skipped == {}
