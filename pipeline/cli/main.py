"""Entry point of the `shoplake` console script and its one error handler."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click
import psycopg2
import pymysql
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError
from rich.markup import escape

from pipeline.cli.cdc import cdc_group
from pipeline.cli.common import ERR, CliContext
from pipeline.cli.config import config_group
from pipeline.cli.glue import crawl_cmd, job_group
from pipeline.cli.run import run_cmd
from pipeline.cli.source import seed_cmd, simulate_cmd
from pipeline.cli.stack import provision_cmd, stack_group
from pipeline.cli.warehouse import reconcile_cmd, warehouse_group
from pipeline.config import load_settings
from pipeline.errors import ShoplakeError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """shoplake: the AWS e-commerce data pipeline, offline on one machine."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.obj = CliContext(settings=load_settings(), debug=debug, quiet=quiet)


cli.add_command(stack_group)
cli.add_command(config_group)
cli.add_command(provision_cmd)
cli.add_command(cdc_group)
cli.add_command(seed_cmd)
cli.add_command(simulate_cmd)
cli.add_command(warehouse_group)
cli.add_command(reconcile_cmd)
cli.add_command(crawl_cmd)
cli.add_command(job_group)
cli.add_command(run_cmd)


_UNREACHABLE = (EndpointConnectionError, ConnectionClosedError, pymysql.err.OperationalError,
                psycopg2.OperationalError)


def main(argv: Sequence[str] | None = None) -> int:
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
    except ShoplakeError as exc:
        if debug:
            ERR.print_exception()
        ERR.print(f"[red]Error:[/red] {escape(str(exc))}", highlight=False)
        return 1
    except _UNREACHABLE as exc:
        # A service that is down surfaces from deep inside a client library; say what to do
        # rather than "unexpected error".
        if debug:
            ERR.print_exception()
        ERR.print(f"[red]Error:[/red] a service is not reachable: "
                  f"{escape(str(exc).strip().splitlines()[0])}\n"
                  "  -> check `shoplake stack status`; start it with `shoplake stack up`",
                  highlight=False)
        return 1
    except Exception as exc:  # noqa: BLE001 - the one place that catches everything
        if debug:
            ERR.print_exception()
        else:
            ERR.print(f"[red]unexpected error:[/red] {type(exc).__name__}: {escape(str(exc))}\n"
                      "rerun with --debug for the traceback", highlight=False)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
