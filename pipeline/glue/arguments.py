"""The Glue arguments that say where a job reads and writes, rendered in one place.

Both state-machine bindings pass them (`asl`, as Parameters.Arguments with the `--` Glue
wants), `run --local` passes the same, and a job run by hand gets them as its defaults
(`jobs.default_args`); `jobs.settings_for` reads them back. A leaf module: it imports only
the settings, so the ASL renderer and the job runner share it without importing Spark.
"""

from __future__ import annotations

from pipeline.config import Settings


def lake_arguments(settings: Settings) -> dict[str, str]:
    """Where bronze and silver are, and the catalog database: s3a:// in both bindings
    (Glue 5.0 maps s3a to EMRFS, as EMR does). Keys without the leading `--`."""
    schema = settings.mysql.database
    return {"bronze_path": f"s3a://{settings.lake.bronze_bucket}/{schema}",
            "silver_path": f"s3a://{settings.lake.silver_bucket}/{schema}",
            "catalog_database": settings.glue.database}


def as_glue(arguments: dict[str, str]) -> dict[str, str]:
    """`{"table": "orders"}` -> `{"--table": "orders"}`: how StartJobRun takes them."""
    return {f"--{k}": v for k, v in arguments.items()}
