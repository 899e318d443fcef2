"""kill -9, in turn, of LocalStack, PostgreSQL, MariaDB and the run itself, in the middle of
each step of a run, while the simulator keeps the source busy. After each, the documented
recovery (`shoplake stack up`, then a run) must end with reconcile exact, no row twice in
silver or gold, and no SCD2 version doubled. Where the killed service is the one the step
is using, the run must also fail fast: within 60 s, with one `Error:` line naming it and
no Java stack trace.

The runs are `shoplake run --local` (the registry's steps in one process, in the state
machine's order), so that "the run itself" is a process to kill; a worker killed under
the state machine is tests/integration/test_orchestration.py's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from pipeline import stack
from pipeline.config import Settings
from pipeline.glue import silver
from pipeline.orchestration.local import STEPS
from pipeline.source.simulate import simulate
from pipeline.stack.localstack import LocalStackService
from pipeline.stack.manager import process_of
from pipeline.stack.mariadb import MariaDBService
from pipeline.stack.postgres import PostgresService
from pipeline.warehouse.load import session
from tests.conftest import fresh_lake

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.spark, pytest.mark.slow]

VICTIMS = {"localstack": LocalStackService, "postgres": PostgresService,
           "mariadb": MariaDBService, "run": None}
LONG_STEPS = {"Transform": 2.0, "LoadDims": 0.5, "LoadFacts": 0.5}
"""Seconds into a step the kill lands (short steps: at once, which is their middle)."""
FAIL_FAST = {("localstack", "StartCrawler"): "LocalStack", ("localstack", "Transform"): "S3",
             ("postgres", "LoadFacts"): "postgres", ("mariadb", "WaitForCdcSync"): "mariadb"}
"""Kills of the service the step is using: the run ends within FAIL_WITHIN_S, naming it."""
FAIL_WITHIN_S = 60.0
JAVA_TRACE = ("\tat org.", "\tat java.", "at scala.", "Py4JJavaError", "java.lang.")


class Traffic:
    """The simulator, running until stopped, surviving the source's restarts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stop = threading.Event()
        self.on = threading.Event()
        self.idle = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        n = 0
        while not self.stop.is_set():
            if not self.on.wait(0.2):
                self.idle.set()
                continue
            self.idle.clear()
            try:
                n += 1
                simulate(self.settings, rate=15, duration=1.0, seed=1000 + n)
            except Exception:  # noqa: BLE001 - the source is being killed on purpose
                time.sleep(0.5)

    def pause(self) -> None:
        self.on.clear()
        assert self.idle.wait(30), "the simulator did not stop"

    def resume(self) -> None:
        self.on.set()


@pytest.fixture(scope="module")
def traffic(stack_settings: Settings, stack_env: dict[str, str]) -> Iterator[Traffic]:
    fresh_lake(stack_settings, scale=0.01, seed=81)
    _recover(stack_settings, {**os.environ, **stack_env})
    t = Traffic(stack_settings)
    t.thread.start()
    yield t
    t.stop.set()
    t.on.set()
    t.thread.join(timeout=30)


