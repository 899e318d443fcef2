"""The compose stack for real: podman serving the Docker API (engine.py), the project's
images and the three stand-ins built, `docker-compose up -d` of the real docker-compose.yml
plus tests/compose/standins.yml, and `down -v` at the end.

Runs after the native suite (tests/conftest.py orders `compose` items last). Needs root (it
installs Debian packages and runs rootful podman), as CI and these machines have.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.compose.engine import REPO, Engine, log
from tests.conftest import TOOLS

PROJECT = "shoplake-ci"
"""Compose project name: container, network and volume names start with it."""

DASHBOARDS_HOST_PORT = 28150 + int(os.environ.get("SHOPLAKE_TEST_PORT_OFFSET", "0"))
"""Host port the dashboards service publishes (8050 by default; a test port here)."""

FILES = (REPO / "docker-compose.yml", REPO / "tests" / "compose" / "standins.yml")

LONG_RUNNING = ("mysql", "postgres", "localstack", "glue", "cdc", "spark-master",
                "spark-worker", "worker", "dashboards")
"""Services that stay up after `up -d` (init and driver run once and exit 0)."""


@dataclass
class ComposeStack:
    engine: Engine
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)
    logs_dir: Path | None = None

    def compose(self, *args: str, check: bool = True, timeout: float = 1800
                ) -> subprocess.CompletedProcess:
        cmd = ["docker-compose", "--project-name", PROJECT, "--ansi", "never"]
        for f in FILES:
            cmd += ["-f", str(f)]
        result = subprocess.run([*cmd, *args], env=self.env, cwd=REPO, timeout=timeout,
                                capture_output=True, text=True)
        if check and result.returncode != 0:
            raise AssertionError(f"`docker-compose {' '.join(args)}` exited "
                                 f"{result.returncode}\n{result.stdout[-4000:]}\n"
                                 f"{result.stderr[-4000:]}")
        return result

    def containers(self) -> list[dict]:
        out = self.engine.podman("ps", "-a", "--format", "json", "--filter",
                                 f"label=com.docker.compose.project={PROJECT}").stdout
        return json.loads(out or b"[]")

    def health(self) -> dict[str, str]:
        """`service[_n]` -> running/healthy/starting/unhealthy/exited(N)."""
        states = {}
        for c in self.containers():
            labels = c.get("Labels") or {}
            name = f"{labels.get('com.docker.compose.service')}_" \
                   f"{labels.get('com.docker.compose.container-number', '1')}"
            status = c.get("Status", "")
            if c.get("State") != "running":
                states[name] = f"exited({c.get('ExitCode')})"
            elif "(" in status:
                states[name] = status[status.index("(") + 1:status.index(")")]
            else:
                states[name] = "running"
        return states

    def save_logs(self) -> None:
        if not self.logs_dir:
            return
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        for c in self.containers():
            name = c["Names"][0] if c.get("Names") else c["Id"][:12]
            out = self.engine.podman("logs", c["Id"], check=False)
            (self.logs_dir / f"{name}.log").write_bytes(out.stdout + out.stderr)


_REPORT: list[str] = []
"""Lines for the end of the test session: timings and image sizes (README's numbers)."""


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's reporter
    if _REPORT:
        terminalreporter.section("compose stack")
        for line in _REPORT:
            terminalreporter.write_line(line)


def _image_sizes(engine: Engine) -> list[str]:
    out = engine.podman("images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}").stdout
    return sorted(line for line in out.decode().splitlines()
                  if f"/{PROJECT}_" in line or "shoplake-standin" in line)


def _artifacts() -> Path:
    return Path(os.environ.get("SHOPLAKE_TEST_ARTIFACTS", REPO / ".shoplake" / "artifacts"))


@pytest.fixture(scope="session")
def compose_engine() -> Iterator[Engine]:
    if os.geteuid() != 0:
        pytest.skip("the compose test runs rootful podman: run it as root (CI does)")
    root = os.environ.get("SHOPLAKE_TEST_STATE_ROOT", "/tmp")
    state = Path(tempfile.mkdtemp(prefix="shoplake-compose-", dir=root))
    engine = Engine(state, TOOLS)
    started = time.monotonic()
    engine.prepare()
    engine.start()
    log(f"engine ready in {time.monotonic() - started:.0f} s")
    _REPORT.append(f"engine ready (packages, base images, wheelhouses, API) in "
                   f"{time.monotonic() - started:.0f} s")
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def compose_stack(compose_engine: Engine) -> Iterator[ComposeStack]:
    env = {**compose_engine.env, "DOCKER_SOCKET": str(compose_engine.socket),
           "DASHBOARDS_HOST_PORT": str(DASHBOARDS_HOST_PORT)}
    env.pop("LOCALSTACK_AUTH_TOKEN", None)
    stack = ComposeStack(compose_engine, env, logs_dir=_artifacts() / "compose-logs")
    stack.compose("down", "-v", "--remove-orphans", check=False)  # an interrupted run's leftovers

    started = time.monotonic()
    compose_engine.build_standins()
    stack.timings["build stand-ins"] = time.monotonic() - started
    started = time.monotonic()
    stack.compose("build")
    stack.timings["build images"] = time.monotonic() - started

    started = time.monotonic()
    try:
        stack.compose("up", "-d", timeout=600)
    except subprocess.TimeoutExpired:
        stack.save_logs()
        states = stack.health()
        stack.compose("down", "-v", check=False)
        raise AssertionError(f"`docker-compose up -d` did not return in 600 s: {states} "
                             f"(logs in {stack.logs_dir})") from None
    deadline = time.monotonic() + 300
    while True:
        states = stack.health()
        done = all(any(k.startswith(f"{svc}_") and v in ("healthy", "running")
                       for k, v in states.items()) for svc in LONG_RUNNING)
        if done and states.get("driver_1") == "exited(0)":
            break
        if time.monotonic() > deadline or any(v.startswith("exited(") and v != "exited(0)"
                                              for v in states.values()):
            stack.save_logs()
            stack.compose("down", "-v", check=False)
            raise AssertionError(f"the compose stack did not turn healthy: {states} "
                                 f"(logs in {stack.logs_dir})")
        time.sleep(1)
    stack.timings["up to all healthy"] = time.monotonic() - started
    try:
        yield stack
    finally:
        stack.save_logs()
        _REPORT.append("timings: " + ", ".join(f"{k} {v:.0f} s"
                                               for k, v in stack.timings.items()))
        _REPORT.extend(f"image {line}" for line in _image_sizes(compose_engine))
        if stack.containers():  # a test failed before test_down_leaves_nothing ran
            stack.compose("down", "-v", "--remove-orphans", check=False)
