"""The stack: the stand-ins for RDS MySQL, Redshift and the AWS endpoints, run natively.

Natively (the default) shoplake starts MariaDB, PostgreSQL and LocalStack as background
processes with pid files, logs and data under the state folder. In compose mode the same
services are containers; `up` then only waits for their health and provisions, and
`status` asks the Docker engine.
"""

from __future__ import annotations

from pipeline.stack.manager import (
                                    ServiceStatus,
                                    UpResult,
                                    down,
                                    native_services,
                                    provision_stack,
                                    service_named,
                                    status,
                                    up,
)

__all__ = ["ServiceStatus", "UpResult", "down", "native_services", "provision_stack",
           "service_named", "status", "up"]
