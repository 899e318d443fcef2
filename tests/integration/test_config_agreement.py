"""The endpoint a component uses is the one `config show` shows: a setting that cannot
take effect is refused with a message, never silently ignored or half applied."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from pipeline import stack
from pipeline.aws.secrets import secret_json
from pipeline.config import Settings
from pipeline.stack.localstack import LocalStackService
from pipeline.stack.manager import process_of

pytestmark = pytest.mark.integration


def shoplake(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(done: subprocess.CompletedProcess[str], *said: str) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("Error: ")]
    assert len(errors) == 1 and "unexpected" not in done.stderr, done.stderr
    for text in said:
        assert text in errors[0], done.stderr
    return errors[0]


def test_a_port_the_stack_does_not_run_on_is_refused_not_ignored(
        stack_settings: Settings, cli_env: dict[str, str]) -> None:
    port = str(_free_port())
    env = {**cli_env, "SHOPLAKE_MYSQL_PORT": port}
    before = secret_json(stack_settings, stack_settings.mysql.secret_name)
    # every component that connects to the source says so, instead of using the secret's
    for args in (("seed", "--scale", "0.01"), ("reconcile",), ("cdc", "--once")):
        refused(shoplake(env, *args), f"`mysql.port` is {port} (env SHOPLAKE_MYSQL_PORT)",
                f"but the secret says {before['port']}", "`shoplake/")
    # provisioning with it would point the secrets at a port where nothing listens
    refused(shoplake(env, "provision"), f"`mariadb` runs on port {before['port']}",
            "`mysql.port` is " + port)
    assert secret_json(stack_settings, stack_settings.mysql.secret_name) == before
    ok = shoplake(cli_env, "provision")  # the same command, without the variable, works
    assert ok.returncode == 0, ok.stderr


def test_stack_up_with_another_port_does_not_restart_a_healthy_service(
        stack_settings: Settings, cli_env: dict[str, str]) -> None:
    before = process_of(stack_settings, LocalStackService(stack_settings)).running()
    env = {**cli_env, "SHOPLAKE_LOCALSTACK_PORT": str(_free_port())}
    refused(shoplake(env, "stack", "up"), f"`localstack` runs on port {before.port}")
    status = shoplake(env, "stack", "status")
    assert status.returncode == 1 and f"running on port {before.port}" in status.stdout
    after = process_of(stack_settings, LocalStackService(stack_settings)).running()
    assert after is not None and after.pid == before.pid, "LocalStack kept its state"
    assert all(r.healthy for r in stack.status(stack_settings))


def test_a_mistyped_variable_is_refused_with_the_nearest_name(cli_env: dict[str, str]) -> None:
    done = shoplake({**cli_env, "SHOPLAKE_MYSQL_PROT": "1"}, "config", "show")
    refused(done, "`SHOPLAKE_MYSQL_PROT` is not a setting")
    assert "did you mean `SHOPLAKE_MYSQL_PORT`?" in done.stderr