def _recover(settings: Settings, env: dict[str, str]) -> None:
    """The documented recovery: `stack up`, then one run, which must reconcile exactly."""
    stack.up(settings)
    done = subprocess.run([sys.executable, "-m", "pipeline.cli.main", "run", "--local"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reconcile: all" in done.stdout, done.stdout


def _silver_ids(settings: Settings, table: str) -> list[int]:
    """The keys of the table's current Iceberg snapshot (deletes applied), read by pyiceberg."""
    scan = silver.load_table(settings, table).scan(selected_fields=("id",))
    return scan.to_arrow().column("id").to_pylist()


def _assert_nothing_doubled(settings: Settings) -> None:
    for table in ("customers", "products", "orders", "order_items"):
        twice = [k for k, n in Counter(_silver_ids(settings, table)).items() if n > 1]
        assert not twice, f"silver `{table}` holds keys twice: {twice[:5]}"
    with session(settings) as conn, conn.cursor() as cur:
        for dim, key in (("dim_customer", "customer_id"), ("dim_product", "product_id")):
            # a version identical to the one before it is a doubled version
            cur.execute(f"""
                SELECT {key}, count(*) FROM (
                  SELECT {key}, attr_hash, lag(attr_hash) OVER (PARTITION BY {key}
                         ORDER BY record_start_ts) AS previous
                  FROM sales.{dim}) v
                WHERE attr_hash = previous GROUP BY {key} LIMIT 5""")
            doubled = cur.fetchall()
            assert not doubled, f"`{dim}` has doubled SCD2 versions: {doubled}"
            cur.execute(f"""
                SELECT a.{key} FROM sales.{dim} a JOIN sales.{dim} b
                  ON a.{key} = b.{key} AND a.ctid < b.ctid
                 AND a.record_start_ts < b.record_end_ts AND b.record_start_ts < a.record_end_ts
                LIMIT 5""")
            overlapping = cur.fetchall()
            assert not overlapping, f"`{dim}` has overlapping versions: {overlapping}"


def _kill_during(env: dict[str, str], settings: Settings, victim: str, step: str
                 ) -> tuple[str, int | None, float]:
    """Start a run, kill `victim` in the middle of `step`: the run's output, exit code and
    the seconds it took to end after the kill."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "run", "--local"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    lines = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith(f"[step:{step}] {step}"):
                time.sleep(LONG_STEPS.get(step, 0.0))
                if victim == "run":
                    os.kill(proc.pid, signal.SIGKILL)
                else:
                    rec = process_of(settings, VICTIMS[victim](settings)).running()
                    assert rec is not None, f"{victim} was not running"
                    os.kill(rec.pid, signal.SIGKILL)
                killed_at = time.monotonic()
                break
        else:
            raise AssertionError(f"the run ended before step `{step}`:\n{''.join(lines)}")
        rest, _ = proc.communicate(timeout=180)
        took = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return "".join(lines) + (rest or ""), proc.returncode, took


CI_CASES = [*FAIL_FAST, ("mariadb", "Transform"), ("run", "Transform")]
"""The cases a default test session runs (each victim, the steps that use it, the run in
its longest steps); SHOPLAKE_TEST_FULL_MATRIX=1 runs every victim in every step (~20 min)."""
CASES = ([(v, s) for v in VICTIMS for s, _ in STEPS]
         if os.environ.get("SHOPLAKE_TEST_FULL_MATRIX") == "1" else CI_CASES)


@pytest.mark.parametrize(("victim", "step"), CASES, ids=[f"{v}-{s}" for v, s in CASES])
def test_kill_then_recover(traffic: Traffic, stack_settings: Settings,
                           cli_env: dict[str, str], victim: str, step: str) -> None:
    traffic.resume()
    time.sleep(1.0)  # changes in flight when the run starts
    try:
        out, code, took = _kill_during(cli_env, stack_settings, victim, step)
    finally:
        traffic.pause()
    try:
        assert "Traceback (most recent call last)" not in out, out
        assert "unexpected error" not in out, out
        said = FAIL_FAST.get((victim, step))
        if said is not None:  # the service the step used: the run fails fast and says so
            assert code == 1, out
            assert took < FAIL_WITHIN_S, f"the run took {took:.0f}s to fail after the kill\n{out}"
            errors = [ln for ln in out.splitlines() if ln.startswith("Error:")]
            assert len(errors) == 1 and said in errors[0], out
            assert not any(t in out for t in JAVA_TRACE), out
    finally:
        # Recovered even when an assertion failed: the cases after it (and the suites after
        # this one, on the same stack) start from a healthy stack.
        _recover(stack_settings, cli_env)
    _assert_nothing_doubled(stack_settings)
