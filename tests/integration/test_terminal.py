"""The real `shoplake` CLI on a pseudo-terminal, as a user meets it, not through a pipe.

On a terminal the CLI draws live progress rows with rich; through a pipe it prints plain
lines. Every other test uses a pipe, which once hid a crash that every terminal showed.
Here each command runs under a pty (pexpect), its output is rendered by a terminal
emulator, and the test reads the screen: the exit code and the lines a user reads at the
end, and never "unexpected error", a traceback or a KeyError.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from pipeline import stack
from pipeline.aws.clients import aws_client
from pipeline.aws.secrets import cdc_credentials, secret_json
from pipeline.cdc import reset as cdc_reset
from pipeline.cdc.bronze import Bronze
from pipeline.cdc.source import current_position
from pipeline.config import Settings, load_settings
from pipeline.source.db import connect, connect_app
from pipeline.source.load import seed
from pipeline.stack.manager import process_of
from pipeline.stack.mariadb import MariaDBService
from tests.conftest import REPO, TEST_PORTS, TOOLS
from tests.terminal import (
    Screen,
    TerminalRun,
    assert_clean,
    run_in_terminal,
    shoplake_argv,
    wait_for_text,
)

pytestmark = [pytest.mark.integration, pytest.mark.terminal]

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
"""rich's spinner frames: a row that starts with one is a task still shown as running."""

ARTIFACTS = Path(os.environ.get("SHOPLAKE_TEST_ARTIFACTS", "/tmp/shoplake-test-artifacts"))
"""Raw terminal recordings (with escapes) of every run, for reading after a failure."""


def shoplake(env: dict[str, str], *args: str, timeout: float = 300, **kwargs) -> TerminalRun:
    name = "-".join(a.strip("-") for a in args if not a.startswith("/"))[:60] or "shoplake"
    return run_in_terminal(shoplake_argv(*args), env, timeout=timeout, cwd=REPO,
                           log_file=ARTIFACTS / f"{name}-{time.time_ns()}.tty", **kwargs)


def ok(run: TerminalRun, last: str | None = None) -> TerminalRun:
    """The run exited 0, shows nothing forbidden and (optionally) ends with `last`."""
    assert run.exit_code == 0, run.describe()
    assert_clean(run)
    if last is not None:
        assert any(last in line for line in run.tail(3)), run.describe()
    return run


def error_line(run: TerminalRun, *expected: str) -> str:
    """The run failed the way a user can act on: exit 1, exactly one red `Error:` line
    naming what is wrong, followed by a `->` hint."""
    assert run.exit_code == 1, run.describe()
    assert_clean(run)
    lines = run.lines
    errors = [i for i, line in enumerate(lines) if line.startswith("Error:")]
    assert len(errors) == 1, run.describe()
    line = lines[errors[0]]
    for text in expected:
        assert text in run.text[run.text.index(line):], f"`{text}` not said\n{run.describe()}"
    hint = lines[errors[0] + 1:]
    assert any(h.startswith("  -> ") for h in hint), f"no hint\n{run.describe()}"
    assert b"\x1b[31mError:" in bytes(run.screen.raw) or b"\x1b[31m" in bytes(run.screen.raw), \
        "the error is red"
    return line


@pytest.fixture(scope="module")
def own_env() -> Iterator[dict[str, str]]:
    """A stack of its own (state folder, ports) for the commands that start and stop it."""
    root = os.environ.get("SHOPLAKE_TEST_STATE_ROOT", "/tmp")
    state = Path(tempfile.mkdtemp(prefix="shoplake-test-tty-", dir=root))
    state.chmod(0o755)
    ports = {k: str(int(v) + 100) for k, v in TEST_PORTS.items()}
    env = {**os.environ, "SHOPLAKE_STACK_STATE_DIR": str(state),
           "SHOPLAKE_STACK_TOOLS_DIR": str(TOOLS), **ports}
    yield env
    stack.down(load_settings(environ=env), purge=True)
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture()
def tty_env(stack_settings: Settings, cli_env: dict[str, str]) -> dict[str, str]:
    return cli_env


