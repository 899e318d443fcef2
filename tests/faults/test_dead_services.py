"""A service that dies in the middle of a run ends the run fast and loudly, and the
documented recovery (`shoplake stack up`, then `shoplake run`) makes gold exact again.

"Fast" is within 60 s of the kill, with one `Error:` line that names the service and no
Java stack trace on the console (it goes to the Spark log).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline import cdc, stack
from pipeline.config import Settings
from pipeline.source.load import seed
from pipeline.source.simulate import simulate
from pipeline.stack.localstack import LocalStackService
from pipeline.stack.manager import process_of
from pipeline.stack.postgres import PostgresService
from pipeline.warehouse import apply_ddl

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.spark, pytest.mark.slow]

FAIL_WITHIN_S = 60.0
JAVA_TRACE = ("\tat org.", "\tat java.", "at scala.", "Py4JJavaError", "java.lang.",
              "Traceback (most recent call last)")


@pytest.fixture(scope="module")
def lake(stack_settings: Settings) -> Settings:
    seed(stack_settings, scale=0.02, seed=51, reset=True)
    cdc.reset(stack_settings)
    apply_ddl(stack_settings, reset=True)
    return stack_settings


def _run(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "run", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)


def _kill_when(proc: subprocess.Popen[str], marker: str, victim: int,
               delay: float) -> tuple[str, float]:
    """Read the run's lines until `marker`, then after `delay` seconds SIGKILL `victim`;
    the output so far and the time of the kill."""
    lines = []
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line)
        if marker in line:
            time.sleep(delay)
            os.kill(victim, signal.SIGKILL)
            return "".join(lines), time.monotonic()
    raise AssertionError(f"the run ended before `{marker}`:\n{''.join(lines)}")


def _recover(settings: Settings, env: dict[str, str]) -> None:
    stack.up(settings)
    done = subprocess.run([sys.executable, "-m", "pipeline.cli.main", "run"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reconcile: all" in done.stdout, done.stdout


@pytest.mark.parametrize(("service", "marker", "delay", "said"), [
    # 2 s into a table's transform: Spark is reading or writing S3 through s3a
    (LocalStackService, "[bronze_to_silver] orders:", 2.0, "LocalStack"),
    (LocalStackService, "[step:crawl]", 0.0, "LocalStack"),
    (PostgresService, "[load_fact_orders] running", 0.0, "postgres"),
])
def test_a_service_killed_mid_step_fails_the_run_fast(lake: Settings, cli_env: dict[str, str],
                                                      service: type, marker: str, delay: float,
                                                      said: str) -> None:
    _recover(lake, cli_env)  # a clean start: everything replicated and loaded
    simulate(lake, rate=40, duration=1, seed=52)
    victim = process_of(lake, service(lake)).running()
    proc = _run(cli_env)
    try:
        head, killed_at = _kill_when(proc, marker, victim.pid, delay)
        tail, _ = proc.communicate(timeout=FAIL_WITHIN_S + 30)
        took = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
    out = head + tail
    assert proc.returncode == 1, out
    assert took < FAIL_WITHIN_S, f"the run took {took:.0f}s to fail after the kill\n{out}"
    errors = [ln for ln in out.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and said in errors[0], out
    assert not any(t in out for t in JAVA_TRACE), out
    _recover(lake, cli_env)
