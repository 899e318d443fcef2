"""`shoplake worker`, `statemachine render`, `runs`, `schedule`: Step Functions and EventBridge."""

from __future__ import annotations

import json
import signal

import click
from rich.markup import escape

from pipeline.cli.common import OUT, CliContext, format_option, pass_cli, print_rows
from pipeline.errors import TerminalError


@click.command("worker")
@click.option("--name", default=None, help="Worker name (shown in Step Functions).")
@pass_cli
def worker_cmd(ctx: CliContext, name: str | None) -> int:
    """Serve the state machine's activities until SIGTERM (finishes running tasks first)."""
    import logging

    from pipeline.orchestration.worker import Worker

    # A worker is a service: what it does goes to its log (`shoplake stack logs worker-1`).
    logging.getLogger("pipeline").setLevel(logging.DEBUG if ctx.debug else logging.INFO)
    worker = Worker(ctx.settings, name)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stopping.set())
    worker.serve()
    OUT.print(f"{worker.name} stopped after {worker.served} task(s)")
    return 0


@click.group("statemachine")
def statemachine_group() -> None:
    """The Amazon States Language definition of a pipeline run."""


@statemachine_group.command("render")
@click.option("--target", type=click.Choice(["aws", "local"]), default="local",
              show_default=True, help="`aws`: the real integrations; `local`: activities.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Write to this file instead of standard output.")
@pass_cli
def render_cmd(ctx: CliContext, target: str, out: str | None) -> int:
    """Print the state machine definition for TARGET."""
    from pipeline.orchestration import asl

    definition = asl.render(ctx.settings, target)
    problems = asl.problems(definition)
    if problems:
        raise TerminalError(f"the rendered state machine is broken: {'; '.join(problems)}")
    text = json.dumps(definition, indent=2)
    if out:
        with open(out, "w") as fh:
            fh.write(text + "\n")
        OUT.print(f"wrote {out} ({target} binding, {len(definition['States'])} states)")
    else:
        click.echo(text)
    return 0


