"""Compose mode: the services are containers; report them through the Docker engine."""

from __future__ import annotations

import time
from datetime import UTC

from pipeline.config import Settings
from pipeline.errors import ServiceStartError, ServiceUnavailableError
from pipeline.progress import Progress, SilentProgress
from pipeline.stack.manager import ServiceStatus, native_services

# Compose service name of each stand-in (docker-compose.yml uses the AWS-side names).
COMPOSE_SERVICE = {"mariadb": "mysql", "postgres": "postgres", "localstack": "localstack",
                   "glue": "glue"}
# Every service of docker-compose.yml (tests/unit/test_compose.py keeps the two in step).
SERVICES = ("init", "mysql", "postgres", "localstack", "glue", "driver", "cdc", "spark-master",
            "spark-worker", "worker", "etl", "dashboards")
REPLICATED = ("worker",)
"""Services with several containers (`deploy.replicas`): their rows say which one."""


def wait_healthy(settings: Settings, progress: Progress | None = None) -> None:
    """Block until every service answers its real health probe, then bootstrap it."""
    progress = progress or SilentProgress()
    for svc in native_services(settings):
        progress.start(svc.name, f"waiting for {COMPOSE_SERVICE[svc.name]} at "
                                 f"{svc.host}:{svc.port}")
        deadline = time.monotonic() + settings.stack.startup_timeout
        while not svc.healthy():
            if time.monotonic() > deadline:
                progress.finish(svc.name, ok=False)
                raise ServiceStartError(
                    f"`{COMPOSE_SERVICE[svc.name]}` is not healthy at {svc.host}:{svc.port}",
                    service=COMPOSE_SERVICE[svc.name], port=svc.port,
                    hint=f"see `docker compose logs {COMPOSE_SERVICE[svc.name]}`")
            time.sleep(1.0)
        svc.bootstrap()  # same users and databases as natively (e.g. the CDC login)
        progress.finish(svc.name, message="healthy")


ONE_SHOT = ("init", "driver")
"""Services that run once and exit; exit 0 is their healthy end (`completed`)."""


def compose_status(settings: Settings) -> list[ServiceStatus]:
    """One row per container of the compose project, health from the Docker engine.

    A container with a healthcheck is healthy when the engine says so; one without is
    healthy while it runs; a one-shot service (init, driver) when it exited 0. One-off
    containers (`docker compose run`, this command's own among them) are left out."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        if "Permission denied" in str(exc):
            raise ServiceUnavailableError(
                "the Docker engine's socket is not readable by this user (permission "
                "denied)", service="docker",
                hint="set DOCKER_GID to the socket's group before `docker compose up` "
                     "(DOCKER_GID=$(stat -c %g /var/run/docker.sock)); the driver joins "
                     "that group") from exc
        raise ServiceUnavailableError(
            f"the Docker engine is not reachable: {exc}", service="docker",
            hint="start Docker, or use the native stack (unset SHOPLAKE_STACK_MODE)") from exc
    # docker-compose 1.29 names the project after the folder unless told otherwise, so by
    # default match shoplake's services by their compose service names.
    project = settings.stack.compose_project
    label = f"com.docker.compose.project={project}" if project else "com.docker.compose.service"
    rows = []
    for container in client.containers.list(all=True, filters={"label": label}):
        labels = container.labels
        service = labels.get("com.docker.compose.service", container.name)
        if not project and service not in SERVICES:
            continue
        if labels.get("com.docker.compose.oneoff", "False").lower() == "true":
            continue
        state = container.attrs.get("State", {})
        health = (state.get("Health") or {}).get("Status") or None  # podman: "" when none
        running = container.status == "running"
        if service in ONE_SHOT and not running:
            code = state.get("ExitCode")
            healthy, shown = code == 0, "completed" if code == 0 else f"exited {code}"
        elif health is not None:
            healthy, shown = running and health == "healthy", \
                container.status if health == "healthy" else health
        else:
            healthy, shown = running, container.status
        number = labels.get("com.docker.compose.container-number")
        rows.append(ServiceStatus(
            service=service if service not in REPLICATED or not number
            else f"{service}-{number}",
            pid=(state.get("Pid") or None) if running else None, port=0,
            healthy=healthy,
            uptime_s=_uptime(state.get("StartedAt", "")) if running else None,
            state=shown, log_file=f"docker compose logs {service}"))
    return sorted(rows, key=lambda r: r.service)


def _uptime(started_at: str) -> float | None:
    from datetime import datetime

    try:
        start = datetime.fromisoformat(started_at[:26].rstrip("Z") + "+00:00")
    except ValueError:
        return None
    return (datetime.now(UTC) - start).total_seconds()
