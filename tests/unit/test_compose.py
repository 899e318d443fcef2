"""docker-compose.yml, checked statically: no Docker engine runs where the tests do.

Each property has a small checker returning a list of problems; the mutation tests feed the
checkers a broken copy, so a checker that can no longer fail is caught too.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from pipeline.cli.main import cli
from pipeline.config import SECTIONS, env_name, load_settings
from pipeline.stack import credentials

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
STATE_MOUNT = "/var/lib/shoplake"

IMAGES = {
    "mysql": "mysql:8.4",
    "postgres": "postgres:16",
    "localstack": "localstack/localstack:4.14.0",
}
BUILD_TARGETS = {
    "init": "driver",
    "driver": "driver",
    "cdc": "cdc",
    "spark-master": "spark",
    "spark-worker": "spark",
    "worker": "spark",
    "etl": "spark",
    "dashboards": "dashboards",
}
NETWORKS = {
    "mysql": {"private"},
    "postgres": {"private"},
    "localstack": {"edge"},
    "glue": {"edge"},
    "driver": {"private", "edge"},
    "cdc": {"private", "edge"},
    "spark-master": {"private"},
    "spark-worker": {"private", "edge"},
    "worker": {"private", "edge"},
    "etl": {"private", "edge"},
    "dashboards": {"private", "edge"},
}
DEPENDS_ON = {
    "init": {},
    "mysql": {"init": "service_completed_successfully"},
    "postgres": {"init": "service_completed_successfully"},
    "localstack": {},
    "glue": {},
    "driver": {"mysql": "service_healthy", "postgres": "service_healthy",
               "localstack": "service_healthy", "glue": "service_healthy"},
    "cdc": {"driver": "service_completed_successfully"},
    "spark-master": {},
    "spark-worker": {"spark-master": "service_started"},
    "worker": {"spark-worker": "service_started", "driver": "service_completed_successfully"},
    "etl": {"worker": "service_started", "driver": "service_completed_successfully"},
    "dashboards": {"driver": "service_completed_successfully"},
}
COMMANDS = {
    "init": ["shoplake", "stack", "init"],
    "driver": ["shoplake", "stack", "up"],
    "cdc": ["shoplake", "cdc"],
    "worker": ["shoplake", "worker"],
    "etl": ["shoplake", "run"],
    "dashboards": ["shoplake", "dashboard", "serve"],
}
BINLOG_FLAGS = {
    "log-bin": None,  # any value (or none): the flag must be present
    "binlog-format": "ROW",
    "binlog-row-image": "FULL",
    "binlog-row-metadata": "FULL",
    "character-set-server": "utf8mb4",
    "default-time-zone": "+00:00",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose_settings():
    return load_settings(environ={"SHOPLAKE_STACK_MODE": "compose"})


# --- helpers ------------------------------------------------------------------------------

def env_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whichever of the two compose forms it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def networks_of(service: dict[str, Any]) -> set[str]:
    nets = service.get("networks") or []
    return set(nets) if isinstance(nets, list) else set(nets.keys())


def depends_of(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def mounts_of(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source, target, mode) of each short-syntax volume entry."""
    out = []
    for entry in service.get("volumes") or []:
        # A ${VAR:-default} source holds a colon of its own.
        parts = re.split(r":(?![^{]*})", entry)
        out.append((parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"))
    return out


def command_words(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(w) for w in cmd]


def dockerfile_stages() -> set[str]:
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", DOCKERFILE.read_text(),
                          flags=re.MULTILINE | re.IGNORECASE))


def defined_env_vars() -> set[str]:
    return {env_name(section, f.name)
            for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)}


# --- checkers (each returns problems; empty means fine) -----------------------------------

def image_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    for name, svc in compose["services"].items():
        image = svc.get("image")
        if image is None:
            if "build" not in svc:
                problems.append(f"{name}: neither image nor build")
            continue
        repo, _, tag = image.rpartition(":")
        if not repo or "/" in tag or tag in ("", "latest"):
            problems.append(f"{name}: image `{image}` is not pinned")
        if IMAGES.get(name) != image:
            problems.append(f"{name}: image `{image}`, expected `{IMAGES.get(name)}`")
    return problems


def build_problems(compose: dict[str, Any], stages: set[str]) -> list[str]:
    problems = []
    for name, target in BUILD_TARGETS.items():
        build = compose["services"][name].get("build") or {}
        if build.get("context") != ".":  # relative to docker-compose.yml: the repo root
            problems.append(f"{name}: build context is not the repo root")
        if build.get("dockerfile") != "docker/Dockerfile":
            problems.append(f"{name}: dockerfile `{build.get('dockerfile')}`")
        if build.get("target") != target:
            problems.append(f"{name}: target `{build.get('target')}`, expected `{target}`")
        if build.get("target") not in stages:
            problems.append(f"{name}: target `{build.get('target')}` is not a Dockerfile stage")
    return problems


