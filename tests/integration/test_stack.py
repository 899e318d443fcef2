"""The native stack against real MariaDB, PostgreSQL and LocalStack.

Tests run in file order: the last ones kill a service and stop the stack.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psutil
import psycopg2
import pymysql
import pytest

from pipeline import stack
from pipeline.aws.clients import aws_client
from pipeline.aws.secrets import mysql_credentials, warehouse_credentials
from pipeline.config import Settings, load_settings
from pipeline.errors import PortInUseError, SecretNotFoundError
from pipeline.progress import SilentProgress
from pipeline.stack.manager import _up_one, process_of
from pipeline.stack.mariadb import MariaDBService

pytestmark = pytest.mark.integration


SERVICES = ["mariadb", "postgres", "localstack", "glue", "worker-1", "worker-2", "dashboards"]
"""The servers, then the Step Functions workers (two by default) and the live dashboards."""


def _pids(settings: Settings) -> dict[str, int]:
    return {r.service: r.pid for r in stack.status(settings)}


def test_up_leaves_every_service_running_and_healthy(stack_settings: Settings) -> None:
    rows = stack.status(stack_settings)
    assert [r.service for r in rows] == SERVICES
    for row in rows:
        assert row.healthy, row
        assert row.state == "running"
        assert psutil.pid_exists(row.pid)
        assert row.uptime_s is not None and row.uptime_s >= 0


def test_mysql_select_1_with_credentials_from_the_secret(stack_settings: Settings) -> None:
    creds = mysql_credentials(stack_settings)
    assert (creds.engine, creds.port, creds.dbname) == ("mysql", stack_settings.mysql.port, "shop")
    conn = pymysql.connect(host=creds.host, port=creds.port, user=creds.username,
                           password=creds.password.reveal(), database=creds.dbname)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
        # What the CDC service will rely on: a row-based binlog with full images and metadata.
        cur.execute("SHOW VARIABLES WHERE Variable_name IN ('log_bin', 'binlog_format', "
                    "'binlog_row_image', 'binlog_row_metadata', 'server_id', 'time_zone')")
        variables = dict(cur.fetchall())
    assert variables == {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL",
                         "binlog_row_metadata": "FULL", "server_id": "1",
                         "time_zone": "+00:00"}


def test_mysql_app_user_cannot_log_in_with_a_wrong_password(stack_settings: Settings) -> None:
    creds = mysql_credentials(stack_settings)
    with pytest.raises(pymysql.err.OperationalError) as err:
        pymysql.connect(host=creds.host, port=creds.port, user=creds.username,
                        password=creds.password.reveal() + "x", database=creds.dbname)
    assert err.value.args[0] == 1045


def test_postgres_select_1_with_credentials_from_the_secret(stack_settings: Settings) -> None:
    creds = warehouse_credentials(stack_settings)
    assert (creds.engine, creds.port, creds.dbname) == ("postgres", stack_settings.postgres.port,
                                                        "warehouse")
    conn = psycopg2.connect(host=creds.host, port=creds.port, user=creds.username,
                            password=creds.password.reveal(), dbname=creds.dbname)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1, current_setting('TimeZone')")
            assert cur.fetchone() == (1, "UTC")
    finally:
        conn.close()


def test_secrets_have_the_rds_format(stack_settings: Settings) -> None:
    sm = aws_client(stack_settings, "secretsmanager")
    for name in (stack_settings.mysql.secret_name, stack_settings.postgres.secret_name):
        value = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
        assert set(value) == {"engine", "host", "port", "username", "password", "dbname"}
        assert len(value["password"]) >= 20


def test_unknown_secret_says_how_to_fix_it(stack_settings: Settings) -> None:
    from pipeline.aws.secrets import get_db_credentials

    with pytest.raises(SecretNotFoundError, match="shoplake stack up"):
        get_db_credentials(stack_settings, "shoplake/does-not-exist")


def test_s3_put_and_get_on_the_provisioned_buckets(stack_settings: Settings) -> None:
    s3 = aws_client(stack_settings, "s3")
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert set(stack_settings.lake.buckets) <= names
    key = f"tests/{uuid.uuid4()}.txt"
    body = "héllo bronze\n".encode()
    s3.put_object(Bucket=stack_settings.lake.bronze_bucket, Key=key, Body=body)
    got = s3.get_object(Bucket=stack_settings.lake.bronze_bucket, Key=key)["Body"].read()
    assert got == body
    s3.delete_object(Bucket=stack_settings.lake.bronze_bucket, Key=key)


def test_step_functions_activity_round_trip(stack_settings: Settings) -> None:
    """A state machine hands a task to a worker polling an activity, and gets its answer."""
    sfn = aws_client(stack_settings, "stepfunctions")
    name = f"test-{uuid.uuid4().hex[:8]}"
    activity = sfn.create_activity(name=name)["activityArn"]
    definition = {"StartAt": "Work", "States": {"Work": {
        "Type": "Task", "Resource": activity, "TimeoutSeconds": 60, "End": True}}}
    machine = sfn.create_state_machine(
        name=name, definition=json.dumps(definition),
        roleArn="arn:aws:iam::000000000000:role/shoplake-states")["stateMachineArn"]
    received: dict = {}

    def worker() -> None:
        task = sfn.get_activity_task(activityArn=activity, workerName="pytest")
        received.update(json.loads(task["input"]))
        sfn.send_task_success(taskToken=task["taskToken"],
                              output=json.dumps({"doubled": received["n"] * 2}))

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"n": 21}))
    deadline = time.monotonic() + 60
    while True:
        desc = sfn.describe_execution(executionArn=execution["executionArn"])
        if desc["status"] != "RUNNING" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    thread.join(timeout=5)
    assert received == {"n": 21}
    assert desc["status"] == "SUCCEEDED"
    assert json.loads(desc["output"]) == {"doubled": 42}
    sfn.delete_state_machine(stateMachineArn=machine)
    sfn.delete_activity(activityArn=activity)


def test_second_up_is_a_no_op(stack_settings: Settings) -> None:
    before = _pids(stack_settings)
    results = stack.up(stack_settings)
    assert {r.service: r.action for r in results} == dict.fromkeys(SERVICES,
                                                                  "already running")
    assert _pids(stack_settings) == before
    provisioned = stack.provision_stack(stack_settings)
    assert {p.action for p in provisioned if p.kind in ("bucket", "secret", "activity",
                                                        "state machine")} == {"unchanged"}


def test_up_with_other_settings_restarts_the_workers_with_them(
        stack_settings: Settings, cli_env: dict[str, str]) -> None:
    """`SHOPLAKE_X=... stack up` gives the workers X (a run's steps execute there); it
    never records X for workers that still run without it."""
    def up(env: dict[str, str]) -> None:
        done = subprocess.run([sys.executable, "-m", "pipeline.cli.main", "stack", "up"],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr

    def worker_env(pids: dict[str, int]) -> set[str | None]:
        return {psutil.Process(pids[w]).environ().get("SHOPLAKE_CDC_EXCLUDE_TABLES")
                for w in ("worker-1", "worker-2")}

    before = _pids(stack_settings)
    up({**cli_env, "SHOPLAKE_CDC_EXCLUDE_TABLES": "scratch_x"})
    changed = _pids(stack_settings)
    try:
        assert all(changed[w] != before[w] for w in ("worker-1", "worker-2")), changed
        assert all(changed[s] == before[s] for s in ("mariadb", "postgres", "localstack"))
        assert worker_env(changed) == {"scratch_x"}
    finally:
        up(cli_env)  # and back: restarted again, without it
    back = _pids(stack_settings)
    assert all(back[w] != changed[w] for w in ("worker-1", "worker-2")), back
    assert worker_env(back) <= {"", None}


def test_cli_status_reports_json(stack_settings: Settings, cli_env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline.cli.main", "stack", "status",
                           "--format", "json"], env=cli_env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {r["service"]: r["healthy"] for r in rows} == dict.fromkeys(SERVICES, True)
    assert {r["service"]: r["port"] for r in rows} == {
        "mariadb": stack_settings.mysql.port, "postgres": stack_settings.postgres.port,
        "localstack": stack_settings.localstack.port, "glue": stack_settings.glue.port,
        "worker-1": 0, "worker-2": 0,
        "dashboards": stack_settings.dashboards.port}


def test_port_taken_by_a_stranger_is_named(stack_settings: Settings) -> None:
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        port = stranger.getsockname()[1]
        other = load_settings(environ={"SHOPLAKE_STACK_STATE_DIR": str(stack_settings.state_dir
                                                                       / "other"),
                                       "SHOPLAKE_MYSQL_PORT": str(port)})
        with pytest.raises(PortInUseError, match=str(port)) as err:
            _up_one(other, MariaDBService(other), SilentProgress())
    assert "SHOPLAKE_MYSQL_PORT" in str(err.value)


def test_killed_service_is_reported_unhealthy_then_restarted_by_up(
        stack_settings: Settings, cli_env: dict[str, str]) -> None:
    # Probes at once, so the dashboards hold several warehouse sessions, as after a page load.
    probe = stack.service_named(stack_settings, "dashboards")
    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(lambda _: probe.healthy(), range(16)))
    victim = process_of(stack_settings, stack.service_named(stack_settings, "postgres"))
    old = victim.running()
    assert old is not None
    os.kill(old.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while victim.running() is not None and time.monotonic() < deadline:
        time.sleep(0.05)

    rows = {r.service: r for r in stack.status(stack_settings)}
    assert not rows["postgres"].healthy
    assert rows["postgres"].state == "crashed"
    assert rows["mariadb"].healthy and rows["localstack"].healthy
    done = subprocess.run([sys.executable, "-m", "pipeline.cli.main", "stack", "status",
                           "--format", "json"], env=cli_env, capture_output=True, text=True)
    assert done.returncode == 1  # scripts can tell that something is down

    results = {r.service: r for r in stack.up(stack_settings)}
    assert results["postgres"].action == "restarted"
    assert results["postgres"].pid != old.pid
    assert results["mariadb"].action == "already running"
    # Dashboards included: each of its pooled sessions died with postgres.
    unhealthy = [(r.service, r.state) for r in stack.status(stack_settings) if not r.healthy]
    assert unhealthy == []
    creds = warehouse_credentials(stack_settings)
    conn = psycopg2.connect(host=creds.host, port=creds.port, user=creds.username,
                            password=creds.password.reveal(), dbname=creds.dbname)
    conn.close()


def test_a_bad_schedule_is_refused_and_never_sticks(stack_settings: Settings,
                                                    cli_env: dict[str, str]) -> None:
    """A schedule is saved only once EventBridge took it; a saved one `stack up` cannot
    apply is named, and `stack up` goes on."""
    from pipeline.orchestration import schedule

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pipeline.cli.main", *args], env=cli_env,
                              capture_output=True, text=True, timeout=120)

    try:
        assert cli("schedule", "set", "rate(30 minutes)").returncode == 0
        for bad, said in (("cron(99 * * * ? *)", "minutes `99` is out of range 0-59"),
                          ("cron(0 3 31 2 ? *)", "it never fires"),
                          ("rate(1 minutes)", "takes the singular: `rate(1 minute)`"),
                          ("", "an empty expression is not a schedule")):
            done = cli("schedule", "set", bad)
            errors = [ln for ln in done.stderr.splitlines() if ln.startswith("Error:")]
            assert done.returncode == 1 and len(errors) == 1 and said in errors[0], done.stderr
            assert "SHOPLAKE_" not in done.stderr and "stack status" not in done.stderr
        assert schedule.stored(stack_settings) == "rate(30 minutes)"
        rules = schedule.describe(stack_settings)["rules"]
        assert rules["shoplake-schedule"]["schedule"] == "rate(30 minutes)"

        # EventBridge unreachable: the new one is not saved, the old one stays.
        localstack = process_of(stack_settings, stack.service_named(stack_settings,
                                                                    "localstack"))
        rec = localstack.running()
        assert rec is not None
        os.killpg(rec.pid, signal.SIGKILL)
        while localstack.running() is not None:
            time.sleep(0.1)
        assert cli("schedule", "set", "cron(0 3 * * ? *)").returncode == 1
        assert schedule.stored(stack_settings) == "rate(30 minutes)"

        # A saved value that cannot be applied (written by hand): `stack up` names it.
        (stack_settings.state_dir / "schedule.json").write_text(
            json.dumps({"expression": "cron(0 25 * * ? *)"}))
        done = cli("stack", "up")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Warning: no schedule is active: `cron(0 25 * * ? *)` is not a schedule " \
               "EventBridge can run: hours `25` is out of range 0-23" in done.stdout, done.stdout
        assert schedule.describe(stack_settings)["rules"] == {}
        shown = cli("schedule", "show")
        assert "not active" in shown.stdout and "hours `25`" in shown.stdout
        # A file edited into something that is not a schedule is named, never a crash.
        path = stack_settings.state_dir / "schedule.json"
        for text, said in (('{"expression": 42}', "`expression` is 42"),
                           ('["rate(5 minutes)"]', "holds no `expression`"),
                           ("not json", "is not JSON")):
            path.write_text(text)
            for args in (("stack", "up"), ("schedule", "show")):
                done = cli(*args)
                assert done.returncode == 0, done.stdout + done.stderr
                assert f"{path}" in done.stdout and said in done.stdout, done.stdout
    finally:
        stack.up(stack_settings)
        schedule.set_schedule(stack_settings, None)


def test_a_hung_service_is_named_within_seconds(stack_settings: Settings,
                                               cli_env: dict[str, str]) -> None:
    """A stopped (SIGSTOP) server accepts connections and answers nothing: commands give
    up quickly, naming it, instead of waiting without a word."""
    def hung(name: str, *args: str) -> tuple[str, float]:
        rec = process_of(stack_settings, stack.service_named(stack_settings, name)).running()
        assert rec is not None
        os.kill(rec.pid, signal.SIGSTOP)
        began = time.monotonic()
        try:
            done = subprocess.run([sys.executable, "-m", "pipeline.cli.main", *args],
                                  env=cli_env, capture_output=True, text=True, timeout=120)
        finally:
            os.kill(rec.pid, signal.SIGCONT)
        assert done.returncode == 1, done.stdout + done.stderr
        return done.stderr, time.monotonic() - began

    err, took = hung("mariadb", "seed", "--scale", "0.01")
    assert "the source database (`mariadb`)" in err and "hangs" in err, err
    assert took < 60, took
    err, took = hung("localstack", "schedule", "set", "rate(5 minutes)")
    assert "LocalStack" in err and "no answer within 5s" in err, err
    assert took < 30, took
    from pipeline.orchestration import schedule

    assert schedule.stored(stack_settings) is None  # nothing saved, nothing half-applied


def test_down_leaves_no_process_behind(stack_settings: Settings) -> None:
    records = [process_of(stack_settings, svc).running()
               for svc in stack.manager.all_services(stack_settings)]
    groups = {rec.pid for rec in records if rec is not None}
    assert len(groups) == len(SERVICES)
    stopped = dict(stack.down(stack_settings))
    assert stopped == dict.fromkeys(SERVICES, True)
    leftovers = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            in_group = os.getpgid(proc.pid) in groups
        except ProcessLookupError:
            continue
        mentions_state = str(stack_settings.state_dir) in " ".join(proc.info["cmdline"] or [])
        if (in_group or mentions_state) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            leftovers.append(proc.info)
    assert leftovers == []
    assert all(not r.healthy and r.state == "stopped" for r in stack.status(stack_settings))
    assert stack.down(stack_settings) == [("worker-1", False), ("worker-2", False),
                                          ("dashboards", False), ("glue", False),
                                          ("localstack", False), ("postgres", False),
                                          ("mariadb", False)]
    # Later test modules share the session's stack: bring it back (data dirs were kept).
    assert {r.action for r in stack.up(stack_settings)} == {"started"}


def test_down_purge_deletes_data_and_a_new_up_starts_from_scratch(
        stack_settings: Settings) -> None:
    old_password = warehouse_credentials(stack_settings).password
    state = stack_settings.state_dir
    (state / "schedule.json").write_text('{"expression": "rate(5 minutes)"}')
    stack.down(stack_settings, purge=True)
    for sub in ("data", "credentials", "logs", "run", "schedule.json"):
        assert not (state / sub).exists(), sub
    results = stack.up(stack_settings)  # fresh data dirs, new passwords, secrets updated
    assert {r.action for r in results} == {"started"}
    assert (state / "data" / "mariadb" / "mysql").is_dir()
    assert (state / "data" / "postgres" / "PG_VERSION").exists()
    new_password = warehouse_credentials(stack_settings).password
    assert new_password != old_password
    creds = warehouse_credentials(stack_settings)
    psycopg2.connect(host=creds.host, port=creds.port, user=creds.username,
                     password=creds.password.reveal(), dbname=creds.dbname).close()


def test_every_service_listens_on_loopback_only(stack_settings: Settings) -> None:
    """The VPC: nothing of the stack is reachable on the machine's other addresses (the
    secrets, the lake and the databases are only for this machine)."""
    from pipeline.stack.process import port_in_use

    others = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs
              if a.family == socket.AF_INET and not a.address.startswith("127.")]
    if not others:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    ports = {"mariadb": stack_settings.mysql.port, "postgres": stack_settings.postgres.port,
             "localstack": stack_settings.localstack.port, "glue": stack_settings.glue.port}
    for name, port in ports.items():
        assert port_in_use("127.0.0.1", port), f"{name} answers on loopback"
        for address in others:
            assert not port_in_use(address, port), f"{name} answers on {address}:{port}"