# -- the stack --------------------------------------------------------------------------------
def test_stack_up_status_down(own_env: dict[str, str]) -> None:
    up = ok(shoplake(own_env, "stack", "up"), "stack ready in")
    for service in ("mariadb", "postgres", "localstack"):
        assert any(line.startswith(service) and "started" in line for line in up.lines), \
            up.describe()
    again = ok(shoplake(own_env, "stack", "up"), "stack ready in")
    assert sum("already running" in line for line in again.lines) >= 3, again.describe()
    status = ok(shoplake(own_env, "stack", "status"))
    rows = [line for line in status.lines if line.startswith("│")]
    assert len(rows) == 7 and all(" yes " in r and "running" in r for r in rows), \
        status.describe()  # MariaDB, PostgreSQL, LocalStack, two workers, the dashboards
    ok(shoplake(own_env, "stack", "down"), "localstack, postgres, mariadb")
    after = shoplake(own_env, "stack", "status")
    assert after.exit_code == 1 and sum("stopped" in r for r in after.lines) == 7, \
        after.describe()


# -- one pipeline, command by command -----------------------------------------------------------
def test_every_pipeline_command(tty_env: dict[str, str], stack_settings: Settings) -> None:
    seed = ok(shoplake(tty_env, "seed", "--scale", "0.02", "--seed", "5", "--reset"))
    assert "seeded `shop` in" in seed.tail(2)[-1], seed.describe()
    ok(shoplake(tty_env, "cdc", "reset", "--yes"), "and the checkpoint")
    ok(shoplake(tty_env, "warehouse", "init", "--reset"), "warehouse ready")
    load = ok(shoplake(tty_env, "cdc", "--once"))
    assert any(line.startswith("full load: ") and "rows from 4 tables" in line
               for line in load.lines), load.describe()
    assert load.tail(1)[0].startswith("cdc: 0 changes in 0 files, checkpoint at "), \
        load.describe()
    crawl = ok(shoplake(tty_env, "crawl"))
    assert sum(any(f"│ {t} " in line for line in crawl.lines)
               for t in ("customers", "products", "orders", "order_items")) == 4, \
        crawl.describe()
    jobs = ok(shoplake(tty_env, "job", "run", "all", "--reset-bookmark"))
    for job in ("bronze_to_silver", "load_dim_customer", "load_dim_product",
                "load_fact_orders", "load_fact_order_items"):
        assert any(line.startswith(f"│ {job} ") for line in jobs.lines), jobs.describe()
    assert not any("Setting default log level" in line or "log4j" in line.lower()
                   for line in jobs.lines), "Spark's own output stays off the terminal"
    reconcile = ok(shoplake(tty_env, "reconcile"))
    assert reconcile.text.count("all ") and "days match" in reconcile.text, \
        reconcile.describe()
    ok(shoplake(tty_env, "simulate", "--rate", "30", "--duration", "3", "--seed", "9"),
       "transactions in")
    run = ok(shoplake(tty_env, "run"))  # through the state machine, its graph live
    tail = "\n".join(run.tail(3))
    assert "succeeded in" in tail and "reconcile: all" in tail, run.describe()
    assert any("BronzeToSilver[orders]" in line and "✓" in line for line in run.lines), \
        run.describe()
    # every task on the live display ended: no row is left spinning
    for line in run.lines:
        if line and line[0] in SPINNER:
            raise AssertionError(f"a task never finished: {line}\n{run.describe()}")
    log = stack_settings.state_dir / "logs" / "spark.log"
    assert log.exists() and log.stat().st_size > 0, "Spark's output went to its log file"