def binlog_problems(command: list[str]) -> list[str]:
    flags = {}
    for word in command:
        if word.startswith("--"):
            key, _, value = word[2:].partition("=")
            flags[key] = value
    problems = [f"missing --{k}" for k in BINLOG_FLAGS if k not in flags]
    problems += [f"--{k}={flags[k]}, expected {v}" for k, v in BINLOG_FLAGS.items()
                 if v is not None and k in flags and flags[k] != v]
    return problems


def network_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    for name, svc in compose["services"].items():
        if name == "init":
            if svc.get("network_mode") != "none" or svc.get("networks"):
                problems.append("init: must have no network (network_mode: none)")
            continue
        if networks_of(svc) != NETWORKS.get(name):
            problems.append(f"{name}: networks {sorted(networks_of(svc))}, "
                            f"expected {sorted(NETWORKS.get(name) or [])}")
    declared = compose.get("networks") or {}
    if set(declared) != {"private", "edge"}:
        problems.append(f"declared networks {sorted(declared)}")
    if (declared.get("private") or {}).get("internal") is not True:
        problems.append("network `private` is not internal")
    if (declared.get("edge") or {}).get("internal"):
        problems.append("network `edge` must reach out (not internal)")
    return problems


def depends_problems(compose: dict[str, Any]) -> list[str]:
    return [f"{name}: depends_on {depends_of(svc)}, expected {DEPENDS_ON.get(name)}"
            for name, svc in compose["services"].items() if depends_of(svc) != DEPENDS_ON.get(name)]


def volume_problems(compose: dict[str, Any]) -> list[str]:
    declared = set(compose.get("volumes") or {})
    used = {src for svc in compose["services"].values() for src, _, _ in mounts_of(svc)
            if not src.startswith(("/", ".", "${"))}  # "${VAR:-/path}": a host path
    problems = [f"volume `{v}` used but not declared" for v in sorted(used - declared)]
    problems += [f"volume `{v}` declared but unused" for v in sorted(declared - used)]
    return problems


