"""Which of this host's addresses a Spark peer can reach: the one the route to it uses.

A container on two compose networks has two addresses, and its hostname resolves to either;
Spark binds to and advertises one. The address of the route to the master is on a network
the master shares, so the master, workers and drivers all advertise reachable addresses.
`python -m pipeline.glue.network HOST [PORT]` prints it (the spark-worker's `--host`).
"""

from __future__ import annotations

import socket
import sys


def route_address(host: str, port: int = 7077) -> str:
    """The local address the kernel would send packets to `host` from (nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((socket.gethostbyname(host), port))
        return probe.getsockname()[0]


def master_host_port(master: str) -> tuple[str, int]:
    """(host, port) of the first master of a `spark://h1:p1,h2:p2` URL."""
    first = master.removeprefix("spark://").split(",")[0]
    host, _, port = first.rpartition(":")
    return host, int(port)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        print("usage: python -m pipeline.glue.network HOST [PORT]", file=sys.stderr)
        sys.exit(2)
    print(route_address(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else 7077))
