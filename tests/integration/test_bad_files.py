"""A bad bronze file is named and refused by itself: the crawler never catalogs its
columns, its table stops before it (a truncated change file cannot be skipped safely),
the other tables go on, and the run fails loudly until the file is dealt with."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline import cdc
from pipeline.aws.clients import aws_client
from pipeline.catalog import get_table
from pipeline.config import Settings
from pipeline.warehouse.load import session
from tests.conftest import source_sql

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.slow,
              pytest.mark.lake(scale=0.01, seed=71)]


def shoplake(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=900)


def test_bad_files_are_named_refused_and_block_only_their_table(
        lake: Settings, cli_env: dict[str, str]) -> None:
    first = shoplake(cli_env, "run", "--local")
    assert first.returncode == 0, first.stdout + first.stderr
    s3 = aws_client(lake, "s3")
    bucket = lake.lake.bronze_bucket
    # Two committed change files of `orders`; the first is then damaged (truncated)
    # before any job read it. The second must wait behind it; customers go on.
    source_sql(lake, "UPDATE orders SET status = 'paid' WHERE id = 1")
    cdc.run(lake, once=True)
    files = sorted(o["Key"] for o in s3.list_objects_v2(
        Bucket=bucket, Prefix="shop/orders/")["Contents"] if "LOAD" not in o["Key"])
    damaged = files[-1]
    source_sql(lake, "UPDATE orders SET status = 'shipped' WHERE id = 1",
         "UPDATE customers SET city = 'Porto' WHERE id = 1")
    cdc.run(lake, once=True)
    body = s3.get_object(Bucket=bucket, Key=damaged)["Body"].read()
    s3.put_object(Bucket=bucket, Key=damaged, Body=body[: len(body) // 2])
    # foreign CSVs: one under a foreign name, one under a DMS name (before the checkpoint,
    # so the CDC does not take it for a file of its own and delete it)
    junk = b"colour,shape\nred,round\n"
    s3.put_object(Bucket=bucket, Key="shop/customers/export.csv", Body=junk)
    s3.put_object(Bucket=bucket, Key="shop/products/20000101-0000000000.csv", Body=junk)
    catalog_before = get_table(lake, "customers")

    crawled = shoplake(cli_env, "crawl")
    out = crawled.stdout + crawled.stderr
    assert crawled.returncode == 0, out
    for key, why in ((damaged, "unreadable parquet file"),
                     ("shop/customers/export.csv", "not a DMS file name"),
                     ("shop/products/20000101-0000000000.csv", "lacks the DMS column")):
        line = next((ln for ln in out.splitlines() if f"s3://{bucket}/{key}" in ln), "")
        assert "rejected" in line and why in line, out
    after = get_table(lake, "customers")
    assert after["StorageDescriptor"]["Columns"] == catalog_before["StorageDescriptor"]["Columns"]
    assert "colour" not in str(get_table(lake, "products")), "junk columns never cataloged"

    run = shoplake(cli_env, "run", "--local")
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "unexpected error" not in out and "Traceback" not in out, out
    assert "gold is behind the source" in out, out
    listing = shoplake(cli_env, "quarantine").stdout
    for key in (damaged, "shop/customers/export.csv", "shop/products/20000101-0000000000.csv"):
        assert f"s3://{bucket}/{key}" in listing, listing
    with session(lake) as gold, gold.cursor() as cur:
        cur.execute("SELECT city FROM sales.dim_customer WHERE customer_id = 1 AND is_current")
        assert cur.fetchone() == ("Porto",), "the other tables went on"
        cur.execute("SELECT status FROM sales.fact_orders WHERE order_id = 1")
        assert cur.fetchone() != ("shipped",), "orders waits at the damaged file"

    # the remedy the crawl printed: drop the foreign files, rebuild bronze from the source
    for key in ("shop/customers/export.csv", "shop/products/20000101-0000000000.csv"):
        s3.delete_object(Bucket=bucket, Key=key)
    assert shoplake(cli_env, "cdc", "reset", "--yes").returncode == 0
    fixed = shoplake(cli_env, "run", "--local")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "reconcile: all" in fixed.stdout
    assert "no rows held" in shoplake(cli_env, "quarantine").stdout
    with session(lake) as gold, gold.cursor() as cur:
        cur.execute("SELECT status FROM sales.fact_orders WHERE order_id = 1")
        assert cur.fetchone() == ("shipped",)
