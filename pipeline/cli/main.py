"""Entry point of the `shoplake` console script and its one error handler."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click
from rich.markup import escape

from pipeline.cli.cdc import cdc_group
from pipeline.cli.common import ERR, CliContext
from pipeline.cli.config import config_group
from pipeline.cli.dashboards import dashboard_group
from pipeline.cli.deploy import deploy_group
from pipeline.cli.glue import catalog_group, crawl_cmd, job_group, lake_group, quarantine_cmd
from pipeline.cli.orchestration import (
    runs_group,
    schedule_group,
    statemachine_group,
    worker_cmd,
)
from pipeline.cli.run import run_cmd
from pipeline.cli.source import seed_cmd, simulate_cmd
from pipeline.cli.stack import provision_cmd, stack_group
from pipeline.cli.warehouse import reconcile_cmd, warehouse_group
from pipeline.config import load_settings, redact
from pipeline.errors import ShoplakeError


class _Redact(logging.Filter):
    """No secret in any log line, whoever logs it: botocore's --debug dumps the bodies of
    GetSecretValue and PutSecretValue, passwords included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_text is None and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time: while a live progress display runs
    on a terminal, rich swaps in a proxy that prints above the live rows, so a warning does
    not tear them apart."""

    @property
    def stream(self):  # noqa: ANN201 - logging's own attribute
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """shoplake: the AWS e-commerce data pipeline, offline on one machine."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_Redact())
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler],
                        force=True)
    # --debug shows Spark's own output too; otherwise it goes to the state folder's logs.
    overrides = {"spark__console_output": True} if debug else {}
    ctx.obj = CliContext(settings=load_settings(**overrides), debug=debug, quiet=quiet)


cli.add_command(stack_group)
cli.add_command(config_group)
cli.add_command(provision_cmd)
cli.add_command(cdc_group)
cli.add_command(seed_cmd)
cli.add_command(simulate_cmd)
cli.add_command(warehouse_group)
cli.add_command(reconcile_cmd)
cli.add_command(crawl_cmd)
cli.add_command(catalog_group)
cli.add_command(job_group)
cli.add_command(run_cmd)
cli.add_command(quarantine_cmd)
cli.add_command(lake_group)
cli.add_command(worker_cmd)
cli.add_command(statemachine_group)
cli.add_command(runs_group)
cli.add_command(schedule_group)
cli.add_command(dashboard_group)
cli.add_command(deploy_group)


def use_utc() -> None:
    """Run this process (and the JVM and workers it starts) in UTC, whatever the machine's
    time zone: shoplake's timestamps are naive UTC end to end, and a library that converts
    to "local time" (pyspark collecting timestamps, datetime.fromtimestamp) must not shift
    them. Databases get UTC sessions of their own as well."""
    import os
    import time

    os.environ["TZ"] = "UTC"
    time.tzset()


_INTERRUPTED = False
"""Set by the first Ctrl-C: whatever the interrupted library raises then (pyspark turns a
KeyboardInterrupt inside a Java call into a Py4JError), the command was interrupted."""


def _on_sigint(signum: int, frame: object) -> None:
    global _INTERRUPTED
    _INTERRUPTED = True
    # The libraries being torn out of their calls log their own tracebacks (py4j's
    # "Exception while sending command"): a user who pressed Ctrl-C does not need them.
    logging.disable(logging.CRITICAL)
    raise KeyboardInterrupt


def _library_printed(exc_type: type[BaseException], exc: BaseException, tb: object) -> None:
    """sys.excepthook while a command runs. Every exception of the command reaches main();
    what arrives here is an error a C extension printed itself besides raising one (psycopg2
    during a COPY whose server died prints a SystemError, then raises the real error):
    debug output, not something the user should read between progress lines."""
    logging.getLogger("pipeline").debug("a library printed an error", exc_info=(
        exc_type, exc, tb))  # type: ignore[arg-type]


def _unraisable(info: object) -> None:
    exc = getattr(info, "exc_value", None)
    logging.getLogger("pipeline").debug("an error was ignored in %r: %s",
                                        getattr(info, "object", None), exc)


def main(argv: Sequence[str] | None = None) -> int:
    use_utc()
    import signal

    sys.excepthook = _library_printed
    sys.unraisablehook = _unraisable

    signal.signal(signal.SIGINT, _on_sigint)  # commands that stop cleanly set their own
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        result = cli.main(args=args, prog_name="shoplake", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        ERR.print("[yellow]interrupted[/yellow]")
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that catches everything
        if _INTERRUPTED:
            ERR.print("[yellow]interrupted[/yellow]")
            return 130
        from pipeline.classify import typed_error

        if debug:
            ERR.print_exception()
        typed = typed_error(exc, _settings_or_none())
        if typed is not None:
            ERR.print(f"[red]Error:[/red] {escape(redact(str(typed)))}", highlight=False)
            return 1
        if not debug:
            ERR.print(f"[red]unexpected error:[/red] {type(exc).__name__}: "
                      f"{escape(redact(str(exc)))}\n"
                      "rerun with --debug for the traceback", highlight=False)
        return 2
    return result if isinstance(result, int) else 0


def _settings_or_none():  # noqa: ANN202 - Settings | None
    """The settings the command ran with (from the same environment), to name endpoints."""
    try:
        return load_settings()
    except ShoplakeError:
        return None


if __name__ == "__main__":
    sys.exit(main())
