"""The README's two commands and CI stay in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def _readme_commands(repo_root: Path) -> list[str]:
    text = (repo_root / "README.md").read_text()
    top = text.split("\n## ", 1)[0]
    return re.findall(r"```(?:bash|sh)\n(.+?)\n```", top, flags=re.S)


def test_readme_top_shows_the_demo_and_the_test_command(repo_root: Path) -> None:
    commands = _readme_commands(repo_root)
    assert commands == ["bash scripts/demo.sh",
                        "bash scripts/setup.sh && .venv/bin/python -m pytest"]


def test_ci_runs_exactly_the_readme_test_command(repo_root: Path) -> None:
    test_command = _readme_commands(repo_root)[1]
    ci_lines = (repo_root / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines
    assert "exit 5" not in ci_lines and any('"$rc" -eq 5' in line for line in ci_lines)


def test_generated_state_is_ignored(repo_root: Path) -> None:
    ignored = (repo_root / ".gitignore").read_text().splitlines()
    for entry in (".shoplake/", ".venv/"):
        assert entry in ignored
