"""Driver errors become typed errors by their error codes, never by their classes alone.

The codes and messages here are the ones the real servers send (checked against MariaDB,
PostgreSQL and LocalStack in tests/integration/test_terminal.py).
"""

from __future__ import annotations

import psycopg2
import pymysql
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from pipeline.aws.errors import AwsRequestError
from pipeline.aws.secrets import DbCredentials
from pipeline.classify import typed_error
from pipeline.config import Secret, load_settings
from pipeline.errors import (
    ConflictError,
    LoginRefusedError,
    QueryError,
    ServiceUnavailableError,
    first_line,
)
from pipeline.source.db import translate
from pipeline.warehouse.errors import (
    WarehouseConflictError,
    WarehouseError,
    WarehouseUnavailableError,
    from_connect_error,
    from_psycopg,
)

pytestmark = pytest.mark.unit

CREDS = DbCredentials("mysql", "127.0.0.1", 13306, "shoplake", Secret("x"), "shop",
                      secret_name="shoplake/mysql", service="mariadb")


@pytest.mark.parametrize(("code", "kind"), [
    (1045, LoginRefusedError), (1044, LoginRefusedError), (1049, LoginRefusedError),
    (2003, ServiceUnavailableError), (2013, ServiceUnavailableError),
    (2006, ServiceUnavailableError), (1053, ServiceUnavailableError),
    (1205, ConflictError), (1213, ConflictError),
    (1054, QueryError), (1146, QueryError), (1292, QueryError),
])
def test_mysql_errors_by_code(code: int, kind: type) -> None:
    # PyMySQL raises OperationalError for most codes: the class says nothing.
    exc = pymysql.err.OperationalError(code, "the server's words")
    typed = translate(exc, CREDS)
    assert type(typed) is kind
    assert typed.transient == (kind in (ServiceUnavailableError, ConflictError))


def test_a_refused_mysql_login_names_the_secret() -> None:
    exc = pymysql.err.OperationalError(1045, "Access denied for user 'shoplake'@'localhost'")
    typed = translate(exc, CREDS)
    assert not typed.transient
    assert "`mariadb` at 127.0.0.1:13306 refused the login of `shoplake`" in str(typed)
    assert "`shoplake/mysql`" in typed.hint


def test_an_unknown_column_is_not_an_unreachable_service() -> None:
    typed = typed_error(pymysql.err.OperationalError(1054, "Unknown column 'x' in 'field list'"))
    assert isinstance(typed, QueryError) and not typed.transient
    assert "Unknown column 'x'" in str(typed) and "not reachable" not in str(typed)


REFUSED = ('connection to server at "127.0.0.1", port 15432 failed: FATAL:  password '
           'authentication failed for user "shoplake"\n')
DOWN = ('connection to server at "127.0.0.1", port 15432 failed: Connection refused\n\tIs the '
        'server running on that host and accepting TCP/IP connections?\n')


@pytest.mark.parametrize(("message", "kind"), [
    (REFUSED, LoginRefusedError),
    ('connection to server at "127.0.0.1", port 15432 failed: FATAL:  database "nope" does '
     'not exist\n', LoginRefusedError),
    (DOWN, WarehouseUnavailableError),
    ("connection to server at \"127.0.0.1\", port 15432 failed: timeout expired\n",
     WarehouseUnavailableError),
    ('connection to server at "127.0.0.1", port 15432 failed: FATAL:  the database system is '
     'starting up\n', WarehouseUnavailableError),
    # Compose removes a stopped container's name from DNS: the service may come back.
    ("could not translate host name \"warehouse\" to address: Name or service not known\n",
     WarehouseUnavailableError),
    ("something libpq never said before\n", WarehouseError),
])
def test_postgres_connect_errors_by_libpq_message(message: str, kind: type) -> None:
    typed = from_connect_error(psycopg2.OperationalError(message), "127.0.0.1", 15432,
                               "shoplake", "shoplake/warehouse")
    assert type(typed) is kind
    assert typed.transient == (kind is WarehouseUnavailableError)


def test_a_refused_postgres_login_names_the_secret() -> None:
    typed = from_connect_error(psycopg2.OperationalError(REFUSED), "127.0.0.1", 15432,
                               "shoplake", "shoplake/warehouse")
    assert str(typed).startswith("`postgres` at 127.0.0.1:15432 refused the login of "
                                 "`shoplake`: password authentication failed")
    assert "`shoplake/warehouse`" in typed.hint


def test_a_postgres_error_without_sqlstate_is_transient_only_if_the_connection_broke() -> None:
    lost = psycopg2.OperationalError("server closed the connection unexpectedly\n\tThis "
                                     "probably means the server terminated abnormally\n")
    assert isinstance(from_psycopg(lost, "loading"), WarehouseConflictError)
    other = psycopg2.OperationalError("something else entirely")
    assert not from_psycopg(other, "loading").transient


def test_aws_errors() -> None:
    settings = load_settings(environ={})
    down = typed_error(EndpointConnectionError(endpoint_url="http://127.0.0.1:14566/"), settings)
    assert isinstance(down, ServiceUnavailableError) and down.transient
    assert "LocalStack" in str(down) and "http://127.0.0.1:14566" in str(down)
    slow = typed_error(ReadTimeoutError(endpoint_url="http://127.0.0.1:14566/"), settings)
    assert slow.transient
    missing = ClientError({"Error": {"Code": "NoSuchBucket", "Message": "no bucket"},
                           "ResponseMetadata": {"HTTPStatusCode": 404}}, "ListObjectsV2")
    typed = typed_error(missing, settings)
    assert isinstance(typed, AwsRequestError) and not typed.transient
    assert "ListObjectsV2" in str(typed) and "NoSuchBucket" in str(typed)
    assert "`shoplake stack up`" in typed.hint  # a missing bucket: LocalStack restarted
    busy = ClientError({"Error": {"Code": "SlowDown", "Message": "x"},
                        "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutObject")
    assert typed_error(busy, settings).transient


def test_a_refused_parameter_is_named_as_such_not_as_a_stack_problem() -> None:
    """`runs --limit -1` once said to check the stack; a parameter is the cause."""
    from botocore.exceptions import ParamValidationError

    settings = load_settings(environ={})
    refused = ClientError({"Error": {"Code": "ValidationException",
                                     "Message": "Parameter ScheduleExpression is not valid."},
                           "ResponseMetadata": {"HTTPStatusCode": 400}}, "PutRule")
    typed = typed_error(refused, settings)
    assert "ScheduleExpression is not valid" in str(typed)
    assert "a parameter of PutRule was refused" in typed.hint and "stack" not in typed.hint
    local = typed_error(ParamValidationError(report="Invalid value for maxResults: -1"),
                        settings)
    assert "maxResults" in str(local) and "stack" not in local.hint


def test_anything_else_is_left_unexpected() -> None:
    assert typed_error(KeyError("x")) is None


@pytest.mark.parametrize(("exc", "line"), [
    (KeyError(), "KeyError"),
    (RuntimeError(""), "RuntimeError"),
    (RuntimeError("\n\n  second line\nthird"), "second line"),
    (psycopg2.OperationalError("\nFATAL: x"), "FATAL: x"),
    (LoginRefusedError("mariadb", "h", 1, "u", "s", "denied"),
     "`mariadb` at h:1 refused the login of `u`: denied"),
])
def test_first_line_of_any_error(exc: BaseException, line: str) -> None:
    assert first_line(exc) == line
