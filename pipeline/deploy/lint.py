"""cfn-lint (pinned in the dev extras) on a rendered template: errors and warnings fail.

cfn-lint's exit code is a bit mask (2 errors, 4 warnings, 8 informational); informational
findings are printed but do not fail. It misses some things (design notes section 11: a
`Next` to a missing state, a DefinitionSubstitutions key with no placeholder), so
`check_substitutions` and asl-validator (tests) cover those.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import TerminalError

CFN_LINT_VERSION = "1.58.0"
"""The cfn-lint pyproject.toml pins (its rules change between releases)."""


@dataclass(frozen=True)
class LintResult:
    path: Path
    exit_code: int
    output: str

    @property
    def ok(self) -> bool:
        return self.exit_code in (0, 8)  # nothing, or informational findings only


class TemplateLintError(TerminalError):
    """The rendered template does not pass cfn-lint."""

    def __init__(self, result: LintResult) -> None:
        first = next((ln for ln in result.output.splitlines() if ln.strip()), "")
        super().__init__(f"cfn-lint rejects `{result.path}`: {first}",
                         hint="the template is rendered from pipeline/deploy/template.py: "
                              "fix the renderer (the full report is above)")
        self.result = result


def cfn_lint_command() -> list[str]:
    """cfn-lint of this Python's environment, else one on PATH."""
    here = Path(sys.executable).with_name("cfn-lint")
    if here.exists():
        return [str(here)]
    found = shutil.which("cfn-lint")
    if found:
        return [found]
    raise TerminalError("`cfn-lint` is not installed",
                        hint=f"run `bash scripts/setup.sh` (it installs the dev extras) or "
                             f"`pip install cfn-lint=={CFN_LINT_VERSION}`")


def lint(path: Path) -> LintResult:
    """Run cfn-lint on `path`; never raises on findings (see `LintResult.ok`)."""
    proc = subprocess.run([*cfn_lint_command(), "--format", "parseable", "--", str(path)],
                          capture_output=True, text=True, timeout=300, check=False)
    return LintResult(path, proc.returncode, (proc.stdout + proc.stderr).strip())


def check_substitutions(template: dict[str, Any]) -> list[str]:
    """Each state machine's DefinitionSubstitutions and its `${...}` placeholders agree."""
    problems = []
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::StepFunctions::StateMachine":
            continue
        props = resource["Properties"]
        used = set(re.findall(r"\$\{(\w+)\}", props["DefinitionString"]))
        given = set(props.get("DefinitionSubstitutions", {}))
        if used - given:
            problems.append(f"{name}: no substitution for {', '.join(sorted(used - given))}")
        if given - used:
            problems.append(f"{name}: substitution(s) {', '.join(sorted(given - used))} "
                            "not used in the definition")
    return problems