# -- CDC following through a source restart -----------------------------------------------------
def test_following_cdc_rides_out_a_mariadb_restart(tty_env: dict[str, str],
                                                    stack_settings: Settings) -> None:
    settings = stack_settings
    bronze = Bronze(settings, settings.mysql.database)
    seed(settings, scale=0.01, seed=8, reset=True)
    cdc_reset(settings)
    ok(shoplake(tty_env, "cdc", "--once"))

    def interact(child: pexpect.spawn, screen: Screen) -> None:
        wait_for_text(child, screen, r"replicating from")
        victim = process_of(settings, MariaDBService(settings)).running()
        os.kill(victim.pid, signal.SIGKILL)
        wait_for_text(child, screen, r"retrying from the checkpoint", timeout=60)
        assert child.isalive(), "the follower waits for the source instead of dying"
        results = {r.service: r.action for r in stack.up(settings)}
        assert results["mariadb"] == "restarted"
        conn = connect_app(settings, autocommit=True)
        with conn.cursor() as cur:
            cur.execute("UPDATE products SET price = price + 1 WHERE id <= 3")
        conn.close()
        repl = connect(cdc_credentials(settings))  # the app user may not read the binlog
        target = current_position(repl)  # the follower must get past the update
        repl.close()
        deadline = time.monotonic() + 90
        while bronze.load_checkpoint().position < target:
            assert time.monotonic() < deadline, "the follower never caught up"
            try:
                child.read_nonblocking(65536, timeout=1)
            except pexpect.TIMEOUT:
                pass
        child.sendintr()  # Ctrl-C: the open batch is written, then it exits

    run = shoplake(tty_env, "cdc", interact=interact, timeout=180)
    ok(run)
    last = run.tail(1)[0]
    assert last.startswith("cdc: ") and "changes in" in last, run.describe()
    assert int(last.split()[1]) >= 3, run.describe()


# -- the demo itself ---------------------------------------------------------------------------
def test_the_demo_finishes_on_a_terminal(own_env: dict[str, str]) -> None:
    run = run_in_terminal(["bash", "scripts/demo.sh"], own_env, timeout=900, cwd=REPO,
                          log_file=ARTIFACTS / f"demo-{time.time_ns()}.tty")
    ok(run, "stack keeps running for the live dashboards; stop it with")
    assert "reconcile: all" in run.text and "succeeded in" in run.text, run.describe()
    # It ends with the dashboards: the built files and the live server, still answering.
    assert "sales_overview.html" in run.text and "Sales Overview, live: http://" in run.text, \
        run.describe()
    url = run.text.split("Sales Overview, live: ")[1].split()[0]
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200 and b"Sales Overview" in resp.read()


# -- errors look the same on a terminal -----------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_stopped_mariadb(tty_env: dict[str, str], stack_settings: Settings) -> None:
    mariadb = process_of(stack_settings, MariaDBService(stack_settings))
    mariadb.stop(10)
    try:
        port = TEST_PORTS["SHOPLAKE_MYSQL_PORT"]
        for args in (("seed", "--scale", "0.01", "--reset"), ("cdc", "--once"), ("reconcile",)):
            line = error_line(shoplake(tty_env, *args), "shoplake stack up")
            assert f"127.0.0.1:{port} is not reachable" in line, line
    finally:
        stack.up(stack_settings)


def test_a_wrong_port(tty_env: dict[str, str], stack_settings: Settings) -> None:
    env = {**tty_env, "SHOPLAKE_LOCALSTACK_PORT": str(_free_port())}
    line = error_line(shoplake(env, "reconcile"), "shoplake stack up")
    assert "LocalStack" in line and env["SHOPLAKE_LOCALSTACK_PORT"] in line, line


@pytest.mark.parametrize(("secret_attr", "args", "service"), [
    ("mysql", ("seed", "--scale", "0.01", "--reset"), "mariadb"),
    ("cdc", ("cdc", "--once"), "mariadb"),
    ("cdc", ("cdc",), "mariadb"),  # a follower stops too: a refused login is not retried
    ("postgres", ("warehouse", "init"), "postgres"),
])
def test_a_wrong_password(tty_env: dict[str, str], stack_settings: Settings, secret_attr: str,
                          args: tuple[str, ...], service: str) -> None:
    name = getattr(stack_settings, secret_attr).secret_name
    sm = aws_client(stack_settings, "secretsmanager")
    value = secret_json(stack_settings, name)
    sm.put_secret_value(SecretId=name, SecretString=__import__("json").dumps(
        value | {"password": "not-the-password"}))
    try:
        line = error_line(shoplake(tty_env, *args, timeout=120), f"`{name}`")
        assert line.startswith(f"Error: `{service}` at ") and "refused the login" in line, line
    finally:
        stack.provision_stack(stack_settings)


