"""How `stack up` fails: which service, its log file and last lines, what to do next.

Real processes that fail on purpose (no databases needed).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.errors import ServiceStartError, TerminalError
from pipeline.progress import SilentProgress
from pipeline.stack.localstack import LocalStackService
from pipeline.stack.manager import _up_one

pytestmark = pytest.mark.unit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(tmp_path: Path, python: str):
    return load_settings(environ={}, stack__state_dir=str(tmp_path),
                         localstack__python=python, localstack__port=_free_port(),
                         stack__startup_timeout=10)


def test_a_service_that_exits_while_starting_names_its_log_and_last_lines(
        tmp_path: Path) -> None:
    script = tmp_path / "fake-python"
    script.write_text("#!/bin/sh\necho 'booting the emulator'\n"
                      "echo 'fatal: port plumbing failed' >&2\nexit 3\n")
    script.chmod(0o755)
    settings = _settings(tmp_path, str(script))
    with pytest.raises(ServiceStartError) as err:
        _up_one(settings, LocalStackService(settings), SilentProgress())
    text = str(err.value)
    assert "`localstack` exited with code 3 while starting" in text
    assert str(tmp_path / "logs" / "localstack.log") in text
    assert "| fatal: port plumbing failed" in text
    assert "shoplake stack logs localstack" in text


def test_a_missing_localstack_venv_says_how_to_install_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path, str(tmp_path / "nowhere" / "python"))
    with pytest.raises(TerminalError, match="scripts/setup.sh"):
        LocalStackService(settings).check_installed()
