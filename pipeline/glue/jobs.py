"""Glue-shaped jobs: a registry, `--KEY value` arguments, and `run_job` for in-process runs.

Each job is a module in spark_jobs/ with `run(ctx) -> dict` (its metrics) and a `main()`
for spark-submit. `shoplake job run NAME` and the Step Functions workers call `run_job`,
which reuses the process's SparkSession, so a run pays Spark's start-up once.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.config import Settings
from pipeline.errors import ConfigError, first_line
from pipeline.glue.arguments import lake_arguments
from pipeline.glue.session import get_spark
from pipeline.progress import Progress, SilentProgress
from pipeline.warehouse.model import LOADS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOG = logging.getLogger(__name__)

JOBS: dict[str, str] = {
    "bronze_to_silver": "spark_jobs.bronze_to_silver",
    **{load.job: "spark_jobs.load_gold" for load in LOADS},
    "maintain_silver": "spark_jobs.maintain_silver",
}
"""Job name -> module (its script in spark_jobs/). The order is the pipeline's:
bronze_to_silver, dims, facts. The four load jobs share one script."""

SOURCE_TABLES = ("customers", "products", "orders", "order_items")


@dataclass
class JobContext:
    """What a job gets: settings, the shared SparkSession, its Glue arguments, progress."""

    settings: Settings
    spark: SparkSession
    name: str
    args: dict[str, str]
    progress: Progress = field(default_factory=SilentProgress)

    def arg(self, key: str, default: str | None = None) -> str:
        value = self.args.get(key, default)
        if value is None:
            raise ConfigError(f"job `{self.name}` needs the argument `--{key}`")
        return value


@dataclass(frozen=True)
class JobResult:
    job: str
    table: str
    metrics: dict[str, Any]
    seconds: float


def parse_glue_args(argv: Sequence[str]) -> dict[str, str]:
    """`--JOB_NAME x --table t --reset-bookmark` -> {JOB_NAME: x, table: t,
    reset-bookmark: true}."""
    args: dict[str, str] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--"):
            raise ConfigError(f"unexpected job argument `{token}`; use `--KEY value`")
        key = token[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
            i += 1
        else:
            value = "true"
        args[key] = value
        i += 1
    return args


def default_args(settings: Settings, name: str, table: str | None) -> dict[str, str]:
    """The arguments the pipeline passes (as Step Functions would in Parameters.Arguments)."""
    args = {"JOB_NAME": name, **lake_arguments(settings)}
    if table:
        args["table"] = table
    return args


def check_job_args(name: str, table: str | None = None) -> None:
    """Refuse an unknown job or table before anything starts (Spark takes seconds)."""
    if name not in JOBS:
        raise ConfigError(f"unknown job `{name}`", hint=f"jobs: {', '.join(JOBS)} "
                          "(`shoplake job list`)")
    if table is not None and table not in SOURCE_TABLES:
        raise ConfigError(f"unknown table `{table}` for job `{name}`",
                          hint=f"tables: {', '.join(SOURCE_TABLES)}")


def _s3a(path: str, arg: str) -> tuple[str, str]:
    """`s3a://bucket/prefix` -> (bucket, prefix)."""
    scheme, _, rest = path.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme not in ("s3a", "s3") or not bucket or not prefix or "/" in prefix.strip("/"):
        raise ConfigError(f"`--{arg}` must be s3a://BUCKET/SCHEMA, got `{path}`")
    return bucket, prefix.strip("/")


def settings_for(settings: Settings, args: dict[str, str]) -> Settings:
    """The settings a job runs with: its Glue arguments (--bronze_path, --silver_path,
    --catalog_database) decide where it reads and writes, as on AWS, where Step Functions'
    Arguments drive the job; Settings only supply the defaults (`default_args`)."""
    bronze_bucket, schema = _s3a(args["bronze_path"], "bronze_path")
    silver_bucket, silver_schema = _s3a(args["silver_path"], "silver_path")
    if silver_schema != schema:
        raise ConfigError(f"`--bronze_path` and `--silver_path` name other schemas "
                          f"(`{schema}`, `{silver_schema}`)")
    return dataclasses.replace(
        settings,
        lake=dataclasses.replace(settings.lake, bronze_bucket=bronze_bucket,
                                 silver_bucket=silver_bucket),
        glue=dataclasses.replace(settings.glue, database=args["catalog_database"]),
        mysql=dataclasses.replace(settings.mysql, database=schema))


def run_job(settings: Settings, name: str, table: str | None = None,
            reset_bookmark: bool = False, extra_args: dict[str, str] | None = None,
            progress: Progress | None = None) -> JobResult:
    """Run job `name` in this process (the shared SparkSession). `extra_args` are Glue
    arguments (without the leading --) and win over the defaults."""
    table = table or (extra_args or {}).get("table")
    check_job_args(name, table)
    progress = progress or SilentProgress()
    args = default_args(settings, name, table) | (extra_args or {})
    if reset_bookmark:
        args["reset-bookmark"] = "true"
    settings = settings_for(settings, args)
    module = importlib.import_module(JOBS[name])
    started = time.monotonic()
    key = f"{name}:{table}" if table else name  # tables run side by side: a row each
    progress.start(key, f"running {name}" + (f" --table {table}" if table else ""))
    try:
        spark = job_session(settings)
        # Jobs running side by side in this session (a worker's pollers) each get a
        # scheduler pool of their own (spark.scheduler.mode FAIR); the pool is the thread's.
        spark.sparkContext.setLocalProperty("spark.scheduler.pool", key)
        ctx = JobContext(settings, spark, name, args, _Keyed(progress, key))
        metrics = module.run(ctx)
    except Exception as exc:
        from pipeline.classify import typed_error
        from pipeline.glue.errors import translate

        # one typed line (not a Java stack trace, not a raw driver error)
        typed = translate(exc, settings, name) or typed_error(exc, settings)
        progress.finish(key, ok=False, message=first_line(typed or exc))
        if typed is not None and typed is not exc:
            raise typed from exc
        raise
    progress.finish(key, message=summarize(metrics))
    seconds = time.monotonic() - started
    LOG.info("job %s %s: %s in %.1fs", name, table or "", metrics, seconds)
    return JobResult(name, table or "", metrics, seconds)


def job_session(settings: Settings) -> SparkSession:
    """The shared SparkSession with silver's Iceberg catalog attached."""
    from pipeline.glue.iceberg import attach

    spark = get_spark(settings)
    attach(spark, settings)
    return spark


