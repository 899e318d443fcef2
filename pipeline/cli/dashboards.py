"""`shoplake dashboard build | serve | check`: the QuickSight stand-in."""

from __future__ import annotations

import json
from datetime import date

import click

from pipeline.cli.common import ERR, OUT, CliContext, pass_cli, progress_for
from pipeline.errors import TerminalError


@click.group("dashboard")
def dashboard_group() -> None:
    """Dashboards as code on gold (dashboards/*.yaml): static HTML files, or live."""


def _load(ctx: CliContext):  # noqa: ANN202 - (dashboards, broken files)
    from pipeline.dashboards import definitions_dir
    from pipeline.dashboards.spec import load_all

    dashboards, broken = load_all(definitions_dir(ctx.settings))
    for b in broken:
        ERR.print(f"[red]broken:[/red] {b}")
    return dashboards, broken


def _day(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise click.BadParameter(f"`{value}` is not a day (YYYY-MM-DD)") from exc


@dashboard_group.command("build")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None,
              help="Folder for the HTML files [default: <state_dir>/dashboards].")
@click.option("--from", "start", default=None, metavar="YYYY-MM-DD",
              help="First order day the files show [default: all].")
@click.option("--to", "end", default=None, metavar="YYYY-MM-DD",
              help="Last order day the files show [default: all].")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
@pass_cli
def build_cmd(ctx: CliContext, out: str | None, start: str | None, end: str | None,
              fmt: str) -> int:
    """Write one self-contained HTML file per dashboard (opens offline, from disk); exit 1
    if a dashboard file or panel is broken (the rest is still written)."""
    from pathlib import Path

    from pipeline.dashboards import out_dir
    from pipeline.dashboards.data import Reader
    from pipeline.dashboards.static import build

    first, last = _day(start), _day(end)
    if first and last and first > last:
        raise click.BadParameter(f"--from {first} is after --to {last}")
    dashboards, broken = _load(ctx)
    reader = Reader(ctx.settings)
    folder = Path(out) if out else out_dir(ctx.settings)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".shoplake-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise TerminalError(f"cannot write the dashboards to `{folder}`: "
                            f"{exc.strerror or exc}", hint="pick another folder with --out"
                            ) from exc
    try:
        reader.ping()  # an unreachable warehouse is one error, not a page of error boxes
        with progress_for(ctx) as progress:
            built = build(dashboards, reader, folder, (first, last), progress)
    finally:
        reader.close()
    problems = [p for b in built for p in b.problems]
    if fmt == "json":
        click.echo(json.dumps([{"dashboard": b.dashboard.id, "file": str(b.path),
                                "bytes": b.bytes, "problems": b.problems} for b in built]
                              + [{"file": str(e.path), "problems": [str(e)]} for e in broken],
                              indent=2))
    else:
        for p in problems:
            ERR.print(f"[red]broken panel:[/red] {p}")
        if problems:
            ERR.print("  -> fix it in the file (it is drawn as an error box meanwhile); "
                      "`shoplake dashboard check` runs every panel again")
        for b in built:
            OUT.print(f"{b.dashboard.title}: {b.path} ({b.bytes / 1e6:.1f} MB)")
        _print_live(ctx, [b.dashboard for b in built])
    return 1 if problems or broken else 0


def _print_live(ctx: CliContext, dashboards: list) -> None:  # noqa: ANN001 - Dashboard
    """Where the live dashboards answer, when the server runs."""
    import urllib.request

    from pipeline.dashboards import public_url

    url = public_url(ctx.settings)
    shown = 0
    for d in dashboards:  # only those the server serves (it may run other files)
        try:
            with urllib.request.urlopen(f"{url}/{d.id}/", timeout=3) as resp:
                if resp.status == 200:
                    OUT.print(f"{d.title}, live: {url}/{d.id}/")
                    shown += 1
        except OSError:
            pass
    if not shown:
        OUT.print(f"the live dashboards are not served at {url} (`shoplake stack up` "
                  "serves them)")


@dashboard_group.command("check")
@pass_cli
def check_cmd(ctx: CliContext) -> int:
    """Run every panel's query once and report broken files and panels (exit 1)."""
    from pipeline.dashboards.data import Reader

    dashboards, broken = _load(ctx)
    reader = Reader(ctx.settings)
    bad = len(broken)
    try:
        reader.ping()
        for d in dashboards:
            for f in d.filters:
                if f.type == "select":
                    _, error = reader.options(f)
                    if error:
                        bad += 1
                        ERR.print(f"[red]broken filter:[/red] {d.path}, {error}")
            for r in reader.run_all(d, {}):
                if r.error:
                    bad += 1
                    ERR.print(f"[red]broken panel:[/red] {d.path}, panel `{r.panel.id}`: "
                              f"{r.error}")
                else:
                    OUT.print(f"{d.id}/{r.panel.id}: {len(r.rows)} row(s) in "
                              f"{r.seconds * 1000:.0f} ms")
    finally:
        reader.close()
    return 1 if bad else 0


@dashboard_group.command("serve")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port to serve on [default: dashboards.port].")
@click.option("--host", default=None, help="Address to bind [default: dashboards.host].")
@pass_cli
def serve_cmd(ctx: CliContext, port: int | None, host: str | None) -> int:
    """Serve the dashboards live from the warehouse until Ctrl-C (filters run SQL)."""
    from pipeline.dashboards import public_url
    from pipeline.dashboards.live import serve
    from pipeline.errors import PortInUseError
    from pipeline.stack.process import port_in_use

    dashboards, broken = _load(ctx)
    s = ctx.settings.dashboards
    host, port = host or s.host, port or s.port
    if port_in_use(host if host not in ("0.0.0.0", "") else "127.0.0.1", port):
        raise PortInUseError(f"port {port} of the dashboards is taken (`shoplake stack up` "
                             "serves them already?)", service="dashboards", port=port,
                             hint="open the running server, or pick another with --port")
    url = public_url(ctx.settings) if port == s.port else f"http://127.0.0.1:{port}"
    for d in dashboards:
        OUT.print(f"{d.title}: {url}/{d.id}/")
    serve(ctx.settings, dashboards, broken, host, port)
    return 0