@click.group("runs", invoke_without_command=True)
@click.option("-n", "--limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="How many runs to list (1 to 1000, as Step Functions lists them).")
@format_option
@click.pass_context
def runs_group(click_ctx: click.Context, limit: int, fmt: str) -> int | None:
    """Recent runs: id, status, trigger (manual, schedule, arrival), start, duration."""
    if click_ctx.invoked_subcommand is not None:
        return None
    from pipeline.orchestration.runs import recent_runs

    ctx: CliContext = click_ctx.obj
    rows = recent_runs(ctx.settings, limit)
    if not rows and fmt == "table":
        OUT.print("no runs yet: start one with `shoplake run`")
        return 0
    print_rows(rows, ["run", "status", "trigger", "started", "seconds"], fmt)
    return 0


@runs_group.command("show")
@click.argument("run_id")
@format_option
@pass_cli
def show_cmd(ctx: CliContext, run_id: str, fmt: str) -> int:
    """One run: the failed state and its cause first, then every state; its report."""
    from pipeline.cli.graph import table
    from pipeline.orchestration.report import write_report
    from pipeline.orchestration.runs import execution_arn

    arn = execution_arn(ctx.settings, run_id)
    run = _load(ctx, arn)
    path = write_report(ctx.settings, arn)
    failed = run.failed_node()
    if fmt == "json":
        click.echo(json.dumps({
            "run": run.name, "status": run.status, "trigger": run.trigger,
            "seconds": run.seconds, "report": str(path),
            "failed_state": failed.path if failed else None,
            "error": failed.error if failed else run.error,
            "cause": cause_of(ctx, failed) if failed else run.cause,
            "warnings": [{"state": p, "warning": w} for p, w in run.warnings()],
            "states": [{"state": n.path, "status": n.status, "attempts": n.attempts,
                        "seconds": n.seconds, "result": n.output, "error": n.error}
                       for n in run.nodes if n.status != "pending"]}, indent=2, default=str))
        return 0 if run.status == "SUCCEEDED" else 1
    if failed is not None:
        OUT.print(f"[red]failed in {escape(failed.path)}[/red]: {escape(failed.error)}",
                  highlight=False)
        if cause_of(ctx, failed):
            OUT.print(f"  cause: {escape(cause_of(ctx, failed))}", highlight=False)
    OUT.print(table(run))
    print_warnings(run)
    OUT.print(f"report: {path}")
    return 0 if run.status in ("SUCCEEDED", "RUNNING") else 1


def _load(ctx: CliContext, arn: str):  # noqa: ANN202 - history.Run
    from botocore.exceptions import ClientError

    from pipeline.orchestration.report import load_run

    try:
        return load_run(ctx.settings, arn)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("ExecutionDoesNotExist",
                                             "ResourceNotFoundException"):
            raise TerminalError(f"no run `{arn.rsplit(':', 1)[-1]}`",
                                hint="`shoplake runs` lists the recent ones") from exc
        raise


@click.group("schedule", invoke_without_command=True)
@click.pass_context
def schedule_group(click_ctx: click.Context) -> int | None:
    """When runs start: `set EXPRESSION`, `off`, `show` (an EventBridge rule)."""
    if click_ctx.invoked_subcommand is None:
        click_ctx.invoke(show_schedule_cmd)
    return None


@schedule_group.command("set")
@click.argument("expression")
@pass_cli
def set_schedule_cmd(ctx: CliContext, expression: str) -> int:
    """`rate(5 minutes)`, `cron(0 3 * * ? *)`, or `on-arrival` (a CDC file starts a run)."""
    from pipeline.orchestration import schedule

    applied = schedule.set_schedule(ctx.settings, expression)
    OUT.print(f"schedule: {applied} (kept in {ctx.settings.state_dir / 'schedule.json'}; "
              "`stack up` applies it again after a restart)")
    return 0


@schedule_group.command("off")
@pass_cli
def off_schedule_cmd(ctx: CliContext) -> int:
    """No scheduled runs (runs start only with `shoplake run`)."""
    from pipeline.orchestration import schedule

    schedule.set_schedule(ctx.settings, None)
    OUT.print("schedule: off")
    return 0


@schedule_group.command("show")
@format_option
@pass_cli
def show_schedule_cmd(ctx: CliContext, fmt: str = "table") -> int:
    """The stored schedule and the rule EventBridge holds."""
    from pipeline.orchestration import schedule

    info = schedule.describe(ctx.settings)
    info["problem"] = schedule.problem(ctx.settings)
    if fmt == "json":
        click.echo(json.dumps(info, indent=2))
        return 0
    OUT.print(f"schedule: {info['expression'] or 'off'}")
    if info["problem"]:
        OUT.print(f"  [yellow]not active[/yellow]: {escape(info['problem'])}", highlight=False)
    for rule, r in info["rules"].items():
        OUT.print(f"  rule {rule}: {r['state']} {escape(str(r['schedule'] or r['pattern']))}",
                  highlight=False)
    return 0


def cause_of(ctx: CliContext, node) -> str:  # noqa: ANN001 - history.Node
    """A failed state's cause; Step Functions gives a timed out task none, so say what it
    means."""
    if node.cause or node.error != "States.Timeout":
        return node.cause
    o = ctx.settings.orchestration
    return (f"no worker reported on the task for {o.heartbeat_s} s (HeartbeatSeconds), or it "
            f"ran past {o.task_timeout_s} s (TimeoutSeconds): the worker running it died or "
            "hangs, or none is alive; `shoplake stack status` shows them, `shoplake stack "
            "logs worker-1` what they did")


def _warn(text: str) -> None:
    OUT.print(f"[yellow]Warning[/yellow]: {escape(text)}", highlight=False)


def print_warnings(run) -> None:  # noqa: ANN001 - history.Run
    """One yellow `Warning:` line per warning the run's tasks reported."""
    for path, warning in run.warnings():
        OUT.print(f"[yellow]Warning[/yellow] ({escape(path)}): {escape(warning)}",
                  highlight=False)


def follow_run(ctx: CliContext, arn: str) -> int:
    """Follow a run live; print its summary; the run's exit code."""
    from pipeline.cli.graph import GraphView
    from pipeline.orchestration.runs import follow

    try:
        if ctx.quiet:  # -q: no graph, only the summary
            run = follow(ctx.settings, arn, lambda _run: None, on_note=_warn)
        else:
            with GraphView() as view:
                run = follow(ctx.settings, arn, view.update, on_note=view.note)
    except KeyboardInterrupt:
        name = arn.rsplit(":", 1)[-1]
        OUT.print(f"stopped following; run {name} goes on (`shoplake runs show {name}`)")
        raise
    skipped = any(n.name == "AlreadyRunning" and n.status != "pending" for n in run.nodes)
    older = next((n.output.get("oldest") or {} for n in run.nodes if n.name == "Guard"), {})
    from pipeline.orchestration.report import report_path

    report = report_path(ctx.settings, run.name)
    if skipped:
        other = older.get("Name") if isinstance(older, dict) else None
        which = (f"run {other} was in progress (follow it with `shoplake runs show {other}`)"
                 if other else "another run was in progress")
        OUT.print(f"run {run.name}: {which}; this one ended as AlreadyRunning and did "
                  "nothing", highlight=False)
        return 0
    took = f"{run.seconds:.1f}s" if run.seconds is not None else "?"
    print_warnings(run)
    if run.status == "SUCCEEDED":
        quality = next((n.output for n in run.nodes if n.name == "QualityAndReconcile"), {})
        OUT.print(f"run {run.name} [green]succeeded[/green] in {took} "
                  f"(tasks {run.task_seconds():.1f}s); reconcile: all "
                  f"{quality.get('days', '?')} days match, {quality.get('rows', '?')} rows "
                  f"compared" + (f" ({quality['reconcile']}: {escape(str(quality.get('why')))})"
                                 if quality.get("reconcile") else ""), highlight=False)
        OUT.print(f"report: {report}")
        return 0
    failed = run.failed_node()
    where = f" in {escape(failed.path)}: {escape(failed.error)}" if failed else ""
    OUT.print(f"run {run.name} [red]{run.status.lower()}[/red]{where}", highlight=False)
    if failed is not None and cause_of(ctx, failed):
        OUT.print(f"  cause: {escape(cause_of(ctx, failed))}", highlight=False)
    OUT.print(f"report: {report}  (`shoplake runs show {run.name}`)")
    return 1
