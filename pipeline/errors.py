"""Every error shoplake raises on purpose: one root, typed subclasses, messages that say what to do.

Errors are either *transient* (worth retrying: a service still starting, a dropped
connection) or *terminal* (retrying will not help: a missing binary, a bad setting). Loops
such as the CDC service and the Step Functions workers decide retries by type, never by
parsing messages.
"""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an error's message, or its class name when it has none
    (`str(KeyError())` is empty, a psycopg2 message starts with a newline)."""
    message = exc.message if isinstance(exc, ShoplakeError) else str(exc)
    for line in message.splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


class ShoplakeError(Exception):
    """Root of shoplake's errors. `hint` says what the user should do next."""

    transient = False

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  -> {self.hint}" if self.hint else self.message


class TerminalError(ShoplakeError):
    """Retrying the same call will fail the same way."""


class TransientError(ShoplakeError):
    """The same call may succeed later (a service starting, a connection reset)."""

    transient = True


class ConfigError(TerminalError):
    """A setting is missing or malformed."""

    def __init__(self, message: str, *, key: str = "", hint: str = "") -> None:
        super().__init__(message, hint=hint or "check `shoplake config show` and the "
                         "SHOPLAKE_* environment variables")
        self.key = key


class MissingBinaryError(TerminalError):
    """A program a native service needs is not installed."""

    def __init__(self, binary: str, package: str, service: str) -> None:
        super().__init__(
            f"`{binary}` is not installed; the `{service}` service needs it",
            hint=f"install it with `apt-get install {package}` or run `bash scripts/setup.sh`",
        )
        self.binary, self.package, self.service = binary, package, service


class ServiceError(ShoplakeError):
    """A native service failed to start, stop or answer its health check."""

    def __init__(self, message: str, *, service: str, port: int | None = None,
                 log_file: str = "", log_tail: str = "", hint: str = "") -> None:
        detail = message
        if log_file:
            detail += f"\n  log: {log_file}"
        if log_tail:
            detail += "\n  last lines:\n" + "\n".join(f"    | {line}"
                                                      for line in log_tail.splitlines())
        super().__init__(detail, hint=hint or f"read the log with `shoplake stack logs {service}`")
        self.service, self.port, self.log_file = service, port, log_file


class ServiceStartError(ServiceError, TerminalError):
    """A service exited or never turned healthy while starting."""


class PortInUseError(ServiceError, TerminalError):
    """Something that is not ours already listens on a service's port."""


class ServiceUnavailableError(ServiceError, TransientError):
    """A service is not reachable right now (not started, restarting)."""


class ProvisioningError(TransientError):
    """Creating buckets or secrets on LocalStack failed."""

    def __init__(self, message: str, *, resource: str, hint: str = "") -> None:
        super().__init__(message, hint=hint or "check `shoplake stack status`; then rerun "
                         "`shoplake provision`")
        self.resource = resource


class SecretNotFoundError(TerminalError):
    """A component asked Secrets Manager for credentials that were never provisioned."""

    def __init__(self, secret_name: str, endpoint: str) -> None:
        super().__init__(
            f"secret `{secret_name}` does not exist in Secrets Manager at {endpoint}",
            hint="run `shoplake stack up` (it provisions the secrets) or `shoplake provision`",
        )
        self.secret_name = secret_name


class SecretMismatchError(ConfigError):
    """A database secret names another endpoint (or user, database) than the settings."""

    def __init__(self, secret_name: str, differences: list[tuple[str, object, object, str]]
                 ) -> None:
        said = "; ".join(f"`{key}` is {want} ({source}) but the secret says {have}"
                         for key, want, have, source in differences)
        keys = [k for k, *_ in differences]
        super().__init__(
            f"the settings and the secret `{secret_name}` disagree: {said}",
            key=keys[0],
            hint="the stack was provisioned with the secret's values; to move it, stop it "
                 "(`shoplake stack down`), then `shoplake stack up` with the new settings; "
                 "otherwise unset the variable(s)")
        self.secret_name, self.keys = secret_name, keys


class SourceNotEmptyError(TerminalError):
    """`shoplake seed` found rows in the source and was not told to replace them."""

    def __init__(self, database: str, counts: dict[str, int]) -> None:
        filled = ", ".join(f"`{t}` {n}" for t, n in counts.items() if n)
        super().__init__(f"database `{database}` already holds rows ({filled})",
                         hint="rerun with `shoplake seed --reset` to drop and reload the tables")
        self.database, self.counts = database, dict(counts)


class LoginRefusedError(TerminalError):
    """A database refused the login shoplake read from a secret: retrying will not help."""

    def __init__(self, service: str, host: str, port: int, user: str, secret_name: str,
                 detail: str) -> None:
        where = f"the secret `{secret_name}` in Secrets Manager" if secret_name else "config"
        super().__init__(
            f"`{service}` at {host}:{port} refused the login of `{user}`: {detail}",
            hint=f"the user and password come from {where}; `shoplake provision` rewrites "
                 "the stack's secrets from the passwords in the state folder's credentials/")
        self.service, self.host, self.port = service, host, port
        self.user, self.secret_name = user, secret_name


class QueryError(TerminalError):
    """A database rejected a statement (unknown column, bad value): not worth a retry."""

    def __init__(self, service: str, what: str, detail: str, *, code: str = "",
                 hint: str = "") -> None:
        super().__init__(f"`{service}` rejected {what}: {detail}" + (f" (error {code})"
                                                                      if code else ""),
                         hint=hint or "rerun with --debug for the statement's traceback")
        self.service, self.code = service, code


class ConflictError(TransientError):
    """A lock wait timed out or a deadlock rolled the transaction back: retry it."""

    def __init__(self, service: str, what: str, detail: str) -> None:
        super().__init__(f"{what} on `{service}` was rolled back: {detail}",
                         hint="retry; nothing was committed")
        self.service = service


class QualityFailedError(TerminalError):
    """A quality gate failed: reconcile found differences, or rows are held in quarantine."""


class SourceDriftError(QualityFailedError):
    """The source lost a column gold carries (renamed or dropped): nothing can be compared
    (nor loaded) for it until the source has it again."""

    def __init__(self, table: str, missing: dict[str, str], unknown: list[str]) -> None:
        shown = ", ".join(f"`{c}`" for c in missing)
        carried = ", ".join(f"`{g}`" for g in missing.values())
        first = next(iter(missing))
        renamed = unknown[0] if len(unknown) == 1 and len(missing) == 1 else ""
        now = f"; it now has `{'`, `'.join(unknown)}`, which shoplake does not know" \
            if unknown else ""
        fix = (f"`ALTER TABLE {table.split('.')[-1]} RENAME COLUMN {renamed} TO {first}`"
               if renamed else f"add `{first}` back to `{table}`")
        super().__init__(
            f"source table `{table}` lost column {shown}, which gold carries ({carried})"
            f"{now}", hint=f"restore it at the source ({fix}): the next run reloads the table "
                           "and releases the rows held meanwhile; to follow the change "
                           "instead, change spark_jobs/silver_model.py and "
                           "pipeline/warehouse/model.py with it")
        self.table, self.missing, self.unknown = table, dict(missing), list(unknown)
