"""Errors of the warehouse; each names the table or procedure and says what to do next.

`from_psycopg` is the one place a driver error becomes a typed one, so callers (the
orchestration workers) retry on `TransientError` and stop on `TerminalError` without ever
reading SQLSTATEs themselves.
"""

from __future__ import annotations

import re

import psycopg2

from pipeline.errors import (
    LoginRefusedError,
    ServiceUnavailableError,
    ShoplakeError,
    TerminalError,
    TransientError,
    first_line,
)

_TRANSIENT_SQLSTATES = {
    "40001": "a concurrent transaction conflicted (serialization failure)",
    "40P01": "a deadlock with a concurrent transaction",
    "55P03": "a lock was not available",
    "57014": "the statement was cancelled (statement timeout)",
    "57P01": "the server is shutting down",
    "57P03": "the server is starting up",
}
"""SQLSTATEs after which the same call may succeed."""

_LOGIN_REFUSED = ("password authentication failed", "no pg_hba.conf entry",
                  "role \"", "database \"", "authentication failed")
"""libpq's words for a login the server refused (a failed connection carries no SQLSTATE
client-side, so these stable messages stand in for 28P01, 28000 and 3D000)."""

_UNREACHABLE = ("connection refused", "timeout expired", "could not connect to server",
                "server closed the connection", "connection reset", "is starting up",
                "is shutting down", "not yet accepting connections", "in recovery mode",
                "could not receive data from server", "could not send data to server",
                "no connection to the server", "terminating connection",
                "connection already closed", "ssl syscall error")
"""libpq's words for a server that cannot be reached or went away: worth a retry."""

_UNRESOLVED = ("could not translate host name",)
"""libpq's words for a host name that does not resolve. In compose a stopped container's
name leaves the network's DNS: as likely a service that is down (and may come back) as a
misspelt host, so worth a retry too."""

_MISSING_SQLSTATES = ("42P01", "3F000", "42883")
"""Undefined table, undefined schema, undefined function/procedure: DDL was never applied."""


class WarehouseError(TerminalError):
    """A warehouse operation failed in a way retrying will not fix."""

    def __init__(self, message: str, *, table: str = "", procedure: str = "",
                 hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.table, self.procedure = table, procedure


class WarehouseNotInitializedError(WarehouseError):
    def __init__(self, what: str, detail: str, *, table: str = "", procedure: str = "") -> None:
        super().__init__(f"{what} failed because the `sales` schema is incomplete: {detail}",
                         table=table, procedure=procedure,
                         hint="create the schema with `shoplake warehouse init`")


class SchemaDriftError(WarehouseError):
    def __init__(self, drift: dict[str, str]) -> None:
        lines = "; ".join(f"`{t}` {d}" for t, d in sorted(drift.items()))
        super().__init__(
            f"existing warehouse tables differ from pipeline/warehouse/model.py: {lines}",
            table=",".join(sorted(drift)),
            hint="rebuild with `shoplake warehouse init --reset` (drops schema `sales` and its "
                 "rows; the next run reloads them) or migrate the tables by hand")


class UnknownTableError(WarehouseError):
    def __init__(self, table: str, detail: str) -> None:
        super().__init__(f"cannot load `{table}`: {detail}", table=table,
                         hint="load only staging tables, with the columns listed in "
                              "`pipeline.warehouse.model.STAGING_COLUMNS`")


class StagingLoadError(WarehouseError):
    def __init__(self, table: str, detail: str) -> None:
        super().__init__(f"COPY into `{table}` was rejected, nothing was loaded: {detail}",
                         table=table,
                         hint="fix the rows handed over by the silver job (keys must be unique "
                              "and not NULL, values must fit the column types), then rerun")


class ProcedureError(WarehouseError):
    def __init__(self, procedure: str, detail: str) -> None:
        super().__init__(f"`CALL sales.{procedure}()` failed and was rolled back: {detail}",
                         procedure=procedure,
                         hint="check the staging tables it reads; rerunning after a fix is "
                              "safe (every procedure is idempotent)")


class WarehouseConflictError(TransientError):
    """A conflict with a concurrent session: the same call may succeed on a retry."""

    def __init__(self, what: str, detail: str, *, table: str = "", procedure: str = "") -> None:
        super().__init__(f"{what} was rolled back: {detail}",
                         hint="retry; nothing was committed")
        self.table, self.procedure = table, procedure


class WarehouseUnavailableError(ServiceUnavailableError):
    """PostgreSQL (the Redshift stand-in) cannot be reached; retry once it is up."""

    def __init__(self, host: str, port: int, detail: str) -> None:
        # libpq repeats the address: 'connection to server at "h", port p failed: ...'
        detail = re.sub(r'^connection to server at "[^"]*"(?:\s*\([^)]*\))?, port \d+ '
                        r'failed:\s*', "", detail.strip())
        super().__init__(f"the warehouse (`postgres`) at {host}:{port} is not reachable: "
                         f"{detail}",
                         service="postgres", port=port,
                         hint="start it with `shoplake stack up`")


def _first_line(exc: psycopg2.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = diag.message_primary if diag is not None else None
    if primary:
        # The server's own words, plus the row COPY choked on when there is one.
        context = (diag.context or "").splitlines()
        where = next((ln for ln in context if ln.startswith("COPY ")), "")
        return f"{primary} ({where})" if where else primary
    return first_line(exc)


def from_psycopg(exc: psycopg2.Error, what: str, *, table: str = "",
                 procedure: str = "") -> Exception:
    """The typed error for a psycopg2 error raised while doing `what` (for messages)."""
    code = getattr(exc, "pgcode", None) or ""
    detail = _first_line(exc)
    if code in _TRANSIENT_SQLSTATES:
        return WarehouseConflictError(what, f"{_TRANSIENT_SQLSTATES[code]} ({detail})",
                                      table=table, procedure=procedure)
    if code in _MISSING_SQLSTATES:
        return WarehouseNotInitializedError(what, detail, table=table, procedure=procedure)
    if not code and _matches(exc, _UNREACHABLE):
        # No SQLSTATE: the connection itself broke mid-call; the server rolled back.
        return WarehouseConflictError(what, "the connection to the warehouse (`postgres`) "
                                      f"was lost ({detail})", table=table,
                                      procedure=procedure)
    if procedure:
        return ProcedureError(procedure, detail)
    if table:
        return StagingLoadError(table, detail)
    return WarehouseError(f"{what} failed: {detail}", hint="rerun with --debug for details")


def _matches(exc: BaseException, phrases: tuple[str, ...]) -> bool:
    text = str(exc).lower()
    return any(p in text for p in phrases)


def from_connect_error(exc: psycopg2.Error, host: str, port: int, user: str,
                       secret_name: str) -> ShoplakeError:
    """The typed error for a failed connection to the warehouse: a refused login is
    terminal and names the secret; only an unreachable or departing server is transient."""
    text = first_line(exc)
    detail = text.rsplit("FATAL:", 1)[-1].strip()  # the server's own words, when it spoke
    if _matches(exc, _LOGIN_REFUSED):
        return LoginRefusedError("postgres", host, port, user, secret_name, detail)
    if _matches(exc, _UNREACHABLE):
        return WarehouseUnavailableError(host, port, detail)
    if _matches(exc, _UNRESOLVED):
        return WarehouseUnavailableError(
            host, port, f"the name `{host}` does not resolve (a stopped container, or a "
                        "misspelt `postgres.host`)")
    return WarehouseError(f"cannot connect to the warehouse at {host}:{port}: {detail}",
                          hint="check `shoplake config show` and `shoplake stack status`")
