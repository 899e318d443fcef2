"""Compose mode: the services are containers; report them through the Docker engine."""

from __future__ import annotations

import time
from datetime import UTC

from pipeline.config import Settings
from pipeline.errors import ServiceStartError, ServiceUnavailableError
from pipeline.progress import Progress, SilentProgress
from pipeline.stack.manager import ServiceStatus, native_services

# Compose service name of each stand-in (docker-compose.yml uses the AWS-side names).
COMPOSE_SERVICE = {"mariadb": "mysql", "postgres": "postgres", "localstack": "localstack"}
# Every service of docker-compose.yml (tests/unit/test_compose.py keeps the two in step).
SERVICES = ("init", "mysql", "postgres", "localstack", "driver", "cdc", "spark-master",
            "spark-worker", "worker", "etl", "dashboards")


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


def compose_status(settings: Settings) -> list[ServiceStatus]:
    """One row per container of the compose project, health from the Docker engine."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise ServiceUnavailableError(
            f"the Docker engine is not reachable: {exc}", service="docker",
            hint="start Docker, or use the native stack (unset SHOPLAKE_STACK_MODE)") from exc
    # docker-compose 1.29 names the project after the folder unless told otherwise, so by
    # default match shoplake's services by their compose service names.
    project = settings.stack.compose_project
    label = f"com.docker.compose.project={project}" if project else "com.docker.compose.service"
    rows = []
    for container in client.containers.list(all=True, filters={"label": label}):
        if not project and container.labels.get("com.docker.compose.service") not in SERVICES:
            continue
        state = container.attrs.get("State", {})
        health = state.get("Health", {}).get("Status")
        started = state.get("StartedAt", "")
        rows.append(ServiceStatus(
            service=container.labels.get("com.docker.compose.service", container.name),
            pid=state.get("Pid") or None, port=0,
            healthy=health == "healthy" or (health is None and container.status == "running"),
            uptime_s=_uptime(started) if container.status == "running" else None,
            state=container.status, log_file=f"docker compose logs {container.name}"))
    return sorted(rows, key=lambda r: r.service)


def _uptime(started_at: str) -> float | None:
    from datetime import datetime

    try:
        start = datetime.fromisoformat(started_at[:26].rstrip("Z") + "+00:00")
    except ValueError:
        return None
    return (datetime.now(UTC) - start).total_seconds()
