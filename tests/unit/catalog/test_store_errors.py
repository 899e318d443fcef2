"""The catalog endpoint down: a transient error that names it, not a botocore trace."""

from __future__ import annotations

import socket

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
)

from pipeline.catalog.store import find_table, put_table, unavailable
from pipeline.config import load_settings
from pipeline.errors import ServiceUnavailableError, TransientError

pytestmark = pytest.mark.unit


def test_a_catalog_endpoint_that_is_down_is_a_transient_error_naming_it() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    settings = load_settings(environ={"SHOPLAKE_GLUE_PORT": str(port)})
    for call in (lambda: find_table(settings, "orders"),
                 lambda: put_table(settings, {"Name": "orders", "StorageDescriptor": {}})):
        with pytest.raises(ServiceUnavailableError) as caught:
            call()
        assert isinstance(caught.value, TransientError)
        assert f"the Glue Data Catalog at http://127.0.0.1:{port} is not reachable" in str(
            caught.value)
        assert "shoplake stack up" in caught.value.hint


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "slow down"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "GetTable")


@pytest.mark.parametrize(("exc", "said"), [
    (ReadTimeoutError(endpoint_url="http://127.0.0.1:14570/"), "did not answer"),
    (ConnectTimeoutError(endpoint_url="http://127.0.0.1:14570/"), "did not answer"),
    (ConnectionClosedError(endpoint_url="http://127.0.0.1:14570/"), "did not answer"),
    (_client_error("ThrottlingException", 400), "is busy (reading x): ThrottlingException"),
    (_client_error("InternalServiceException", 500), "is busy"),
    (_client_error("SomethingNew", 503), "is busy (reading x): SomethingNew"),
])
def test_timeouts_throttling_and_5xx_are_transient(exc, said) -> None:
    settings = load_settings(environ={})
    error = unavailable(settings, "reading x", exc)
    assert isinstance(error, TransientError) and said in str(error), error
    assert "the Glue Data Catalog at http://127.0.0.1:" in str(error) and error.hint


@pytest.mark.parametrize("code", ["EntityNotFoundException", "InvalidInputException",
                                  "AccessDeniedException"])
def test_a_wrong_request_is_not_called_transient(code) -> None:
    assert unavailable(load_settings(environ={}), "x", _client_error(code, 400)) is None
