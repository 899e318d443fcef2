"""Connections to the source database, and MySQL errors as typed errors, by error code.

Every component that talks to the source (seed, simulator, CDC, reconcile) connects here
with credentials read from Secrets Manager, so a refused login is terminal and names the
secret, and only a server that cannot be reached or went away is transient (retried by
the CDC follower and the Step Functions workers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pymysql

from pipeline.aws.secrets import DbCredentials, mysql_credentials
from pipeline.config import Settings
from pipeline.errors import (
    ConflictError,
    LoginRefusedError,
    QueryError,
    ServiceUnavailableError,
    ShoplakeError,
)

Connection = pymysql.connections.Connection

LOGIN_REFUSED = {
    1044: "access to the database denied",
    1045: "access denied (wrong user or password)",
    1049: "unknown database",
    1698: "access denied (no password given)",
}
"""MySQL error codes of a login that the server refused."""

UNREACHABLE = {
    2002: "cannot connect through the socket",
    2003: "cannot connect (connection refused or timed out)",
    2006: "the server has gone away",
    2013: "lost the connection to the server (or it hangs: no answer within the read timeout)",
    2055: "lost the connection to the server",
    1053: "the server is shutting down",
    1927: "the connection was killed",
    1040: "too many connections",
}
"""Codes after which the same call may succeed once the server is back."""

CONFLICTS = {1205: "a lock wait timed out", 1213: "a deadlock"}
"""Codes of a transaction rolled back by a conflict with another one."""


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a PyMySQL error, if it carries one."""
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def translate(exc: pymysql.err.Error, creds: DbCredentials | None,
              what: str = "a statement") -> ShoplakeError:
    """The typed error for a PyMySQL error raised while talking to `creds`' server (None:
    a session whose credentials are not at hand)."""
    service = (creds.service if creds else "") or "mysql"
    port = creds.port if creds else None
    where = f" at {creds.host}:{creds.port}" if creds else ""
    code = error_code(exc)
    detail = str(exc.args[-1]) if exc.args else type(exc).__name__
    if code in LOGIN_REFUSED:
        return LoginRefusedError(service, creds.host if creds else "?", port or 0,
                                 creds.username if creds else "?",
                                 creds.secret_name if creds else "",
                                 f"{LOGIN_REFUSED[code]} (error {code})")
    if code in UNREACHABLE or isinstance(exc, pymysql.err.InterfaceError) or (
            code is None and isinstance(exc, pymysql.err.OperationalError)):
        # No code, or InterfaceError(0, ''): PyMySQL met a broken or closed socket itself.
        return ServiceUnavailableError(
            f"the source database (`{service}`){where} is not reachable: "
            f"{UNREACHABLE.get(code or 0, detail or 'the connection was closed')}",
            service=service, port=port,
            hint="start it with `shoplake stack up` (or wait for it to come back)")
    if code in CONFLICTS:
        return ConflictError(service, what, f"{CONFLICTS[code]} (error {code})")
    if code == 1146:  # no such table
        return QueryError(service, what, detail, code="1146",
                          hint="a table the pipeline reads is missing from the source: if it was "
                               "renamed or dropped, put it back; a new, empty source "
                               "gets its tables from `shoplake seed`")
    return QueryError(service, what, detail, code=str(code or ""))


@contextlib.contextmanager
def translated(creds: DbCredentials, what: str = "a statement") -> Iterator[None]:
    """Raise PyMySQL errors from the block as shoplake's typed errors."""
    try:
        yield
    except pymysql.err.Error as exc:
        raise translate(exc, creds, what) from exc


READ_TIMEOUT_S = 120
"""Longest a source session waits for the server's next packet (no query here takes long)."""
LOGIN_TIMEOUT_S = 15
"""Longest the login waits for the server's greeting and answers."""


def connect(creds: DbCredentials, **kwargs: Any) -> Connection:
    """A session on `creds.dbname`, in UTC, utf8mb4; typed errors when it cannot be had."""
    # A hung server (stopped, swapping) accepts the TCP connection and then says nothing:
    # without a read timeout the greeting, and every query, would wait forever.
    # The login gets LOGIN_TIMEOUT_S, queries READ_TIMEOUT_S (PyMySQL has one setting
    # for both, read at every packet, so it is raised once the session is open).
    options: dict[str, Any] = {"charset": "utf8mb4", "connect_timeout": 5,
                               "read_timeout": LOGIN_TIMEOUT_S, "write_timeout": 60,
                               "init_command": "SET time_zone = '+00:00'"} | kwargs
    with translated(creds, "the login"):
        conn = pymysql.connect(host=creds.host, port=creds.port, user=creds.username,
                               password=creds.password.reveal(), database=creds.dbname,
                               **options)
    if "read_timeout" not in kwargs:
        conn._read_timeout = READ_TIMEOUT_S  # noqa: SLF001 - no public setter
    return conn


def connect_app(settings: Settings, **kwargs: Any) -> Connection:
    """A session as the application user, whose credentials are in `mysql.secret_name`."""
    return connect(mysql_credentials(settings), **kwargs)
