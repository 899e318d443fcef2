"""The lake survives `stack down` / `stack up` (LocalStack and moto forget it), and a crash
loses only what came after the last save, which the next run detects and rebuilds."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline import cdc, stack
from pipeline.aws.clients import aws_client
from pipeline.catalog.store import list_tables
from pipeline.config import Settings
from pipeline.stack import lake as lake_mirror
from pipeline.stack.localstack import LocalStackService
from pipeline.stack.manager import process_of
from tests.conftest import source_sql

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.slow,
              pytest.mark.lake(scale=0.01, seed=91)]


def shoplake(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "pipeline.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=900)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Traceback" not in out and "unexpected error" not in out, out
    return out


def _objects(settings: Settings) -> dict[str, dict[str, str]]:
    s3 = aws_client(settings, "s3")
    out: dict[str, dict[str, str]] = {}
    for bucket in settings.lake.buckets:
        out[bucket] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            out[bucket] |= {o["Key"]: o["ETag"] for o in page.get("Contents", [])}
    return out


def _load_files(settings: Settings) -> set[str]:
    """Bronze's full-load files: a new full snapshot adds (or rewrites) them."""
    bronze = _objects(settings)[settings.lake.bronze_bucket]
    return {f"{k} {e}" for k, e in bronze.items() if "/LOAD" in k}


def _kill_localstack(settings: Settings) -> None:
    rec = process_of(settings, LocalStackService(settings)).running()
    assert rec is not None, "LocalStack was not running"
    os.kill(rec.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while process_of(settings, LocalStackService(settings)).running() is not None:
        assert time.monotonic() < deadline, "LocalStack did not die"
        time.sleep(0.2)


def test_the_lake_survives_a_restart_and_the_next_run_is_incremental(
        lake: Settings, cli_env: dict[str, str]) -> None:
    shoplake(cli_env, "run", "--local")
    before = _objects(lake)
    tables = [t["Name"] for t in list_tables(lake)]
    assert tables and all(before.values()), "a run fills every bucket and the catalog"
    stack.down(lake)
    assert lake_mirror.size_on_disk(lake)[0] == sum(len(v) for v in before.values())
    stack.up(lake)
    assert _objects(lake) == before, "every object back, with its ETag"
    assert [t["Name"] for t in list_tables(lake)] == tables
    loads = _load_files(lake)
    source_sql(lake, "UPDATE customers SET city = 'Porto' WHERE id = 1",
         "UPDATE orders SET status = 'cancelled' WHERE id = 2")
    out = shoplake(cli_env, "run", "--local")
    assert _load_files(lake) == loads, "no new full snapshot after the restart"
    assert "rebuilt from bronze" not in out, out
    status = shoplake(cli_env, "stack", "status")
    assert "lake: " in status and " object(s), " in status and "saved " in status, status


def test_a_crash_loses_only_what_came_after_the_save_and_the_run_rebuilds_it(
        lake: Settings, cli_env: dict[str, str]) -> None:
    shoplake(cli_env, "run", "--local")  # saved at its end
    saved = lake_mirror.read_manifest(lake)["saved_at"]
    # A run whose end is not saved: silver and its catalog (in PostgreSQL) move past the
    # save; then more changes reach bronze only.
    source_sql(lake, "UPDATE customers SET city = 'Faro' WHERE id = 3",
         "DELETE FROM order_items WHERE order_id = 5", "DELETE FROM orders WHERE id = 5")
    shoplake({**cli_env, "SHOPLAKE_STACK_KEEP_LAKE": "false"}, "run", "--local")
    assert lake_mirror.read_manifest(lake)["saved_at"] == saved
    source_sql(lake, "UPDATE products SET price = price + 1 WHERE id = 4")
    cdc.run(lake, once=True)
    _kill_localstack(lake)
    stack.up(lake)  # puts back the save, older than silver's catalog and the checkpoint
    out = shoplake(cli_env, "run", "--local")  # exits 0 only when gold reconciles exactly
    assert "lost its files in S3" in out, out
    # A LocalStack that came back empty and was not restored is never saved over the save.
    saved = lake_mirror.read_manifest(lake)["saved_at"]
    _kill_localstack(lake)
    stack.up(dataclasses.replace(lake, stack=dataclasses.replace(lake.stack, keep_lake=False)))
    with pytest.raises(lake_mirror.LakeEmptyError, match="LocalStack restarted"):
        lake_mirror.save(lake)
    assert lake_mirror.read_manifest(lake)["saved_at"] == saved
    stack.up(lake)
    assert all(_objects(lake).values())
    shoplake(cli_env, "run", "--local")


def test_every_run_is_counted_once_however_it_ends(lake: Settings,
                                                   cli_env: dict[str, str]) -> None:
    """A run killed together with LocalStack (Step Functions forgets it), a local run
    killed with SIGKILL, and a warehouse reset in between: each is counted once."""
    from pipeline.orchestration import ledger
    from pipeline.warehouse.load import session

    def ledger_row(run_id: str) -> dict | None:
        return next((r for r in ledger.rows(lake) if r["run_id"] == run_id), None)

    local = subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "run", "--local"],
                             env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any(r["kind"] == "local" and r["status"] == "RUNNING" for r in ledger.rows(lake)):
        assert time.monotonic() < deadline and local.poll() is None, "the local run never began"
        time.sleep(0.2)
    local.kill()
    local.wait(timeout=30)
    local_run = next(r["run_id"] for r in ledger.rows(lake) if r["kind"] == "local"
                     and r["status"] == "RUNNING")
    arn = shoplake(cli_env, "run", "--no-follow").strip().splitlines()[-1]
    machine_run = arn.rsplit(":", 1)[-1]
    deadline = time.monotonic() + 180
    while not (ledger_row(machine_run) or {}).get("last_step"):
        assert time.monotonic() < deadline, "no worker took a task of the run"
        time.sleep(0.5)
    _kill_localstack(lake)
    stack.up(lake)  # settles both: Step Functions forgot one, the other's process is gone
    for run_id in (machine_run, local_run):
        row = ledger_row(run_id)
        assert row["status"] == "FAILED" and row["error"].startswith("lost"), row
    shoplake(cli_env, "warehouse", "init", "--reset")
    shoplake(cli_env, "run")  # its report publishes the ledger into the fresh schema
    with session(lake) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, status FROM sales.pipeline_runs")
        published = cur.fetchall()
    ids = [r for r, _ in published]
    assert len(ids) == len(set(ids))
    assert {machine_run, local_run} <= set(ids)
    assert dict(published)[machine_run] == dict(published)[local_run] == "FAILED"
    assert "SUCCEEDED" in dict(published).values()
