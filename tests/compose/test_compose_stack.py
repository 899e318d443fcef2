"""`docker compose up` for real: the real docker-compose.yml (with the stand-ins of
tests/compose/standins.yml for the three upstream images) under podman's Docker API.

The tests run in file order on one stack: every service healthy, a seeded source, one
pipeline run through the state machine that reconciles exactly, the dashboards on their
host port, `shoplake stack status` through the Docker SDK, the private network's isolation,
and last `docker compose down -v` leaving nothing behind.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

import docker
from tests.compose.conftest import DASHBOARDS_HOST_PORT, LONG_RUNNING, PROJECT, ComposeStack

pytestmark = [pytest.mark.compose, pytest.mark.slow]

CONNECT = ("import socket, sys\n"
           "host, port = sys.argv[1], int(sys.argv[2])\n"
           "try:\n"
           "    socket.create_connection((host, port), timeout=3).close()\n"
           "except OSError as exc:\n"
           "    print(f'{host}:{port} unreachable: {exc}'); sys.exit(1)\n"
           "print(f'{host}:{port} reachable')\n")
"""Exit 0 when a TCP connection to argv[1]:argv[2] opens within 3 s."""


def test_every_service_is_healthy(compose_stack: ComposeStack):
    states = compose_stack.health()
    for service in LONG_RUNNING:
        mine = {k: v for k, v in states.items() if k.startswith(f"{service}_")}
        assert mine and all(v in ("healthy", "running") for v in mine.values()), (service, states)
    # The services with a healthcheck were really checked by it, not just started.
    for service in ("mysql", "postgres", "localstack", "glue", "dashboards"):
        assert states[f"{service}_1"] == "healthy", states
    assert states["init_1"] == "exited(0)" and states["driver_1"] == "exited(0)"
    assert len([k for k in states if k.startswith("worker_")]) == 2  # deploy.replicas


def test_one_pipeline_run_through_the_state_machine_reconciles_exactly(
        compose_stack: ComposeStack):
    seeded = compose_stack.compose("run", "--rm", "driver", "shoplake", "seed",
                                   "--scale", "0.01")
    assert "seeded `shop`" in seeded.stdout
    run = compose_stack.compose("run", "--rm", "etl", check=False, timeout=900)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    # Every step of the state machine ran, through the workers, in this run.
    for step in ("WaitForCdcSync", "StartCrawler", "BronzeToSilver[orders]", "LoadDims",
                 "LoadFacts", "QualityAndReconcile", "WriteReport"):
        assert f"{step}] succeeded" in out or f"/{step}] succeeded" in out, (step, out[-4000:])
    assert "reconcile: all" in out and "days match" in out, out[-3000:]
    assert "differences 0, held 0" in out
    # Gold holds the source's orders: reconcile again, from another container.
    rec = compose_stack.compose("run", "--rm", "driver", "shoplake", "reconcile", "--full",
                                check=False)
    assert rec.returncode == 0, rec.stdout[-3000:] + rec.stderr[-3000:]
    assert "1,000" in rec.stdout or "1000" in rec.stdout, rec.stdout[-3000:]


def test_the_dashboards_answer_on_their_host_port(compose_stack: ComposeStack):
    base = f"http://127.0.0.1:{DASHBOARDS_HOST_PORT}"
    with urllib.request.urlopen(f"{base}/_health", timeout=10) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"{base}/", timeout=10) as resp:
        index = resp.read().decode()
    assert "Sales Overview" in index and "Pipeline Health" in index
    with urllib.request.urlopen(f"{base}/sales_overview/", timeout=30) as resp:
        assert resp.status == 200


def test_stack_status_reports_container_health_through_the_docker_sdk(
        compose_stack: ComposeStack):
    result = compose_stack.compose("run", "--rm", "driver", "shoplake", "stack", "status",
                                   "--format", "json", check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads(result.stdout[result.stdout.index("["):])
    by_service = {row["service"]: row for row in rows}
    assert set(by_service) == {"init", "driver", "mysql", "postgres", "localstack", "glue", "cdc",
                               "spark-master", "spark-worker", "worker-1", "worker-2",
                               "dashboards"}, sorted(by_service)
    assert all(row["healthy"] for row in rows), rows
    assert by_service["init"]["state"] == "completed"
    assert by_service["mysql"]["state"] == "running"
    # The engine's view, not a guess: stop a service and status says so (exit 1).
    compose_stack.compose("stop", "cdc")
    try:
        stopped = compose_stack.compose("run", "--rm", "driver", "shoplake", "stack",
                                        "status", "--format", "json", check=False)
        assert stopped.returncode == 1
        rows = json.loads(stopped.stdout[stopped.stdout.index("["):])
        cdc = next(row for row in rows if row["service"] == "cdc")
        assert not cdc["healthy"] and cdc["state"] == "exited", cdc
    finally:
        compose_stack.compose("start", "cdc")


def test_the_private_network_isolates_the_databases(compose_stack: ComposeStack):
    client = docker.DockerClient(base_url=compose_stack.env["DOCKER_HOST"])
    image = f"{PROJECT}_driver"

    def from_edge_only(host: str, port: int) -> tuple[int, str]:
        container = client.containers.run(image, ["python", "-c", CONNECT, host, str(port)],
                                          network=f"{PROJECT}_edge", detach=True)
        try:
            code = container.wait(timeout=60)["StatusCode"]
            return code, container.logs().decode()
        finally:
            container.remove(force=True)

    # The edge network works (LocalStack answers) ...
    assert from_edge_only("localstack", 4566)[0] == 0
    # ... but the databases are not on it.
    for host, port in (("mysql", 3306), ("postgres", 5432)):
        code, out = from_edge_only(host, port)
        assert code == 1, f"{host}:{port} reachable from the edge network: {out}"
    # The services in the VPC reach them.
    for service in ("cdc", "spark-worker", "spark-master"):
        for host, port in (("mysql", 3306), ("postgres", 5432)):
            result = compose_stack.compose("exec", "-T", service, "python3", "-c", CONNECT,
                                           host, str(port), check=False)
            assert result.returncode == 0, (service, host, result.stdout, result.stderr)


def test_down_leaves_no_container_network_or_volume(compose_stack: ComposeStack):
    compose_stack.save_logs()
    compose_stack.compose("down", "-v", "--remove-orphans")
    engine = compose_stack.engine
    label = f"label=com.docker.compose.project={PROJECT}"
    assert engine.podman("ps", "-a", "-q", "--filter", label).stdout.strip() == b""
    networks = engine.podman("network", "ls", "--format", "{{.Name}}").stdout.decode().split()
    assert not [n for n in networks if n.startswith(f"{PROJECT}_")], networks
    volumes = engine.podman("volume", "ls", "--format", "{{.Name}}").stdout.decode().split()
    assert not [v for v in volumes if v.startswith(f"{PROJECT}_")], volumes
