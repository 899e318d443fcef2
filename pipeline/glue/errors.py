"""Spark's errors as shoplake's typed errors; the Java stack trace goes to the Spark log.

A failure inside Spark reaches Python as a Py4JJavaError (or one of pyspark's captured
exceptions) whose text is the whole Java stack trace, often 150 lines. `translate` keeps
that trace in `<state>/logs/spark.log` and gives the user one line: what failed, the root
cause, and whether a retry may help. An unreachable S3 (LocalStack stopped) anywhere in
the Java cause chain is transient; anything else is terminal.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pipeline.config import Settings, redact
from pipeline.errors import ServiceUnavailableError, ShoplakeError, TerminalError, first_line

LOG = logging.getLogger(__name__)

UNREACHABLE_CLASSES = (
    "java.net.ConnectException", "java.net.SocketTimeoutException",
    "java.net.NoRouteToHostException", "java.net.SocketException",
    "org.apache.http.conn.HttpHostConnectException", "org.apache.http.NoHttpResponseException",
    "org.apache.http.conn.ConnectTimeoutException", "org.apache.hadoop.fs.s3a.AWSClientIOException",
    "org.apache.hadoop.net.ConnectTimeoutException",
)
"""Java exceptions of a service that does not answer (LocalStack's S3, from Spark)."""

UNREACHABLE_WORDS = ("Unable to execute HTTP request", "Connection refused",
                     "connect timed out", "Read timed out")
"""The AWS SDK's words for the same, when it wraps them in a generic SdkClientException."""


CATALOG_CLASSES = ("org.postgresql.util.PSQLException",
                   "org.apache.iceberg.jdbc.UncheckedSQLException",
                   "org.apache.iceberg.jdbc.UncheckedInterruptedException")
"""Java exceptions of the JDBC catalog's PostgreSQL link."""

CATALOG_DOWN_WORDS = ("Connection to", "refused", "terminating connection",
                      "I/O error occurred", "connection has been closed",
                      "database system is starting up", "database system is shutting down",
                      "Failed to get connection", "Connection attempt timed out",
                      "postmaster exit")
"""What the PostgreSQL driver says when the server is gone or going."""


@dataclass(frozen=True)
class JavaCause:
    cls: str
    message: str

    def __str__(self) -> str:
        short = self.cls.rsplit(".", 1)[-1]
        return f"{short}: {first_line_of(self.message)}" if self.message else short


def first_line_of(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def java_line(text: str, limit: int = 200) -> str:
    """The line of a py4j error's text that names the Java exception (else its first line),
    for a one-line message."""
    line = next((ln.strip() for ln in text.splitlines() if "Exception" in ln), None)
    return (line if line is not None else first_line_of(text))[:limit]


class SparkJobError(TerminalError):
    """A Glue job failed inside Spark for a reason a retry will not fix."""

    def __init__(self, job: str, cause: str, log_file: str) -> None:
        super().__init__(f"`{job}` failed in Spark: {cause}",
                         hint=f"the full Java stack trace is in {log_file}; "
                              "`shoplake --debug job run ...` shows it on the console")
        self.job = job


def java_causes(exc: BaseException) -> list[JavaCause]:
    """The Java exception and its causes, outermost first (empty for non-Java errors)."""
    java = getattr(exc, "java_exception", None)
    if java is None:
        desc = getattr(exc, "desc", None) or getattr(exc, "_desc", None)
        cls = type(exc).__name__
        return [JavaCause(cls, str(desc or exc))] if _is_spark(exc) else []
    causes, seen = [], 0
    try:
        while java is not None and seen < 20:
            causes.append(JavaCause(str(java.getClass().getName()), str(java.getMessage() or "")))
            java, seen = java.getCause(), seen + 1
    except Exception:  # noqa: BLE001 - a dead JVM cannot be asked; keep what we have
        LOG.debug("could not walk the Java cause chain", exc_info=True)
    return causes


def _is_spark(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith(("py4j", "pyspark"))


def is_spark_error(exc: BaseException) -> bool:
    return getattr(exc, "java_exception", None) is not None or _is_spark(exc)


def _keep_trace(settings: Settings, job: str, exc: BaseException) -> str:
    from pipeline.glue.session import spark_log_file

    log_file = spark_log_file(settings)
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a", encoding="utf-8") as fh:
            fh.write(f"\n=== shoplake: `{job}` failed at {time.strftime('%Y-%m-%d %H:%M:%S')} "
                     f"UTC: {type(exc).__name__}\n{redact(str(exc))}\n")
    except OSError:
        LOG.debug("could not write %s", log_file, exc_info=True)
    return str(log_file)


def translate(exc: BaseException, settings: Settings, job: str = "a Spark job"
              ) -> ShoplakeError | None:
    """The typed error for a Spark failure (None when `exc` did not come from Spark)."""
    if isinstance(exc, ShoplakeError) or not is_spark_error(exc):
        return None
    causes = java_causes(exc)
    log_file = _keep_trace(settings, job, exc)
    root = causes[-1] if causes else JavaCause(type(exc).__name__, first_line(exc))
    catalog = next((c for c in causes if c.cls in CATALOG_CLASSES), None)
    if catalog is not None and any(w in c.message for c in causes for w in CATALOG_DOWN_WORDS):
        # The JVM's JDBC link to silver's Iceberg catalog (in the stack's PostgreSQL).
        from pipeline.glue.iceberg import CatalogUnreachableError, catalog_login

        try:
            creds = catalog_login(settings)
        except Exception:  # noqa: BLE001 - the secret store may be down too
            creds = None
        if creds is not None:
            return CatalogUnreachableError(creds, settings.lake.catalog_database,
                                           f"{catalog} (while `{job}` ran; trace: {log_file})")
        return ServiceUnavailableError(
            f"silver's Iceberg catalog (database `{settings.lake.catalog_database}` of "
            f"`postgres`) stopped answering while `{job}` ran: {catalog}", service="postgres",
            hint=f"start it with `shoplake stack up`, then rerun (trace: {log_file})")
    unreachable = any(c.cls in UNREACHABLE_CLASSES
                      or any(w in c.message for w in UNREACHABLE_WORDS) for c in causes)
    if unreachable:
        ls = settings.localstack
        return ServiceUnavailableError(
            f"S3 (LocalStack at {ls.endpoint_url}) stopped answering while `{job}` ran: "
            f"{root}", service="localstack", port=ls.port,
            hint=f"start it with `shoplake stack up`, then rerun (trace: {log_file})")
    if "Py4JNetworkError" in type(exc).__name__ or "Answer from Java side is empty" in str(exc):
        return SparkJobError(job, "Spark's JVM died (out of memory, or killed)", log_file)
    return SparkJobError(job, str(root), log_file)
