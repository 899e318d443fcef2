"""Shared test helpers: the repo root, and the real native stack for the suites that need
one (integration, faults).

The stack gets its own state folder under /tmp (world-traversable, short enough for unix
socket paths, reachable by the postgres OS user wherever the repo is cloned) and its own
ports, so a developer's running stack is left alone. Session fixtures start it through the
code the CLI uses; unit tests never ask for them, so they start nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import stack
from pipeline.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
TOOLS = Path(os.environ.get("SHOPLAKE_STACK_TOOLS_DIR") or REPO / ".shoplake" / "tools")
"""Downloaded tools (LocalStack's venv, jars, asl-validator, the compose test's images):
where scripts/setup.sh put them. CI keeps them outside the clone, to reuse them."""


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


# Two test sessions may run side by side with SHOPLAKE_TEST_PORT_OFFSET=<n> on one of them.
_OFFSET = int(os.environ.get("SHOPLAKE_TEST_PORT_OFFSET", "0"))
TEST_PORTS = {"SHOPLAKE_MYSQL_PORT": str(23306 + _OFFSET),
              "SHOPLAKE_POSTGRES_PORT": str(25432 + _OFFSET),
              "SHOPLAKE_LOCALSTACK_PORT": str(24566 + _OFFSET),
              "SHOPLAKE_GLUE_PORT": str(24570 + _OFFSET),
              "SHOPLAKE_DASHBOARDS_PORT": str(28050 + _OFFSET)}


TEST_ORCHESTRATION = {"SHOPLAKE_ORCHESTRATION_HEARTBEAT_S": "10",
                      "SHOPLAKE_ORCHESTRATION_RETRY_INTERVAL_S": "1"}
"""A killed worker's task is offered again after 10 s, retries start after 1 s."""


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    """SHOPLAKE_* variables of the test stack (for Settings and for CLI subprocesses)."""
    # CI names a root of its own (and cleans only that); by default /tmp.
    root = os.environ.get("SHOPLAKE_TEST_STATE_ROOT", "/tmp")
    state = Path(tempfile.mkdtemp(prefix="shoplake-test-", dir=root))
    state.chmod(0o755)
    env = {"SHOPLAKE_STACK_STATE_DIR": str(state),
           "SHOPLAKE_STACK_TOOLS_DIR": str(TOOLS), **TEST_PORTS,
           **TEST_ORCHESTRATION}
    yield env
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_settings(stack_env: dict[str, str]) -> Iterator[Settings]:
    """A running, provisioned native stack; stopped and purged at the end of the session."""
    settings = load_settings(environ=stack_env)
    try:
        stack.up(settings)
        yield settings
    finally:
        stack.down(settings, purge=True)


def fresh_lake(settings: Settings, scale: float = 0.01, seed: int = 42) -> Settings:
    """The source seeded anew, the CDC's position and bronze forgotten, the warehouse
    schema dropped and applied again: every pipeline test starts from this."""
    from pipeline import cdc
    from pipeline.source.load import seed as seed_source
    from pipeline.warehouse.schema import apply_ddl

    seed_source(settings, scale=scale, seed=seed, reset=True)
    cdc.reset(settings)
    apply_ddl(settings, reset=True)
    return settings


def source_sql(settings: Settings, *statements: str) -> None:
    """Run `statements` on the source as the application user, autocommitted."""
    from pipeline.source.db import connect_app

    conn = connect_app(settings, autocommit=True)
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


@pytest.fixture(scope="module")
def lake(request: pytest.FixtureRequest, stack_settings: Settings) -> Settings:
    """A fresh lake (`fresh_lake`) for the module; `@pytest.mark.lake(scale=..., seed=...)`
    on the module sets its size and seed (default 0.01 and 42)."""
    marker = request.node.get_closest_marker("lake")
    return fresh_lake(stack_settings, **(marker.kwargs if marker else {}))


@pytest.fixture()
def cli_env(stack_env: dict[str, str]) -> dict[str, str]:
    """Environment for running `shoplake` as a subprocess against the test stack."""
    return {**os.environ, **stack_env}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The compose test runs after the native suite (it is the longest, and needs the
    machine's cores for its image builds)."""
    items.sort(key=lambda item: item.get_closest_marker("compose") is not None)