class _Keyed:
    """The job's progress under its own row key: jobs report `ctx.progress.update(ctx.name,
    ...)`, and side by side runs of one job (one per table) need rows of their own."""

    def __init__(self, progress: Progress, key: str) -> None:
        self._progress, self._key = progress, key

    def start(self, key: str, description: str, total: float | None = None) -> None:
        self._progress.start(self._key, description, total)

    def update(self, key: str, advance: float = 0, description: str | None = None) -> None:
        self._progress.update(self._key, advance, description)

    def finish(self, key: str, ok: bool = True, message: str = "") -> None:
        self._progress.finish(self._key, ok, message)


def summarize(metrics: dict[str, Any]) -> str:
    """A job's metrics in one line, for progress rows and `job run`'s table."""
    if "tables" in metrics:
        return "; ".join(summarize(m) for m in metrics["tables"])
    if "maintained" in metrics:
        if not metrics["maintained"]:
            return f"{metrics['table']}: nothing due"
        b, a = metrics["before"], metrics.get("after") or {}
        return (f"{metrics['table']}: {', '.join(metrics['work'])} ({b['data_files']} -> "
                f"{a.get('data_files')} data files, {b['delete_files']} -> "
                f"{a.get('delete_files')} delete files, {b['snapshots']} -> "
                f"{a.get('snapshots')} snapshots)")
    if "table" in metrics:
        return (f"{metrics['table']}: {metrics['files']} files, {metrics['changes']} changes, "
                f"{metrics['quarantined']} quarantined, {metrics['rows']} rows")
    staged = ", ".join(f"{s['staging']} {s['rows']}"
                       f" ({s.get('mode') or ('full' if s['copied'] else 'unchanged')})"
                       for s in metrics.get("staged", []))
    procedure = metrics.get("procedure")
    return f"{staged} -> CALL {procedure}" if procedure else f"{staged} staged"


def submit_main(module_run: Any, argv: Sequence[str] | None = None) -> int:
    """The body of every job's `main()`: what spark-submit runs."""
    import sys

    from pipeline.config import load_settings

    args = parse_glue_args(list(sys.argv[1:] if argv is None else argv))
    base = load_settings()
    name = args.get("JOB_NAME", "job")
    args = default_args(base, name, args.get("table")) | args
    settings = settings_for(base, args)
    ctx = JobContext(settings, job_session(settings), name, args)
    print(module_run(ctx))
    return 0
