"""`shoplake stack ...` and `shoplake provision`."""

from __future__ import annotations

import time

import click

from pipeline import stack
from pipeline.cli.common import (
    OUT,
    CliContext,
    format_option,
    human_seconds,
    pass_cli,
    print_rows,
    progress_for,
)
from pipeline.errors import ConfigError
from pipeline.stack.credentials import ensure_credentials


@click.group("stack")
def stack_group() -> None:
    """Start, stop and inspect MariaDB, PostgreSQL and LocalStack."""


@stack_group.command("up")
@pass_cli
def up_cmd(ctx: CliContext) -> int:
    """Start every service that is not running, wait until healthy, provision (idempotent)."""
    began = time.monotonic()
    with progress_for(ctx) as progress:
        if ctx.settings.mode == "compose":
            from pipeline.stack.compose import wait_healthy

            wait_healthy(ctx.settings, progress)
            stack.provision_stack(ctx.settings, progress)
            results = []
        else:
            results = stack.up(ctx.settings, progress)
    for r in results:
        OUT.print(f"{r.service:<11} {r.action:<16} pid {r.pid:<8} port {r.port or '-'}")
    OUT.print(f"[green]stack ready[/green] in {time.monotonic() - began:.1f}s "
              f"(state: {ctx.settings.state_dir})")
    _warn_schedule(ctx)
    return 0


def _warn_schedule(ctx: CliContext) -> None:
    """A saved schedule `stack up` could not apply, named with what to do."""
    from rich.markup import escape

    from pipeline.orchestration import schedule

    why = schedule.problem(ctx.settings)
    if why:
        OUT.print(f"[yellow]Warning[/yellow]: no schedule is active: {escape(why)}\n  -> set "
                  "another with `shoplake schedule set EXPRESSION`, or `shoplake schedule off`",
                  highlight=False)


@stack_group.command("down")
@click.option("--purge", is_flag=True, help="Also delete data, logs and generated passwords.")
@pass_cli
def down_cmd(ctx: CliContext, purge: bool) -> int:
    """Stop every service shoplake started (SIGTERM, then SIGKILL)."""
    _native_only(ctx, "down")
    with progress_for(ctx) as progress:
        results = stack.down(ctx.settings, purge=purge, progress=progress)
    stopped = [name for name, was_running in results if was_running]
    OUT.print(f"stopped: {', '.join(stopped) or 'nothing was running'}"
              + (" (data purged)" if purge else ""))
    return 0


@stack_group.command("status")
@format_option
@pass_cli
def status_cmd(ctx: CliContext, fmt: str) -> int:
    """Service, pid, port, health and uptime; exits 1 when a service is not healthy."""
    if ctx.settings.mode == "compose":
        from pipeline.stack.compose import compose_status

        rows = compose_status(ctx.settings)
    else:
        rows = stack.status(ctx.settings)
    data = [r.as_dict() | {"uptime": human_seconds(r.uptime_s)} for r in rows]
    if fmt == "table":
        for row in data:
            row["healthy"] = "[green]yes[/green]" if row["healthy"] else "[red]no[/red]"
            row["pid"] = row["pid"] or "-"
            row["port"] = row["port"] or "-"
    print_rows(data, ["service", "pid", "port", "healthy", "uptime", "state"], fmt)
    if fmt == "table" and ctx.settings.mode == "native":
        from pipeline.stack.lake import size_line

        click.echo(size_line(ctx.settings))
    return 0 if rows and all(r.healthy for r in rows) else 1


@stack_group.command("logs")
@click.argument("service", required=False)
@click.option("-n", "--lines", type=click.IntRange(min=1), default=40, show_default=True,
              help="How many lines to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@pass_cli
def logs_cmd(ctx: CliContext, service: str | None, lines: int, follow: bool) -> int:
    """Show the log of SERVICE (mariadb, postgres, localstack, worker-N), or the end of each."""
    _native_only(ctx, "logs",
                 f"`docker compose logs {service}`" if service else "`docker compose logs`")
    if service is None:
        if follow:
            raise ConfigError("`--follow` needs a SERVICE", hint="e.g. `shoplake stack logs "
                              "mariadb -f`")
        for svc in stack.manager.all_services(ctx.settings):
            proc = stack.manager.process_of(ctx.settings, svc)
            click.echo(f"==> {svc.name} ({proc.log_file}) <==")
            click.echo(proc.tail(lines) or "(no log yet)")
        return 0
    svc = stack.service_named(ctx.settings, service)
    proc = stack.manager.process_of(ctx.settings, svc)
    click.echo(proc.tail(lines))
    if follow:
        with open(proc.log_file, "rb") as fh:
            fh.seek(0, 2)
            while True:
                chunk = fh.read()
                if chunk:
                    click.echo(chunk.decode(errors="replace"), nl=False)
                else:
                    time.sleep(0.3)
    return 0


@stack_group.command("init")
@pass_cli
def init_cmd(ctx: CliContext) -> int:
    """Create the state folder and generate the database passwords (idempotent)."""
    ensure_credentials(ctx.settings)
    OUT.print(f"credentials ready in {ctx.settings.state_dir / 'credentials'}")
    return 0


@click.command("provision")
@pass_cli
def provision_cmd(ctx: CliContext) -> int:
    """Create the buckets and the database secrets on LocalStack (idempotent)."""
    with progress_for(ctx) as progress:
        done = stack.provision_stack(ctx.settings, progress)
    for item in done:
        OUT.print(f"{item.kind:<7} {item.name:<24} {item.action}")
    _warn_schedule(ctx)
    return 0


def _native_only(ctx: CliContext, command: str, instead: str = "`docker compose down`") -> None:
    if ctx.settings.mode == "compose":
        raise ConfigError(f"`stack {command}` manages native processes; in compose mode use "
                          f"{instead}", key="stack.mode")
