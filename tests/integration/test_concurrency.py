"""One run at a time: a second `shoplake run --local` is refused (or waits), never
interleaved, and silver publication never merges two writers' outputs even when nothing
serialises them. (Runs through the state machine are serialised by its Guard state:
tests/integration/test_orchestration.py.)"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from pipeline import cdc
from pipeline.config import Settings
from pipeline.glue import silver
from pipeline.glue.jobs import run_job
from pipeline.glue.session import get_spark
from pipeline.source.db import connect_app
from pipeline.source.simulate import simulate
from pipeline.warehouse import reconcile

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.slow,
              pytest.mark.lake(scale=0.02, seed=41)]


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _silver_ids(settings: Settings, table: str) -> list[int]:
    df = silver.read_current(get_spark(settings), settings, table)
    return [r["id"] for r in df.select("id").collect()]


def _assert_no_duplicates(settings: Settings) -> None:
    for table in ("customers", "products", "orders", "order_items"):
        ids = _silver_ids(settings, table)
        assert len(ids) == len(set(ids)), f"silver `{table}` holds {len(ids) - len(set(ids))} " \
                                          "rows twice"


def test_two_runs_at_once_one_runs_the_other_is_refused(lake: Settings,
                                                        cli_env: dict[str, str]) -> None:
    first, second = _start(cli_env, "run", "--local"), None
    try:
        time.sleep(1.0)  # the first holds the run lease by now
        second = _start(cli_env, "run", "--local")
        out2, _ = second.communicate(timeout=600)
        out1, _ = first.communicate(timeout=600)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert first.returncode == 0, out1
    assert second.returncode == 1, out2
    assert "Error: another pipeline run holds the run lease" in out2, out2
    assert "--wait" in out2, out2
    _assert_no_duplicates(lake)
    # and nothing was left behind that breaks the next run
    simulate(lake, rate=40, duration=1, seed=43)
    again = _start(cli_env, "run", "--local")
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    _assert_no_duplicates(lake)
    assert reconcile(lake).ok


def test_a_second_run_with_wait_runs_after_the_first(lake: Settings,
                                                     cli_env: dict[str, str]) -> None:
    simulate(lake, rate=40, duration=1, seed=44)
    first = _start(cli_env, "run", "--local")
    time.sleep(1.0)
    second = _start(cli_env, "run", "--local", "--wait", "600")
    out2, _ = second.communicate(timeout=900)
    out1, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out1
    assert second.returncode == 0, out2
    assert "waiting for the run lease" in out2, out2
    _assert_no_duplicates(lake)


def test_two_unserialised_writers_never_merge_silver(lake: Settings) -> None:
    """Two bronze_to_silver jobs on the same new input at once, bypassing the run lease
    (as two hand-started spark-submits would): one publishes, the other notices, and the
    published snapshot holds each row once."""
    conn = connect_app(lake, autocommit=True)
    with conn.cursor() as cur:
        cur.execute("UPDATE products SET price = price + 1")
    conn.close()
    cdc.run(lake, once=True)
    from pipeline.catalog import crawl

    crawl(lake)
    errors: list[BaseException] = []

    def job() -> None:
        try:
            run_job(lake, "bronze_to_silver", table="products", reset_bookmark=True)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(getattr(e, "transient", False) for e in errors), errors
    ids = _silver_ids(lake, "products")
    assert len(ids) == len(set(ids)) > 0
    with connect_app(lake) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM products")
        assert len(ids) == cur.fetchone()[0]
