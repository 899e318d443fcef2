"""The catalog endpoint down: a transient error that names it, not a botocore trace."""

from __future__ import annotations

import socket

import pytest

from pipeline.catalog.store import find_table, put_table
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
