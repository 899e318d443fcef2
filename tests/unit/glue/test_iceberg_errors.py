"""What silver's Iceberg catalog says when its database does not answer."""

from __future__ import annotations

import pytest

from pipeline.aws.secrets import DbCredentials
from pipeline.config import Secret, load_settings
from pipeline.errors import TransientError
from pipeline.glue.iceberg import CatalogUnreachableError

pytestmark = pytest.mark.unit


def test_an_unreachable_catalog_is_transient_and_names_where_it_looked() -> None:
    creds = DbCredentials("postgres", "127.0.0.1", 15432, "shoplake", Secret("x"), "warehouse",
                          secret_name="shoplake/warehouse")
    err = CatalogUnreachableError(creds, "iceberg_catalog", "Connection refused")
    assert isinstance(err, TransientError)
    text = str(err)
    for part in ("Iceberg catalog", "`iceberg_catalog`", "`postgres`", "127.0.0.1:15432",
                 "shoplake/warehouse", "Connection refused"):
        assert part in text, text
    assert "shoplake stack up" in err.hint and "nothing was written" in err.hint
    assert err.service == "postgres" and err.port == 15432


class _JavaClass:
    def __init__(self, name: str) -> None:
        self._name = name

    def getName(self) -> str:  # noqa: N802 - py4j's Java method names
        return self._name


class _Java:
    def __init__(self, cls: str, message: str, cause: _Java | None = None) -> None:
        self._cls, self._message, self._cause = cls, message, cause

    def getClass(self) -> _JavaClass:  # noqa: N802
        return _JavaClass(self._cls)

    def getMessage(self) -> str:  # noqa: N802
        return self._message

    def getCause(self) -> _Java | None:  # noqa: N802
        return self._cause


class _Py4JError(Exception):
    def __init__(self, java: _Java) -> None:
        super().__init__("An error occurred while calling o123.sql")
        self.java_exception = java


def test_a_catalog_lost_inside_spark_is_the_transient_catalog_error(monkeypatch) -> None:
    """postgres killed while a load job reads silver: the JVM's JDBC catalog link fails
    with a PSQLException, which must not read as a failed job (nor as S3 gone)."""
    from pipeline.config import load_settings
    from pipeline.glue import errors, iceberg

    creds = DbCredentials("postgres", "127.0.0.1", 15432, "shoplake", Secret("x"),
                          "warehouse", secret_name="shoplake/warehouse")
    monkeypatch.setattr(errors, "_keep_trace", lambda *_a: "/tmp/spark.log")
    monkeypatch.setattr(iceberg, "catalog_login", lambda _s: creds)
    exc = _Py4JError(_Java(
        "org.apache.iceberg.jdbc.UncheckedSQLException", "Failed to get table shop.orders",
        _Java("org.postgresql.util.PSQLException",
              "FATAL: terminating connection due to unexpected postmaster exit")))
    typed = errors.translate(exc, load_settings(), "load_fact_orders")
    assert isinstance(typed, CatalogUnreachableError), typed
    assert "`postgres`" in str(typed) and "load_fact_orders" in str(typed)
    # A refused connection names the catalog too, not LocalStack's S3.
    refused = _Py4JError(_Java("org.postgresql.util.PSQLException",
                               "Connection to 127.0.0.1:15432 refused."))
    assert isinstance(errors.translate(refused, load_settings(), "x"),
                      CatalogUnreachableError)


class _Session:
    """What `attach` touches of a SparkSession: its runtime conf (a dict here)."""

    def __init__(self, conf: dict[str, str]) -> None:
        self.values = dict(conf)
        outer = self

        class _Conf:
            def get(self, key, default=None):
                return outer.values.get(key, default)

            def set(self, key, value):
                outer.values[key] = value

        self.conf = _Conf()


def test_attach_keeps_the_aws_binding_a_glue_job_started_with(monkeypatch) -> None:
    """On AWS the job's --conf holds the Glue Data Catalog: attach must not look up the
    local JDBC catalog (there is no such secret there) nor overwrite the binding."""
    from pipeline.glue import iceberg

    settings = load_settings(environ={})
    aws = iceberg.catalog_binding(settings, "aws")
    looked_up = []

    class LookedUp(Exception):
        pass

    def login(s):
        looked_up.append(s)
        raise LookedUp

    monkeypatch.setattr(iceberg, "catalog_login", login)
    session = _Session(aws)
    iceberg.attach(session, settings)
    iceberg.attach(session, settings)
    assert session.values == aws and not looked_up
    assert iceberg.session_target(_Session({}), settings) == "local"
    with pytest.raises(LookedUp):  # locally: the JDBC catalog's login is looked up
        iceberg.attach(_Session({}), settings)
    assert looked_up
