"""Runs through the state machine on LocalStack Step Functions, served by the stack's two
workers (`shoplake worker`), started by hand, by the EventBridge schedule, or by files
arriving in bronze.

Each test starts from a reconciled warehouse and leaves one: a run that fails on purpose is
followed by a run that succeeds. The stack's workers use TEST_ORCHESTRATION (heartbeat 10 s,
retries after 1 s) so a killed worker's task is offered again within seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from pipeline import cdc, stack
from pipeline.aws.clients import aws_client
from pipeline.config import Settings
from pipeline.orchestration import asl, history, schedule
from pipeline.orchestration.lease import run_lease
from pipeline.orchestration.liveness import read_status
from pipeline.orchestration.provision import queue_url, state_machine_arn
from pipeline.orchestration.report import load_run, report_path
from pipeline.orchestration.runs import execution_arn, follow, new_run_id, recent_runs, start_run
from pipeline.source.db import connect_app
from pipeline.source.load import seed
from pipeline.source.simulate import simulate
from pipeline.stack.manager import process_of
from pipeline.stack.workers import WorkerService
from pipeline.warehouse import apply_ddl
from pipeline.warehouse.reconcile import reconcile

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.slow]

RUN_TIMEOUT_S = 600


def shoplake(env: dict[str, str], *args: str, timeout: float = RUN_TIMEOUT_S
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def _finished(settings: Settings, arn: str, timeout_s: float = RUN_TIMEOUT_S) -> history.Run:
    return follow(settings, arn, lambda _run: None, interval_s=1.0, timeout_s=timeout_s)


def _node(run: history.Run, name: str) -> history.Node:
    return next(n for n in run.nodes if n.name == name)


def _drain_failures(settings: Settings) -> list[dict]:
    sqs = aws_client(settings, "sqs")
    got = []
    while True:
        msgs = sqs.receive_message(QueueUrl=queue_url(settings), MaxNumberOfMessages=10,
                                   WaitTimeSeconds=1).get("Messages", [])
        if not msgs:
            return got
        for m in msgs:
            got.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=queue_url(settings), ReceiptHandle=m["ReceiptHandle"])


def _reconciled(settings: Settings) -> None:
    rec = reconcile(settings)
    assert rec.ok, rec


@pytest.fixture(scope="module")
def seeded(stack_settings: Settings) -> Iterator[Settings]:
    seed(stack_settings, scale=0.01, seed=91, reset=True)
    cdc.reset(stack_settings)
    apply_ddl(stack_settings, reset=True)
    schedule.set_schedule(stack_settings, None)
    _drain_failures(stack_settings)
    yield stack_settings
    schedule.set_schedule(stack_settings, None)
    stack.up(stack_settings)  # a test may have killed a worker


def test_a_run_through_the_state_machine_reconciles(seeded: Settings,
                                                    cli_env: dict[str, str]) -> None:
    done = shoplake(cli_env, "run")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "succeeded in" in out and "reconcile: all" in out, out
    run_id = next(w for w in out.split() if w.startswith("run-"))
    _reconciled(seeded)
    rows = {r["run"]: r for r in recent_runs(seeded)}
    assert rows[run_id]["status"] == "SUCCEEDED" and rows[run_id]["trigger"] == "manual"
    run = load_run(seeded, execution_arn(seeded, run_id))
    # Every table went through the Map, every load through its branch, in the graph.
    done_paths = {n.path for n in run.nodes if n.status == "succeeded"}
    for table in asl.TABLES:
        assert f"Transform/BronzeToSilver[{table}]" in done_paths, done_paths
    assert "QualityAndReconcile" in done_paths and "WriteReport" in done_paths
    assert report_path(seeded, run_id).exists()
    # Every gold row written by the run names it.
    from pipeline.warehouse.load import session

    with session(seeded) as conn, conn.cursor() as cur:
        for table in ("dim_customer", "dim_product", "fact_orders", "fact_order_items"):
            cur.execute(f"SELECT DISTINCT loaded_run FROM sales.{table}")
            assert cur.fetchall() == [(run_id,)], table
    shown = shoplake(cli_env, "runs", "show", run_id)
    assert shown.returncode == 0 and "QualityAndReconcile" in shown.stdout, shown.stdout
    # The report recorded the pipeline's health for the dashboards: the run, its rows in
    # every layer (gold equal to the source, silver too), and how fresh gold is.
    with session(seeded) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, trigger, seconds > 0, newest_change_ts, recorded_at "
                    "FROM sales.pipeline_runs WHERE run_id = %s", (run_id,))
        status, trigger, timed, newest, recorded = cur.fetchone()
        assert (status, trigger, timed) == ("SUCCEEDED", "manual", True)
        assert newest is not None and newest <= recorded, (newest, recorded)
        cur.execute("SELECT table_name, layer, rows FROM sales.pipeline_layer_rows "
                    "WHERE run_id = %s", (run_id,))
        layers: dict[str, dict[str, int]] = {}
        for table, layer, n in cur.fetchall():
            layers.setdefault(table, {})[layer] = n
    assert set(layers) == set(asl.TABLES), layers
    for table, counts in layers.items():
        assert counts["source"] == counts["silver"] == counts["gold"] > 0, (table, counts)
        assert counts["bronze"] >= counts["source"], (table, counts)


def test_run_full_copies_the_full_state_into_staging(seeded: Settings,
                                                    cli_env: dict[str, str]) -> None:
    """`shoplake run --full` through the state machine: every load job copies silver's
    full state (not the changed keys) and says why; gold still reconciles."""
    simulate(seeded, rate=20, duration=1.0, seed=95)
    done = shoplake(cli_env, "run", "--full")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    run_id = next(w for w in out.split() if w.startswith("run-"))
    run = load_run(seeded, execution_arn(seeded, run_id))
    staged = [s for n in run.nodes if n.name.startswith("Load") and n.type == "Task"
              for s in (n.output.get("job") or n.output).get("staged", [])]
    assert len(staged) == 6, [n.output for n in run.nodes if n.name.startswith("Load")]
    assert all(s["mode"] == "full" and s["why"] == "requested (--full)" for s in staged), staged
    _reconciled(seeded)


def test_a_transient_failure_is_retried_and_the_run_succeeds(seeded: Settings) -> None:
    simulate(seeded, rate=20, duration=1.0, seed=92)
    # Someone else holds the run lease (a hand-started job, say): the run's first leased
    # step waits 5 s, fails Shoplake.Transient, and Step Functions retries it.
    with run_lease(seeded, "a test holding the lease", wait_s=0):
        arn = start_run(seeded, "manual")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(n.attempts > 1 for n in load_run(seeded, arn).nodes):
                break
            time.sleep(1.0)
        else:
            pytest.fail(f"no retry seen: {load_run(seeded, arn).nodes}")
    run = _finished(seeded, arn)
    assert run.status == "SUCCEEDED", run.failed_node()
    retried = [n for n in run.nodes if n.attempts > 1]
    assert retried and retried[0].name in ("ReplicateNow", "StartCrawler"), run.nodes
    _reconciled(seeded)


def test_a_terminal_failure_is_not_retried_and_is_announced(seeded: Settings,
                                                            cli_env: dict[str, str]) -> None:
    sfn = aws_client(seeded, "stepfunctions")
    run_id = new_run_id()
    arn = sfn.start_execution(
        stateMachineArn=state_machine_arn(seeded), name=run_id,
        input=json.dumps(asl.execution_input("manual", tables=("orders", "no_such_table"))),
    )["executionArn"]
    run = _finished(seeded, arn)
    assert run.status == "FAILED"
    failed = run.failed_node()
    assert failed is not None and failed.path == "Transform/BronzeToSilver[no_such_table]"
    assert failed.error == "Shoplake.Terminal" and failed.attempts == 1, failed
    assert "no_such_table" in failed.cause, failed.cause
    # The RunFailed event reached the failure queue through the EventBridge rule.
    deadline = time.monotonic() + 30
    events: list[dict] = []
    while time.monotonic() < deadline and not events:
        events = [e for e in _drain_failures(seeded)
                  if e.get("detail", {}).get("run_id") == run_id]
    assert events, "no RunFailed event in the failure queue"
    detail = events[0]["detail"]
    assert detail["state"] == "Transform" and "no_such_table" in detail["cause"], detail
    shown = shoplake(cli_env, "runs", "show", run_id)
    assert shown.returncode == 1, shown.stdout
    assert "failed in Transform/BronzeToSilver[no_such_table]" in shown.stdout, shown.stdout
    assert "Traceback" not in shown.stdout + shown.stderr
    from pipeline.warehouse.load import session

    with session(seeded) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, failed_state, error, newest_change_ts FROM "
                    "sales.pipeline_runs WHERE run_id = %s", (run_id,))
        status, state, error, newest = cur.fetchone()
    assert status == "FAILED" and newest is None
    assert state == "Transform/BronzeToSilver[no_such_table]" and "no_such_table" in error


def test_a_killed_worker_s_task_is_run_again_by_the_other_worker(seeded: Settings) -> None:
    simulate(seeded, rate=20, duration=1.0, seed=93)
    arn = start_run(seeded, "manual")
    victim = _worker_running_a_glue_job(seeded, arn)
    rec = process_of(seeded, WorkerService(seeded, victim)).running()
    assert rec is not None
    os.killpg(rec.pid, signal.SIGKILL)  # the worker and its Spark JVM
    run = _finished(seeded, arn)
    assert run.status == "SUCCEEDED", run.failed_node()
    timed_out = [n for n in run.nodes if n.attempts > 1]
    assert timed_out, "the killed worker's task was not retried"
    _reconciled(seeded)
    stack.up(seeded)  # the documented recovery brings the worker back
    assert process_of(seeded, WorkerService(seeded, victim)).running() is not None


def _kill_workers(settings: Settings) -> None:
    for i in (1, 2):
        rec = process_of(settings, WorkerService(settings, i)).running()
        if rec is not None:
            os.killpg(rec.pid, signal.SIGKILL)  # each worker and its Spark JVM
    deadline = time.monotonic() + 10
    while any(process_of(settings, WorkerService(settings, i)).running() is not None
              for i in (1, 2)) and time.monotonic() < deadline:
        time.sleep(0.2)


def test_with_no_worker_alive_a_run_is_refused_and_a_running_one_says_so(
        seeded: Settings, cli_env: dict[str, str]) -> None:
    import threading

    sfn = aws_client(seeded, "stepfunctions")
    before = len(sfn.list_executions(stateMachineArn=state_machine_arn(seeded))["executions"])
    _kill_workers(seeded)
    began = time.monotonic()
    done = shoplake(cli_env, "run", timeout=60)
    assert done.returncode == 1 and time.monotonic() - began < 20, done.stdout + done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("Error:")]
    assert errors == ["Error: no worker is alive to run the state machine's tasks: "
                      "`worker-1` crashed, `worker-2` crashed"], done.stderr
    assert "`shoplake stack up`" in done.stderr and "unexpected error" not in done.stderr
    assert len(sfn.list_executions(stateMachineArn=state_machine_arn(seeded))[
        "executions"]) == before  # refused before any execution started

    # A run already going says so when its workers die, and when they are back.
    stack.up(seeded)
    simulate(seeded, rate=20, duration=1.0, seed=97)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "run"], env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while not any(ln.startswith("[Transform/") for ln in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            time.sleep(0.3)
        _kill_workers(seeded)
        deadline = time.monotonic() + 30
        while not any("[run] warning: no worker is alive" in ln for ln in lines):
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.3)
        stack.up(seeded)
        assert proc.wait(timeout=RUN_TIMEOUT_S) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=5)
    out = "".join(lines)
    assert "`worker-1` crashed, `worker-2` crashed" in out and "alive again: the run goes on" \
        in out, out
    assert "States.Timeout: no worker reported on the task in time" in out or \
        "States.Timeout" not in out, out
    _reconciled(seeded)


def _worker_running_a_glue_job(settings: Settings, arn: str) -> int:
    """Wait until a worker runs a Glue job of the run's Transform; its index."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        run = load_run(settings, arn)
        assert run.status == "RUNNING", f"the run ended before Transform: {run.status}"
        if any(n.path.startswith("Transform/") and n.status == "running" for n in run.nodes):
            for i in (1, 2):
                status = read_status(settings, f"worker-{i}") or {}
                if "glue_job" in status.get("running", []):
                    return i
        time.sleep(0.3)
    pytest.fail("no worker was seen running a Glue job")


