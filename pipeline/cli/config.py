"""`shoplake config show`."""

from __future__ import annotations

import click

from pipeline.cli.common import CliContext, format_option, pass_cli, print_rows


@click.group("config")
def config_group() -> None:
    """Inspect the resolved configuration."""


@config_group.command("show")
@format_option
@pass_cli
def show_cmd(ctx: CliContext, fmt: str) -> int:
    """Every setting, its value, and where the value came from (secrets masked)."""
    rows = [{"key": k, "value": v, "source": s, "doc": d} for k, v, s, d in ctx.settings.describe()]
    print_rows(rows, ["key", "value", "source"] + (["doc"] if fmt == "json" else []), fmt,
               title=f"shoplake settings (mode: {ctx.settings.mode})")
    return 0
