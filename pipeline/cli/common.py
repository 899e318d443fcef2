"""What every command shares: the context (settings built once), output, progress choice."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from pipeline.config import Settings
from pipeline.progress import LogProgress, Progress, RichProgress, SilentProgress

# soft_wrap: long lines are left whole (a terminal wraps them itself; a pipe or a log file
# gets one line per message, not lines cut at 80 columns).
# Through a pipe there is no width to fit: tables get room instead of 80 wrapped columns.
PIPE_WIDTH = 200
OUT = Console(soft_wrap=True, width=None if sys.stdout.isatty() else PIPE_WIDTH)
ERR = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else PIPE_WIDTH)

class FiniteFloat(click.FloatRange):
    """A float range that also refuses `inf` and `nan` (which every comparison lets by)."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        import math

        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


wait_option = click.option(
    "--wait", "wait_s", type=FiniteFloat(min=0), default=None, metavar="SECONDS",
    help="If another run holds the run lease, wait this long for it "
         "[default: orchestration.run_lock_wait_s, 0: refuse at once].")

format_option = click.option("--format", "fmt", type=click.Choice(["table", "json"]),
                             default="table", show_default=True, help="Output format.")


@dataclass
class CliContext:
    settings: Settings
    debug: bool = False
    quiet: bool = False


pass_cli = click.make_pass_decorator(CliContext)


@contextlib.contextmanager
def progress_for(ctx: CliContext) -> Iterator[Progress]:
    """Live bars on a terminal, plain lines otherwise (CI, pipes), nothing with --quiet."""
    if ctx.quiet:
        yield SilentProgress()
    elif sys.stderr.isatty():
        with RichProgress() as progress:
            yield progress
    else:
        yield LogProgress(sys.stderr)


def print_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str,
               title: str | None = None) -> None:
    if fmt == "json":
        click.echo(json.dumps(list(rows), indent=2, default=str))
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    OUT.print(table)


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