def test_sigterm_lets_a_worker_finish_its_task_then_it_exits(seeded: Settings) -> None:
    simulate(seeded, rate=20, duration=1.0, seed=95)
    arn = start_run(seeded, "manual")
    index = _worker_running_a_glue_job(seeded, arn)
    rec = process_of(seeded, WorkerService(seeded, index)).running()
    assert rec is not None
    os.kill(rec.pid, signal.SIGTERM)
    run = _finished(seeded, arn)
    assert run.status == "SUCCEEDED", run.failed_node()
    # The Glue jobs it had were finished by it, not handed on (a task its polls in flight
    # receive after SIGTERM is handed back, and retried elsewhere: that is allowed).
    transform = [n for n in run.nodes if n.path.startswith("Transform/")]
    assert all(n.attempts == 1 for n in transform), transform
    deadline = time.monotonic() + 90  # a poll in flight lasts up to 60 s
    while time.monotonic() < deadline and process_of(seeded, WorkerService(seeded, index)
                                                     ).running() is not None:
        time.sleep(0.5)
    assert process_of(seeded, WorkerService(seeded, index)).running() is None, \
        "the worker did not exit after SIGTERM"
    log = (seeded.state_dir / "logs" / f"worker-{index}.log").read_text()
    assert f"worker-{index} stopped after" in log, log[-2000:]
    stack.up(seeded)
    _reconciled(seeded)


