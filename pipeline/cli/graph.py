"""A run's graph on the console: live rows on a terminal, one line per change in a pipe."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from pipeline.orchestration import history

ICONS = {history.PENDING: "[dim]·[/dim]", history.RUNNING: "[blue]▶[/blue]",
         history.SUCCEEDED: "[green]✓[/green]", history.FAILED: "[red]✗[/red]",
         history.RETRIED: "[yellow]↻[/yellow]", history.CAUGHT: "[magenta]✗[/magenta]",
         history.SKIPPED: "[dim]-[/dim]"}
HIDDEN_TYPES = ("Pass", "Choice", "Wait")
"""Plumbing states, shown only when something happened in them."""


def visible(node: history.Node) -> bool:
    if node.name.startswith("Catch") or node.name.endswith(("Done", "Loaded", "Failed")):
        return node.status not in (history.PENDING, history.SUCCEEDED)
    if node.type in HIDDEN_TYPES:
        return node.status not in (history.PENDING, history.SUCCEEDED)
    if node.name in ("NotifyFailure", "WriteFailureReport", "RunFailed", "AlreadyRunning"):
        return node.status != history.PENDING
    return True


def table(run: history.Run) -> Table:
    t = Table(title=f"run {escape(run.name)}: {run.status.lower()}", title_justify="left",
              expand=False, show_edge=False, pad_edge=False)
    for column in ("", "state", "attempts", "time", "result"):
        t.add_column(column, no_wrap=column != "result", overflow="ellipsis")
    for node in run.nodes:
        if not visible(node):
            continue
        seconds = "" if node.seconds is None else f"{node.seconds:.1f}s"
        attempts = str(node.attempts) if node.attempts > 1 else ""
        t.add_row(ICONS.get(node.status, "?"), "  " * node.depth + escape(node.path.split("/")[-1]),
                  attempts, seconds, escape(node.summary))
    return t


class GraphView:
    """Shows a run as it goes: `update(run)` after each poll of its history."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.tty = self.console.is_terminal
        self._live: Live | None = None
        self._seen: dict[str, tuple[str, int]] = {}

    def __enter__(self) -> GraphView:
        if self.tty:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.stop()

    def note(self, text: str) -> None:
        """A line about the run that is not a state (its workers died, came back)."""
        from rich.markup import escape

        if self._live is not None:
            self._live.console.print(f"[yellow]Warning[/yellow]: {escape(text)}",
                                     highlight=False)
        else:
            print(f"[run] warning: {text}", file=sys.stderr, flush=True)

    def update(self, run: history.Run) -> None:
        if self._live is not None:
            self._live.update(table(run))
            return
        for node in run.nodes:  # a pipe: one line whenever a state changes
            state = (node.status, node.attempts)
            if self._seen.get(node.path) == state or not visible(node):
                continue
            self._seen[node.path] = state
            if node.status == history.PENDING:
                continue
            took = "" if node.seconds is None or node.status == history.RUNNING \
                else f" in {node.seconds:.1f}s"
            tries = f" (attempt {node.attempts})" if node.attempts > 1 else ""
            said = f": {node.summary}" if node.summary and node.status != history.RUNNING \
                else ""
            print(f"[{node.path}] {node.status}{tries}{took}{said}", file=sys.stderr,
                  flush=True)
