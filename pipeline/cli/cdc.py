"""`shoplake cdc [--once]`, `cdc status`, `cdc reset`: the DMS stand-in."""

from __future__ import annotations

import signal
import threading

import click

from pipeline import cdc
from pipeline.cli.common import (
    OUT,
    CliContext,
    format_option,
    pass_cli,
    print_rows,
    progress_for,
    wait_option,
)


@click.group("cdc", invoke_without_command=True)
@click.option("--once", is_flag=True, help="Drain what is committed now, then exit.")
@click.pass_context
def cdc_group(click_ctx: click.Context, once: bool) -> int | None:
    """Replicate the source's binlog into S3 bronze in DMS format (full load first)."""
    if click_ctx.invoked_subcommand is not None:
        return None
    ctx: CliContext = click_ctx.obj
    stop = threading.Event()
    # SIGTERM (docker stop, `kill`) ends the run cleanly: the open batch is written and
    # checkpointed; SIGINT likewise.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with progress_for(ctx) as progress:
        report = cdc.run(ctx.settings, once=once, progress=progress, stop=stop)
    if report.full_load:
        total = sum(report.full_load_rows.values())
        OUT.print(f"full load: {total} rows from {len(report.full_load_rows)} tables")
    if report.waited_for_follower:
        OUT.print(f"cdc: the running follower has replicated everything committed; "
                  f"checkpoint at {report.position} ({report.seconds:.1f}s)")
        return 0
    OUT.print(f"cdc: {report.changes} changes in {report.files} files, checkpoint at "
              f"{report.position} ({report.seconds:.1f}s)")
    return 0


@cdc_group.command("status")
@format_option
@pass_cli
def status_cmd(ctx: CliContext, fmt: str) -> int:
    """Checkpoint, lag (bytes, seconds) and rows written per table."""
    st = cdc.cdc_status(ctx.settings)
    if st is None:
        OUT.print("the CDC service has not run yet (no checkpoint): run `shoplake cdc --once`")
        return 1
    if fmt == "json":
        import json

        click.echo(json.dumps(st.as_dict(), indent=2))
        return 0
    OUT.print(f"checkpoint {st.checkpoint}   source at {st.source_position}   "
              f"lag {st.lag_bytes} bytes / {st.lag_seconds}s   "
              f"last commit {st.last_commit_ts or '-'}")
    rows = [{"table": t, "full load": ops.get("L", 0), "inserts": ops.get("I", 0),
             "updates": ops.get("U", 0), "deletes": ops.get("D", 0)}
            for t, ops in sorted(st.rows.items())]
    print_rows(rows, ["table", "full load", "inserts", "updates", "deletes"], fmt)
    return 0


@cdc_group.command("reset")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@wait_option
@pass_cli
def reset_cmd(ctx: CliContext, yes: bool, wait_s: float | None) -> int:
    """Delete the checkpoint and bronze files so the next run starts with a full load."""
    from pipeline.orchestration.lease import run_lease

    if not yes and not click.confirm("Delete bronze and the checkpoint (the next run "
                                     "re-loads)?", default=False):
        OUT.print("nothing was deleted")
        return 1
    with run_lease(ctx.settings, "shoplake cdc reset", wait_s):  # not under a run
        removed = cdc.reset(ctx.settings)
    OUT.print(f"removed {removed} bronze file(s) and the checkpoint")
    return 0
