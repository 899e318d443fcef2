from __future__ import annotations

import io

import pytest

from pipeline.errors import (
    ConfigError,
    MissingBinaryError,
    ServiceStartError,
    ServiceUnavailableError,
    ShoplakeError,
    TerminalError,
    TransientError,
)
from pipeline.progress import LogProgress
from pipeline.stack.service import find_binary

pytestmark = pytest.mark.unit


def test_errors_are_terminal_or_transient_by_type() -> None:
    assert not ConfigError("x").transient
    assert ServiceUnavailableError("x", service="mariadb").transient
    assert isinstance(ServiceStartError("x", service="s"), TerminalError)
    assert isinstance(ServiceUnavailableError("x", service="s"), TransientError)
    assert all(issubclass(c, ShoplakeError) for c in (ConfigError, MissingBinaryError))


def test_service_error_shows_log_file_and_tail_and_what_to_do() -> None:
    err = ServiceStartError("`mariadb` exited", service="mariadb", port=13306,
                            log_file="/s/logs/mariadb.log", log_tail="line one\nline two")
    text = str(err)
    assert "/s/logs/mariadb.log" in text
    assert "| line two" in text
    assert "shoplake stack logs mariadb" in text


def test_missing_binary_names_the_package() -> None:
    with pytest.raises(MissingBinaryError) as err:
        find_binary("no-such-binary-shoplake", "mariadb-server", "mariadb", ["/nonexistent"])
    assert "apt-get install mariadb-server" in str(err.value)
    assert err.value.service == "mariadb"


def test_log_progress_prints_plain_lines_with_timings() -> None:
    out = io.StringIO()
    p = LogProgress(out)
    p.start("mariadb", "starting mariadb")
    p.update("mariadb", description="initialising")
    p.finish("mariadb", message="started")
    p.start("postgres", "starting postgres")
    p.finish("postgres", ok=False, message="exited 1")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[mariadb] starting mariadb"
    assert lines[1] == "[mariadb] initialising"
    assert lines[2].startswith("[mariadb] done in ") and lines[2].endswith(": started")
    assert lines[4].startswith("[postgres] FAILED in ")