@pytest.mark.parametrize(("args", "said"), [
    (("job", "run", "bronze_to_silver", "--table", "nope"), "unknown table `nope`"),
    (("job", "run", "nope"), "unknown job `nope`"),
    (("stack", "logs", "nope"), "unknown service `nope`"),
])
def test_an_unknown_name(tty_env: dict[str, str], args: tuple[str, ...], said: str) -> None:
    line = error_line(shoplake(tty_env, *args))
    assert said in line, line


# -- Ctrl-C ----------------------------------------------------------------------------------
def _orphan_jvms() -> list[int]:
    """Spark JVMs whose parent died (re-parented to init): left behind by an interrupt."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if proc.info["ppid"] == 1 and "java" in cmd and "pyspark-shell" in cmd:
            found.append(proc.info["pid"])
    return found


@pytest.fixture(scope="module")
def small_lake(stack_settings: Settings) -> Settings:
    from pipeline.catalog import crawl
    from pipeline.cdc import run as cdc_run
    from pipeline.warehouse import apply_ddl

    seed(stack_settings, scale=0.02, seed=9, reset=True)
    cdc_reset(stack_settings)
    cdc_run(stack_settings, once=True)
    crawl(stack_settings)
    apply_ddl(stack_settings, reset=True)
    return stack_settings


@pytest.mark.parametrize(("args", "marker", "delay"), [
    (("job", "run", "all", "--reset-bookmark"), r"running bronze_to_silver", 0.5),  # JVM start
    (("job", "run", "all", "--reset-bookmark"), r"new file\(s\)", 1.5),  # inside a Spark job
    (("seed", "--scale", "0.3", "--reset"), r"loading `orders`", 0.2),
    (("run",), r"WaitForCdcSync", 0.5),
], ids=["spark-starting", "spark-job", "seed", "run"])
def test_ctrl_c_ends_quietly_and_leaves_nothing_behind(
        tty_env: dict[str, str], small_lake: Settings, args: tuple[str, ...], marker: str,
        delay: float) -> None:
    before = set(_orphan_jvms())
    if args[0] == "job":  # fresh changes, so that bronze_to_silver has files to read
        from pipeline.catalog import crawl
        from pipeline.cdc import run as cdc_run
        from pipeline.source.simulate import simulate

        simulate(small_lake, rate=50, duration=1, seed=10)
        cdc_run(small_lake, once=True)
        crawl(small_lake)

    def interact(child: pexpect.spawn, screen: Screen) -> None:
        wait_for_text(child, screen, marker)
        time.sleep(delay)
        child.sendintr()

    run = shoplake(tty_env, *args, interact=interact, timeout=120)
    assert run.exit_code == 130, run.describe()
    assert "interrupted" in run.tail(3)[-1], run.describe()
    assert_clean(run)
    assert "Exception while sending command" not in run.text, run.describe()
    spinning = [ln for ln in run.lines if ln and ln[0] in SPINNER]
    assert not spinning, f"rows left running: {spinning}\n{run.describe()}"
    time.sleep(2.0)  # a JVM that watches its stdin exits within a moment
    left = set(_orphan_jvms()) - before
    assert not left, f"Spark JVMs left running: {left}"
    if args[0] == "run":  # the follower stopped; the run goes on until it ends
        from pipeline.orchestration.runs import recent_runs

        deadline = time.monotonic() + 300
        while recent_runs(small_lake, 1)[0]["status"] == "RUNNING":
            assert time.monotonic() < deadline, "the interrupted run never ended"
            time.sleep(1)
    if args[0] == "seed":  # an interrupted seed is finished by the next one
        ok(shoplake(tty_env, "seed", "--scale", "0.02", "--seed", "9", "--reset"))
        ok(shoplake(tty_env, "cdc", "reset", "--yes"))
        ok(shoplake(tty_env, "cdc", "--once"))
        ok(shoplake(tty_env, "crawl"))
    # nothing was left half done that stops the next run
    ok(shoplake(tty_env, "job", "run", "all"))