def test_two_runs_at_once_one_does_the_work(seeded: Settings, cli_env: dict[str, str]) -> None:
    first = start_run(seeded, "manual")
    second = start_run(seeded, "manual")
    # The run lease covers the whole execution, not only its steps: commands that must not
    # run under a run are refused while it is RUNNING, naming it.
    name = first.rsplit(":", 1)[-1]
    for command in (("warehouse", "init"), ("cdc", "reset", "--yes")):
        refused = shoplake(cli_env, *command)
        out = refused.stdout + refused.stderr
        assert refused.returncode == 1, out
        # Named by its execution between steps, or by the step's own lease during one.
        assert name in out and "holds the run lease" in out, out
    runs = [_finished(seeded, first), _finished(seeded, second)]
    assert [r.status for r in runs] == ["SUCCEEDED", "SUCCEEDED"]
    skipped = [r for r in runs if _node(r, "AlreadyRunning").status != "pending"]
    worked = [r for r in runs if _node(r, "QualityAndReconcile").status == "succeeded"]
    assert len(skipped) == 1 and len(worked) == 1, [(r.name, r.nodes) for r in runs]
    assert worked[0].name == name  # the oldest goes on
    # The one that did nothing is listed as skipped and never counted as a run in health.
    listed = {r["run"]: r["status"] for r in recent_runs(seeded, 10)}
    assert listed[skipped[0].name] == "SKIPPED" and listed[name] == "SUCCEEDED", listed
    from pipeline.warehouse.load import session

    with session(seeded) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM sales.pipeline_runs WHERE run_id = %s",
                    (skipped[0].name,))
        assert cur.fetchone() == (0,)


