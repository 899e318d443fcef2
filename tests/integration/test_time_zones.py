"""Gold's timestamps are the source's, value by value, whatever the machine's time zone.

The pipeline runs from the command line with TZ set to a zone whose offset is not a whole
hour (Asia/Kolkata, +05:30), so a shift by the local offset cannot hide behind a rounded
day; the source's DATETIME values must arrive in gold unchanged.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.config import Settings
from pipeline.source.db import connect_app
from pipeline.source.simulate import simulate
from pipeline.warehouse.load import session

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.slow]

ZONE = "Asia/Kolkata"


def _cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline.cli.main", "-q", *args], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"shoplake {' '.join(args)}:\n{done.stdout}{done.stderr}"


def _source(settings: Settings, sql: str) -> dict:
    conn = connect_app(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return {row[0]: row[1:] for row in cur.fetchall()}
    finally:
        conn.close()


def _gold(settings: Settings, sql: str) -> dict:
    with session(settings) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return {row[0]: row[1:] for row in cur.fetchall()}


def test_gold_timestamps_equal_the_source_outside_utc(stack_settings: Settings,
                                                      cli_env: dict[str, str],
                                                      monkeypatch) -> None:
    env = {**cli_env, "TZ": ZONE}
    _cli(env, "seed", "--scale", "0.02", "--seed", "31", "--reset")
    _cli(env, "cdc", "reset", "--yes")
    _cli(env, "warehouse", "init", "--reset")
    _cli(env, "run", "--local")  # this process, in Asia/Kolkata (workers would be UTC)
    simulate(stack_settings, rate=40, duration=2, seed=32)  # updates: new SCD2 versions
    _cli(env, "run", "--local")

    source = _source(stack_settings, "SELECT id, order_ts, updated_at FROM orders")
    gold = _gold(stack_settings, "SELECT order_id, order_ts, updated_at FROM sales.fact_orders")
    assert len(gold) == len(source) > 0
    shifted = {k: (source[k], gold.get(k)) for k in source if gold.get(k) != source[k]}
    assert not shifted, f"{len(shifted)} orders shifted, e.g. {list(shifted.items())[:3]}"

    customers = _source(stack_settings, "SELECT id, created_at, updated_at FROM customers")
    staged = _gold(stack_settings,
                   "SELECT customer_id, created_at, updated_at FROM sales.stg_customers")
    assert staged == customers

    # SCD2 versions open at the source's updated_at: a product changed by the simulator
    # has a current version starting exactly at its source updated_at.
    products = _source(stack_settings, "SELECT id, updated_at FROM products")
    versions = _gold(stack_settings,
                     "SELECT product_id, record_start_ts FROM sales.dim_product "
                     "WHERE is_current AND record_start_ts > '0001-01-01'")
    assert versions, "the simulator changed at least one price"
    assert {k: v for k, v in versions.items()} == {k: products[k] for k in versions}

    # The jobs themselves, not only the CLI (which runs in UTC): the load job in this
    # process, under the zone, reloads staging and gold from silver unchanged.
    import time

    from pipeline.glue.jobs import run_job

    monkeypatch.setenv("TZ", ZONE)
    time.tzset()
    try:
        run_job(stack_settings, "load_fact_orders", reset_bookmark=True)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    gold = _gold(stack_settings, "SELECT order_id, order_ts, updated_at FROM sales.fact_orders")
    assert gold == source
    assert _gold(stack_settings, "SELECT order_id, order_ts, updated_at "
                                 "FROM sales.stg_orders") == source