def shoplake_env_problems(compose: dict[str, Any]) -> list[str]:
    known = defined_env_vars()
    defaults = {env_name(section, f.name): str(f.metadata["compose"])
                for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    problems = []
    for name, svc in compose["services"].items():
        env = env_of(svc)
        for var, value in env.items():
            if not var.startswith("SHOPLAKE_"):
                continue
            if var not in known:
                problems.append(f"{name}: `{var}` is not defined by pipeline/config.py")
            elif var != "SHOPLAKE_STACK_MODE" and value == defaults[var]:
                problems.append(f"{name}: `{var}` repeats the compose-mode default")
        if "build" in svc and env.get("SHOPLAKE_STACK_MODE") != "compose":
            problems.append(f"{name}: runs shoplake without SHOPLAKE_STACK_MODE=compose")
    return problems


def click_problems(words: list[str]) -> list[str]:
    """`words` (starting with `shoplake`) must reach a command that does something."""
    command: click.Command = cli
    path = ["shoplake"]
    for word in words[1:]:
        if word.startswith("-") or not isinstance(command, click.Group):
            break
        sub = command.commands.get(word)
        if sub is None:
            return [f"`{' '.join(path)}` has no command `{word}` "
                    f"(has: {', '.join(sorted(command.commands))})"]
        command, path = sub, [*path, word]
    if command is cli:
        return [f"`{' '.join(words)}` names no command"]
    if isinstance(command, click.Group) and not command.invoke_without_command:
        return [f"`{' '.join(path)}` is a group that only prints help"]
    return []


# --- the properties -------------------------------------------------------------------------

def test_services_are_exactly_the_stack(compose):
    assert set(compose["services"]) == set(DEPENDS_ON)


def test_images_are_pinned_to_the_expected_tags(compose):
    assert image_problems(compose) == []
    assert ":latest" not in COMPOSE_FILE.read_text()


def test_built_services_use_existing_dockerfile_targets(compose):
    stages = dockerfile_stages()
    assert {"driver", "cdc", "spark"} <= stages
    assert build_problems(compose, stages) == []


def test_mysql_writes_a_row_based_binlog(compose, compose_settings):
    words = command_words(compose["services"]["mysql"])
    assert words[0] == "mysqld"
    assert binlog_problems(words) == []
    assert f"--server-id={compose_settings.mysql.server_id}" in words


def test_databases_match_the_compose_settings(compose, compose_settings):
    mysql = env_of(compose["services"]["mysql"])
    assert mysql["MYSQL_DATABASE"] == compose_settings.mysql.database == "shop"
    assert mysql["MYSQL_USER"] == compose_settings.mysql.user == "shoplake"
    postgres = env_of(compose["services"]["postgres"])
    assert postgres["POSTGRES_DB"] == compose_settings.postgres.database == "warehouse"
    assert postgres["POSTGRES_USER"] == compose_settings.postgres.user == "shoplake"
    assert "MYSQL_ROOT_PASSWORD" not in mysql and "POSTGRES_PASSWORD" not in postgres


def test_password_files_are_the_ones_stack_init_writes(compose, compose_settings):
    folder = compose_settings.state_dir / "credentials"
    assert str(compose_settings.state_dir) == STATE_MOUNT
    mysql = env_of(compose["services"]["mysql"])
    postgres = env_of(compose["services"]["postgres"])
    assert mysql["MYSQL_ROOT_PASSWORD_FILE"] == str(folder / credentials.MYSQL_ROOT)
    assert mysql["MYSQL_PASSWORD_FILE"] == str(folder / credentials.MYSQL_APP)
    assert postgres["POSTGRES_PASSWORD_FILE"] == str(folder / credentials.POSTGRES)


def test_state_volume_is_shared_and_read_only_for_the_databases(compose):
    services = compose["services"]
    expected = {"init": "rw", "driver": "rw", "mysql": "ro", "postgres": "ro"}
    for name, mode in expected.items():
        assert ("state", STATE_MOUNT, mode) in mounts_of(services[name]), name
    for name in set(services) - set(expected):
        assert not [m for m in mounts_of(services[name]) if m[0] == "state"], name


def test_databases_keep_their_data_in_named_volumes(compose):
    services = compose["services"]
    assert ("mysql-data", "/var/lib/mysql", "rw") in mounts_of(services["mysql"])
    assert ("postgres-data", "/var/lib/postgresql/data", "rw") in mounts_of(services["postgres"])
    assert [m for m in mounts_of(services["localstack"]) if m[1] == "/var/lib/localstack"]


def test_named_volumes_are_declared_and_used(compose):
    assert volume_problems(compose) == []


def test_healthchecks(compose):
    services = compose["services"]
    mysql = " ".join(services["mysql"]["healthcheck"]["test"])
    assert "mysqladmin" in mysql and "ping" in mysql
    # the password from a file, never on a command line
    assert (f"--defaults-extra-file={STATE_MOUNT}/credentials/{credentials.MYSQL_ROOT_CNF}"
            in mysql)
    assert "password" not in mysql.replace(credentials.MYSQL_ROOT_CNF, "")
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert ("http://localhost:4566/_localstack/health"
            in services["localstack"]["healthcheck"]["test"])
    for name in ("mysql", "postgres", "localstack"):
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name


def healthcheck_space_problems(compose: dict[str, Any]) -> list[str]:
    """podman's Docker API joins a CMD healthcheck's arguments and splits them on spaces
    again (measured under podman 4.3): an argument with a space breaks the check there."""
    problems = []
    for name, svc in compose["services"].items():
        test = (svc.get("healthcheck") or {}).get("test") or []
        if isinstance(test, list) and test[:1] == ["CMD"]:
            problems += [f"{name}: healthcheck argument `{arg}` has a space"
                         for arg in test[1:] if " " in str(arg)]
    return problems


def test_healthcheck_arguments_have_no_spaces(compose):
    assert healthcheck_space_problems(compose) == []
    broken = copy.deepcopy(compose)
    broken["services"]["dashboards"]["healthcheck"]["test"] = [
        "CMD", "python", "-c", "import sys; sys.exit(0)"]
    assert healthcheck_space_problems(broken) != []


def test_depends_on_conditions(compose):
    assert depends_problems(compose) == []


def test_network_membership(compose):
    assert network_problems(compose) == []


def test_localstack_services_and_auth_token_pass_through(compose, compose_settings):
    env = env_of(compose["services"]["localstack"])
    assert env["SERVICES"] == compose_settings.localstack.services
    assert env["LOCALSTACK_AUTH_TOKEN"] == "${LOCALSTACK_AUTH_TOKEN:-}"


def test_driver_reads_container_health_through_the_docker_socket(compose):
    mounts = mounts_of(compose["services"]["driver"])
    # Docker's socket by default; DOCKER_SOCKET names another engine's (podman's in CI).
    assert ("${DOCKER_SOCKET:-/var/run/docker.sock}", "/var/run/docker.sock", "ro") in mounts


def test_shoplake_variables_are_defined_and_not_redundant(compose):
    assert shoplake_env_problems(compose) == []


def test_service_commands(compose):
    for name, words in COMMANDS.items():
        assert command_words(compose["services"][name]) == words, name
    # The Glue Data Catalog: moto's server on the port compose mode's settings name.
    glue_port = load_settings(environ={"SHOPLAKE_STACK_MODE": "compose"}).glue.port
    assert command_words(compose["services"]["glue"]) == [
        "moto_server", "-H", "0.0.0.0", "-p", str(glue_port)]
    spark = {n: command_words(compose["services"][n]) for n in ("spark-master", "spark-worker")}
    assert spark["spark-master"][:2] == ["spark-class", "org.apache.spark.deploy.master.Master"]
    # The worker advertises its address on the master's network (pipeline.glue.network).
    assert spark["spark-worker"][:2] == ["sh", "-c"]
    worker = " ".join(spark["spark-worker"][2].split())
    assert worker.startswith("exec spark-class org.apache.spark.deploy.worker.Worker --host ")
    assert '"$$(python -m pipeline.glue.network spark-master 7077)"' in worker  # $$: compose
    assert worker.endswith(" spark://spark-master:7077")


@pytest.mark.parametrize("service", sorted(COMMANDS))
def test_shoplake_commands_exist_in_the_cli(compose, service):
    words = command_words(compose["services"][service])
    assert words[0] == "shoplake"
    assert click_problems(words) == []


# --- the checkers can fail ------------------------------------------------------------------

def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = doc
        for key in parents:
            node = node[key]
        node[last] = value
    return mutate


MUTATIONS = {
    "latest image": (_set("services.postgres.image", "postgres:latest"), image_problems),
    "untagged image": (_set("services.localstack.image", "localstack/localstack"),
                       image_problems),
    "wrong condition": (_set("services.driver.depends_on.mysql.condition", "service_started"),
                        depends_problems),
    "db on edge": (_set("services.mysql.networks", ["private", "edge"]), network_problems),
    "private not internal": (_set("networks.private", {}), network_problems),
    "undeclared volume": (_set("volumes", {"state": {}}), volume_problems),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_checkers_catch_a_broken_copy(compose, mutation):
    mutate, checker = MUTATIONS[mutation]
    broken = copy.deepcopy(compose)
    mutate(broken)
    assert checker(broken) != []


def test_env_checker_catches_unknown_and_redundant_variables(compose):
    broken = copy.deepcopy(compose)
    broken["services"]["cdc"]["environment"] = {"SHOPLAKE_STACK_MODE": "compose",
                                                "SHOPLAKE_MYSQL_HOSTNAME": "db",
                                                "SHOPLAKE_MYSQL_HOST": "mysql"}
    broken["services"]["driver"]["environment"] = {}
    problems = shoplake_env_problems(broken)
    assert len(problems) == 3, problems


def test_other_checkers_catch_bad_values():
    assert binlog_problems(["mysqld", "--binlog-format=MIXED"]) != []
    assert click_problems(["shoplake", "stack", "nope"]) != []
    assert click_problems(["shoplake", "stack"]) != []  # a group alone only prints help
    assert click_problems(["shoplake", "stack", "init"]) == []
    assert build_problems({"services": {n: {} for n in BUILD_TARGETS}}, {"driver"}) != []


# --- docker-compose 1.29 validates the file offline -------------------------------------------

def _docker_compose(compose_file: Path, cwd: Path, *args: str,
                    **env: str) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    assert exe, "install Debian's `docker-compose` package (scripts/setup.sh does)"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")} | env
    return subprocess.run([exe, "-f", str(compose_file), "config", *args], cwd=cwd,
                          env=environ, capture_output=True, text=True, timeout=60)


def test_docker_compose_accepts_the_file():
    result = _docker_compose(COMPOSE_FILE, REPO, "-q")
    assert result.returncode == 0, result.stderr


def test_docker_compose_rejects_a_broken_copy(compose, tmp_path):
    broken = copy.deepcopy(compose)
    broken["services"]["mysql"]["depends_on"]["init"]["condition"] = "service_finished"
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken, sort_keys=False))
    result = _docker_compose(path, tmp_path, "-q")
    assert result.returncode != 0
    assert "service_finished" in result.stderr


def test_docker_compose_passes_the_auth_token_through():
    result = _docker_compose(COMPOSE_FILE, REPO, LOCALSTACK_AUTH_TOKEN="ls-test-token")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]["localstack"]["environment"]
    assert resolved["LOCALSTACK_AUTH_TOKEN"] == "ls-test-token"


def test_compose_status_knows_every_service(compose):
    from pipeline.stack.compose import SERVICES

    assert set(SERVICES) == set(compose["services"])


def test_long_running_services_restart_and_one_shots_do_not(compose):
    from pipeline.stack.compose import ONE_SHOT

    for name, service in compose["services"].items():
        if name in (*ONE_SHOT, "etl"):
            assert "restart" not in service, name  # one-shots end; a restart would loop
        else:
            assert service.get("restart") == "unless-stopped", name
