"""`shoplake seed` and `shoplake simulate`: fill the OLTP source, then keep it busy."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import click

from pipeline.cli.common import OUT, CliContext, FiniteFloat, pass_cli, progress_for
from pipeline.source import MAX_SCALE


class ScaleType(click.ParamType):
    """A seed scale: a number above 0 and at most MAX_SCALE, or a named size of the profile
    (seed/profiles/*.toml `[scales]`), which the command resolves once settings are known."""

    name = "scale"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        try:
            float(value)
        except ValueError:
            return str(value)  # a name: checked against the profile by the command
        return FiniteFloat(min=0, max=MAX_SCALE, min_open=True).convert(value, param, ctx)


@click.command("seed")
@click.option("--scale", type=ScaleType(), default=1.0, metavar="N|NAME",
              show_default=True, help=f"Size factor: 1 = 10k customers, 100k orders (at most "
                                      f"{MAX_SCALE}), or a named size of the seed profile "
                                      "(default profile: tiny, demo, dev, large).")
@click.option("--seed", "seed_value", type=int, default=42, show_default=True,
              help="Random seed: the same seed loads the same rows.")
@click.option("--reset", is_flag=True, help="Drop and recreate the tables when they hold rows.")
@click.option("--anchor", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Day the order history ends (UTC midnight) [default: today].")
@pass_cli
def seed_cmd(ctx: CliContext, scale: float | str, seed_value: int, reset: bool,
             anchor: datetime | None) -> int:
    """Create the `shop` tables and load generated customers, products and orders."""
    from pipeline.source.load import seed
    from pipeline.source.profile import load_profile

    if isinstance(scale, str):
        profile = load_profile(ctx.settings)
        if scale not in profile.scales:
            raise click.BadParameter(
                f"`{scale}` is neither a number nor a named size of the seed profile "
                f"`{profile.name}` ({', '.join(sorted(profile.scales))})",
                param_hint="'--scale'")
        scale = FiniteFloat(min=0, max=MAX_SCALE, min_open=True).convert(
            profile.scales[scale], None, None)
    began = time.monotonic()
    with progress_for(ctx) as progress:
        counts = seed(ctx.settings, scale=scale, seed=seed_value, reset=reset,
                      progress=progress, anchor=anchor)
    for table, rows in counts.items():
        OUT.print(f"{table:<12} {rows:>9,} rows")
    OUT.print(f"[green]seeded[/green] `{ctx.settings.mysql.database}` in "
              f"{time.monotonic() - began:.1f}s")
    return 0


@click.command("simulate")
@click.option("--rate", type=FiniteFloat(min=0, min_open=True), default=5.0,
              show_default=True, help="Transactions per second.")
@click.option("--duration", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Seconds to run [default: until Ctrl-C].")
@click.option("--seed", "seed_value", type=int, default=None,
              help="Random seed for the sequence of choices.")
@pass_cli
def simulate_cmd(ctx: CliContext, rate: float, duration: float | None,
                 seed_value: int | None) -> int:
    """Run live transactions against the source (the Lambda stand-in) until stopped."""
    import signal
    import threading

    from pipeline.source.simulate import simulate

    began = time.monotonic()
    stop = threading.Event()
    # `docker stop` / `kill` end the run like Ctrl-C does: counts are still printed.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with progress_for(ctx) as progress:
        counts = simulate(ctx.settings, rate=rate, duration=duration, seed=seed_value,
                          progress=progress, stop_event=stop)
    for kind, n in sorted(counts.items(), key=lambda item: -item[1]):
        OUT.print(f"{kind:<16} {n:>7,}")
    OUT.print(f"[green]{sum(counts.values()):,} transactions[/green] in "
              f"{time.monotonic() - began:.1f}s")
    return 0