def test_the_schedule_starts_runs(seeded: Settings, cli_env: dict[str, str]) -> None:
    before = {r["run"] for r in recent_runs(seeded, 100)}
    done = shoplake(cli_env, "schedule", "set", "rate(1 minute)")
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        deadline = time.monotonic() + 150
        started = []
        while time.monotonic() < deadline and not started:
            started = [r for r in recent_runs(seeded, 100)
                       if r["run"] not in before and r["trigger"] == "schedule"]
            time.sleep(2.0)
        assert started, "no scheduled run within 150 s of `schedule set rate(1 minute)`"
    finally:
        off = shoplake(cli_env, "schedule", "off")
        assert off.returncode == 0, off.stdout + off.stderr
    assert _finished(seeded, execution_arn(seeded, started[0]["run"])).status == "SUCCEEDED"
    shown = json.loads(shoplake(cli_env, "schedule", "show", "--format", "json").stdout)
    assert shown["expression"] is None and not shown["rules"], shown


def test_files_arriving_start_one_run_that_brings_the_last_rows_to_gold(
        seeded: Settings, cli_env: dict[str, str]) -> None:
    # Let any scheduled run end first, so the arrivals' run is the one that works.
    for r in recent_runs(seeded, 20):
        if r["status"] == "RUNNING":
            _finished(seeded, execution_arn(seeded, r["run"]))
    before = {r["run"] for r in recent_runs(seeded, 100)}
    assert shoplake(cli_env, "schedule", "set", "on-arrival").returncode == 0
    try:
        for i in range(3):  # a burst: three CDC files within a few seconds
            simulate(seeded, rate=20, duration=0.5, seed=94 + i)
            cdc.run(seeded, once=True)
        with connect_app(seeded) as conn, conn.cursor() as cur:
            cur.execute("SELECT max(id) FROM orders")
            last_order = cur.fetchone()[0]
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            new = [r for r in recent_runs(seeded, 100) if r["run"] not in before]
            if new and all(r["status"] != "RUNNING" for r in new):
                break
            time.sleep(2.0)
    finally:
        assert shoplake(cli_env, "schedule", "off").returncode == 0
    new = [r for r in recent_runs(seeded, 100) if r["run"] not in before]
    assert new and all(r["trigger"] == "arrival" for r in new), new
    # The burst's other runs found the working one in progress and did nothing.
    assert all(r["status"] in ("SUCCEEDED", "SKIPPED") for r in new), new
    worked = [r for r in new
              if _node(load_run(seeded, execution_arn(seeded, r["run"])),
                       "QualityAndReconcile").status == "succeeded"]
    assert len(worked) == 1, f"{len(worked)} of the {len(new)} arrival runs did the work"
    from pipeline.warehouse.load import session

    with session(seeded) as conn, conn.cursor() as cur:
        cur.execute("SELECT max(order_id) FROM sales.fact_orders")
        assert cur.fetchone()[0] == last_order
    _reconciled(seeded)
