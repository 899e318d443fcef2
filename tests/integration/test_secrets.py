"""Secrets are never printed: not by --debug (botocore dumps response bodies there), not in
any log file of the stack, not on a command line."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from pipeline.config import Settings
from pipeline.stack import credentials

pytestmark = pytest.mark.integration


def test_debug_output_and_logs_never_show_a_password(stack_settings: Settings,
                                                      cli_env: dict[str, str]) -> None:
    folder = credentials.credentials_dir(stack_settings)
    passwords = {name: (folder / name).read_text().strip() for name in credentials.ALL}
    said = []
    for args in (("provision",), ("reconcile",), ("cdc", "status"), ("crawl",),
                 ("warehouse", "init")):
        done = subprocess.run([sys.executable, "-m", "pipeline.cli.main", "--debug", *args],
                              env=cli_env, capture_output=True, text=True, timeout=300)
        said.append(done.stdout + done.stderr)
    output = "\n".join(said)
    # The debug output really carries what would leak: the secrets' request and response
    # bodies (so this test fails if redaction stops working, not only if logging does).
    assert "GetSecretValue" in output and "SecretString" in output, output[-3000:]
    logs = "\n".join(p.read_text(errors="replace")
                     for p in (stack_settings.state_dir / "logs").glob("*.log"))
    for name, value in passwords.items():
        assert value not in output, f"the {name} shows in --debug output"
        assert value not in logs, f"the {name} shows in a log file"
    assert re.search(r'password\\*": \\*"\*\*\*\*', output), "a redacted password field"
