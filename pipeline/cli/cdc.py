"""`shoplake cdc`: the DMS stand-in (binlog -> S3 bronze)."""

from __future__ import annotations

import click

from pipeline.errors import TerminalError


@click.group("cdc", invoke_without_command=True)
@click.option("--once", is_flag=True, help="Drain what is committed now, then exit.")
def cdc_group(once: bool) -> None:
    """Replicate the source database's binlog into S3 bronze (the DMS stand-in)."""
    raise TerminalError("the CDC service is not built yet",
                        hint="it lands with the source/CDC issue; until then bronze stays empty")
