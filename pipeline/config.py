"""The single source of truth for shoplake's endpoints, ports, names and folders.

Every value comes from a ``SHOPLAKE_...`` environment variable when set, else from a default
that depends on the mode: ``native`` (child processes on 127.0.0.1, non-standard ports) or
``compose`` (containers reached by service name on their standard ports). Settings are built
once, at the CLI edge (or by a test fixture), and passed down; no other module reads
``os.environ``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

MODES = ("native", "compose")
ENV_PREFIX = "SHOPLAKE_"


_SECRET_VALUES: set[str] = set()
"""Every secret value this process has seen (of a length worth hiding), for `redact`."""

_SECRET_FIELDS = re.compile(
    r"""((?:\\*['"])(?:password|salt|secret_access_key|SecretAccessKey)(?:\\*['"])"""
    r"""\s*:\s*(?:\\*['"]))([^'"\\]*)""", re.IGNORECASE)
"""A password-like field in JSON, escaped JSON inside JSON, or a Python repr of either."""


def redact(text: str) -> str:
    """`text` with every known secret value, and every password-like field's value, as
    ****: what log lines (botocore's --debug bodies included) go through."""
    text = _SECRET_FIELDS.sub(r"\1****", text)
    for value in list(_SECRET_VALUES):
        if value in text:
            text = text.replace(value, "****")
    return text


class Secret:
    """A value that must not show up in logs, reprs or `config show` output."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        if len(value) >= 8:  # "test" (LocalStack's key) would make every log unreadable
            _SECRET_VALUES.add(value)

    def reveal(self) -> str:
        """The real value; call only where it is handed to a client library."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    def __str__(self) -> str:
        return "****"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def setting(doc: str, native: Any, compose: Any = None, *, choices: tuple[str, ...] = (),
            minimum: float | None = None, maximum: float | None = None,
            pattern: tuple[str, str] | None = None) -> Any:
    """Declare a field: its docstring, its default in each mode (compose defaults to native)
    and what values it accepts (`choices`, a number from `minimum` to `maximum`, or text
    matching `pattern`: a regular expression and how to say it)."""
    compose_default = native if compose is None else compose
    return field(default=None, metadata={"doc": doc, "native": native, "compose": compose_default,
                                         "choices": choices, "minimum": minimum,
                                         "maximum": maximum, "pattern": pattern})


SERVER_ID = {"minimum": 1, "maximum": 4294967295}
"""A MySQL server id: 1 to 2^32-1 (0 refuses replicas)."""


PORT = {"minimum": 1, "maximum": 65535}
"""The range of a TCP port."""


@dataclass(frozen=True)
class StackSettings:
    """How shoplake runs its services."""

    mode: str = setting("`native` starts child processes; `compose` expects containers.",
                        "native", choices=MODES)
    state_dir: Path = setting(
        "Folder for data dirs, logs, pid files and generated credentials.",
        ".shoplake",
        "/var/lib/shoplake",
    )
    tools_dir: Path = setting(
        "Folder for downloaded tools (LocalStack venv, jars); survives `stack down --purge`.",
        ".shoplake/tools",
        "/opt/shoplake/tools",
    )
    startup_timeout: float = setting("Seconds to wait for a service to turn healthy.", 60.0,
                                     minimum=1)
    stop_timeout: float = setting("Seconds between SIGTERM and SIGKILL on `stack down`.", 15.0,
                                  minimum=0)
    compose_project: str = setting("Compose project to report in compose mode; empty matches "
                                   "shoplake's services in any project.", "")
    keep_lake: bool = setting("Mirror the lake (its buckets and the Glue catalog) into the "
                              "state folder at `stack down` and after every run, and put it "
                              "back at `stack up`: LocalStack and moto forget it on restart.",
                              True)


@dataclass(frozen=True)
class MySQLSettings:
    """The OLTP source: MariaDB natively, MySQL 8.4 in compose (stands in for RDS MySQL)."""

    host: str = setting("Host the source database listens on.", "127.0.0.1", "mysql")
    port: int = setting("TCP port of the source database.", 13306, 3306, **PORT)
    database: str = setting("Name of the OLTP schema.", "shop")
    user: str = setting("Application user (owner of the `shop` schema).", "shoplake")
    server_id: int = setting("Binlog server id of the source.", 1, **SERVER_ID)
    secret_name: str = setting("Secrets Manager secret holding the app user's credentials.",
                               "shoplake/mysql")
    seed_dir: str = setting("Folder of the seed's data (schema.sql, profiles/); empty uses "
                            "the project's seed/.", "", "/opt/shoplake/seed")
    seed_profile: str = setting("Generator profile for `seed` and `simulate`: a name in "
                                "<seed_dir>/profiles, or a path to a .toml file.", "default")


@dataclass(frozen=True)
class PostgresSettings:
    """The warehouse: PostgreSQL standing in for Redshift."""

    host: str = setting("Host the warehouse listens on.", "127.0.0.1", "postgres")
    port: int = setting("TCP port of the warehouse.", 15432, 5432, **PORT)
    database: str = setting("Warehouse database name.", "warehouse")
    user: str = setting("Warehouse owner (superuser of the native cluster).", "shoplake")
    os_user: str = setting("OS user that runs postgres when shoplake runs as root.", "postgres")
    bin_dir: str = setting("Folder of initdb/postgres; empty finds it on PATH or under "
                           "/usr/lib/postgresql.", "")
    secret_name: str = setting("Secrets Manager secret holding the warehouse credentials.",
                               "shoplake/warehouse")
    workgroup: str = setting("Redshift Serverless workgroup on AWS (the state machine's "
                             "Redshift Data API calls name it).", "shoplake")


@dataclass(frozen=True)
class LocalStackSettings:
    """LocalStack: S3, Secrets Manager, Step Functions, EventBridge and SQS."""

    host: str = setting("Host of the LocalStack gateway.", "127.0.0.1", "localstack")
    port: int = setting("Port of the LocalStack gateway.", 14566, 4566, **PORT)
    region: str = setting("AWS region every client uses.", "us-east-1")
    access_key_id: str = setting("AWS access key id LocalStack accepts.", "test")
    secret_access_key: Secret = setting("AWS secret key LocalStack accepts.", "test")
    auth_token: Secret = setting("LocalStack auth token, passed through when set.", "")
    services: str = setting("LocalStack services to start.", "s3,secretsmanager,stepfunctions,"
                            "events,sqs")
    python: str = setting("Python of LocalStack's own venv (3.13); empty uses the tools dir.", "")

    @property
    def endpoint_url(self) -> str:
        """The gateway URL every boto3 client is pointed at."""
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class LakeSettings:
    """S3 buckets of the lake (bronze, silver) and of job artifacts."""

    bronze_bucket: str = setting("Raw layer written by the CDC service (DMS format).",
                                 "shoplake-bronze")
    silver_bucket: str = setting("Clean layer written by the Spark jobs (Apache Iceberg "
                                 "tables).", "shoplake-silver")
    artifacts_bucket: str = setting("Job scripts, bookmarks, catalog and run artifacts.",
                                    "shoplake-artifacts")
    catalog_database: str = setting("PostgreSQL database (on the warehouse's server) of "
                                    "silver's Iceberg JDBC catalog.", "iceberg_catalog")
    catalog_name: str = setting("Name of silver's Iceberg catalog (Spark's catalog and the "
                                "catalog_name column of its tables).", "silver")
    compact_min_files: int = setting("Compact a silver table (`maintain_silver`) once it has "
                                     "more data files than this.", 32, minimum=2)
    compact_delete_ratio: float = setting("...or once its position deletes cover more than "
                                          "this share of its rows.", 0.2, minimum=0.0)
    snapshot_retention_hours: float = setting("Expire silver snapshots older than this "
                                              "(time travel reaches that far back).", 168.0,
                                              minimum=0.0)
    snapshots_retained: int = setting("...but always keep this many of the latest.", 20,
                                      minimum=1)

    @property
    def buckets(self) -> tuple[str, ...]:
        return (self.bronze_bucket, self.silver_bucket, self.artifacts_bucket)


@dataclass(frozen=True)
class CdcSettings:
    """The binlog reader standing in for AWS DMS (full load + CDC into S3 bronze)."""

    user: str = setting("Least-privilege replication user the CDC service logs in as.",
                        "shoplake_cdc")
    secret_name: str = setting("Secrets Manager secret holding the CDC user's credentials.",
                               "shoplake/mysql-cdc")
    server_id: int = setting("Replica server id the binlog reader announces (unique).", 4242,
                             **SERVER_ID)
    data_format: str = setting("Bronze file format, as DMS's DataFormat: `parquet` or `csv`.",
                               "parquet", choices=("parquet", "csv"))
    batch_interval_s: float = setting("Close a CDC file after this many seconds "
                                      "(DMS CdcMaxBatchInterval).", 5.0, minimum=0.1)
    batch_max_rows: int = setting("Close a CDC file after this many row changes (bounds "
                                  "memory: ~150 MB peak at 50k).", 50000, minimum=1)
    min_file_size_kb: int = setting("Close a CDC file once its rows reach this size, in KB "
                                    "(DMS CdcMinFileSize).", 32000, minimum=1)
    full_load_chunk_rows: int = setting("Rows per LOAD file during the full load.", 100000,
                                        minimum=1)
    timestamp_column: str = setting("Commit-time column added to every row "
                                    "(DMS TimestampColumnName).", "commit_ts")
    include_op_for_full_load: bool = setting("Write the Op column (I) in full-load files too "
                                             "(DMS IncludeOpForFullLoad).", True)
    csv_null_value: str = setting("How NULL is written in CSV files (DMS CsvNullValue).", "\\N")
    exclude_tables: str = setting("Comma-separated tables of the source not to replicate.", "")
    task_name: str = setting("Identifier of the DMS replication task on AWS (the state "
                             "machine's WaitForCdcSync and ReplicateNow name it).",
                             "shoplake-cdc")
    sync_timeout_s: float = setting("How long `cdc --once` waits for a running follower to "
                                    "catch up.", 120.0, minimum=0)


@dataclass(frozen=True)
class SparkSettings:
    """Spark standing in for the Glue ETL runtime (Glue 5.0: Spark 3.5, Python 3.11)."""

    master: str = setting("Spark master: local threads natively, the standalone master in "
                          "compose (or a real cluster).", "local[2]", "spark://spark-master:7077")
    driver_memory: str = setting("Driver memory (local mode runs everything in the driver).",
                                 "2g", pattern=(r"[1-9][0-9]*[kKmMgGtT]?",
                                                "a JVM size such as `2g` or `512m`"))
    cores_max: int = setting("Cores one worker's Spark session may hold on a standalone "
                             "cluster (spark.cores.max); every worker keeps its session, so "
                             "more than cluster cores / workers starves the others. 0: "
                             "unset.", 0, 1, minimum=0)
    shuffle_partitions: int = setting("spark.sql.shuffle.partitions; small data, few "
                                      "partitions.", 4, minimum=1)
    warm_up: bool = setting("Whether a worker, once its Spark session is up, runs a small "
                            "clean + MERGE on scratch tables outside the lake, so its first "
                            "real batch does not pay the JVM's warm-up (15-30 s).", True)
    scheduler_mode: str = setting("spark.scheduler.mode: FAIR gives each job running at "
                                  "the same time in a worker's session (the Map's tables) a "
                                  "pool of its own, so a long one does not queue the others "
                                  "behind it; FIFO runs their stages in arrival order.",
                                  "FAIR", choices=("FAIR", "FIFO"))
    jars_dir: str = setting("Folder with hadoop-aws and aws-java-sdk-bundle; empty uses "
                            "<tools_dir>/jars (the spark image has them in pyspark's jars).",
                            "")
    hadoop_aws_version: str = setting("hadoop-aws version; must match pyspark's Hadoop.", "3.3.4")
    aws_sdk_version: str = setting("aws-java-sdk-bundle version hadoop-aws was built with.",
                                   "1.12.262")
    iceberg_version: str = setting("iceberg-spark-runtime version (Glue 5.0 ships 1.7.1).",
                                   "1.7.1")
    postgres_jdbc_version: str = setting("PostgreSQL JDBC driver version (the Iceberg "
                                         "catalog's connection).", "42.7.4")
    console_output: bool = setting("Let Spark's and the JVM's own output (log4j lines, stage "
                                   "bars) reach the terminal; by default it goes to "
                                   "<state_dir>/logs/spark.log (`--debug` turns this on).",
                                   False)


@dataclass(frozen=True)
class GlueSettings:
    """The Glue Data Catalog (moto's server standing in: LocalStack community has no Glue)
    and job bookmarks, kept in the artifacts bucket."""

    host: str = setting("Host of the Glue Data Catalog endpoint (moto server).", "127.0.0.1",
                        "glue")
    port: int = setting("Port of the Glue Data Catalog endpoint.", 14570, 5000, **PORT)
    database: str = setting("Catalog database the crawler writes bronze tables to.",
                            "shop_bronze")
    crawler: str = setting("Name of the Glue crawler of bronze (the state machine's "
                           "StartCrawler; on AWS, the crawler resource).", "shoplake-bronze")
    pii_salt_secret: str = setting("Secrets Manager secret with the salt for hashing PII.",
                                   "shoplake/pii-salt")

    @property
    def endpoint_url(self) -> str:
        """The Glue API's URL (the crawler registers tables there, the jobs read them)."""
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class OrchestrationSettings:
    """How pipeline runs are serialised and orchestrated (the Step Functions stand-in)."""

    run_lock_wait_s: float = setting("Seconds a run waits for another run's lease before it "
                                     "gives up; 0 refuses at once (`shoplake run --wait N`).",
                                     0.0, minimum=0)
    state_machine: str = setting("Name of the Step Functions state machine that runs the "
                                 "pipeline.", "shoplake-pipeline")
    activity_prefix: str = setting("Prefix of the activities the workers serve (one per "
                                   "step: `<prefix>glue_job`, ...).", "shoplake-")
    role_name: str = setting("IAM role the state machine and the schedule rule run as.",
                             "shoplake-stepfunctions")
    account_id: str = setting("AWS account id in the ARNs (LocalStack's default account).",
                              "000000000000")
    workers: int = setting("Worker processes `stack up` starts (each serves every activity).",
                           2, minimum=0, maximum=16)
    pollers: int = setting("Poller threads per activity in each worker.", 2, minimum=1,
                           maximum=8)
    heartbeat_s: int = setting("A task whose worker sends no heartbeat for this long times "
                               "out (States.Timeout) and is retried, on another worker.", 30,
                               minimum=5)
    task_timeout_s: int = setting("Longest a task may run before States.Timeout.", 1800,
                                  minimum=10)
    retry_attempts: int = setting("Retries of a task after Shoplake.Transient or "
                                  "States.Timeout.", 3, minimum=0, maximum=10)
    retry_interval_s: int = setting("First retry's delay (doubling, at most 30 s).", 2,
                                    minimum=1)
    schedule: str = setting("Schedule `stack up` applies when none was set with `shoplake "
                            "schedule set`: `rate(5 minutes)`, `cron(0 3 * * ? *)`, "
                            "`on-arrival`, or empty for none.", "")
    arrival_debounce_s: int = setting("On arrival, seconds a run waits before it starts, so "
                                      "a burst of files gives one run.", 5, minimum=0)
    failure_queue: str = setting("SQS queue the RunFailed events are delivered to.",
                                 "shoplake-run-failed")


@dataclass(frozen=True)
class ReconcileSettings:
    """How gold is checked against the source after a run."""

    on_quarantine: str = setting("What rows held in quarantine (gold behind the source for "
                                 "them) do to `run` and `reconcile`: `fail` (exit 1) or "
                                 "`warn`.", "fail", choices=("fail", "warn"))
    bucket_rows: int = setting("Keys per checksum bucket when comparing rows; a bucket "
                               "whose checksums differ is compared row by row.", 10000,
                               minimum=10)
    max_rows_shown: int = setting("Differing rows listed per table (all are counted).", 20,
                                  minimum=1)


@dataclass(frozen=True)
class DashboardSettings:
    """Dashboards as code on gold (the QuickSight stand-in): static HTML and a live server."""

    host: str = setting("Address the live dashboard server binds to.", "127.0.0.1", "0.0.0.0")
    port: int = setting("Port of the live dashboard server.", 18050, 8050, **PORT)
    public_url: str = setting("URL to print for the live dashboards; empty derives it from "
                              "host and port.", "", "http://localhost:8050")
    definitions_dir: str = setting("Folder of the dashboard files (one YAML each); empty uses "
                                   "the project's dashboards/.", "", "/opt/shoplake/dashboards")
    out_dir: str = setting("Where `dashboard build` writes the HTML files; empty uses "
                            "<state_dir>/dashboards.", "")
    reader_user: str = setting("Read-only warehouse role the dashboards log in as.",
                               "shoplake_dashboards")
    secret_name: str = setting("Secrets Manager secret holding the read-only role's "
                               "credentials.", "shoplake/dashboards")
    query_timeout_s: float = setting("Longest a panel's query may run before it is cancelled "
                                     "and shown as an error box.", 20.0, minimum=0.1)


SECTIONS: dict[str, type] = {
    "stack": StackSettings,
    "mysql": MySQLSettings,
    "postgres": PostgresSettings,
    "localstack": LocalStackSettings,
    "lake": LakeSettings,
    "cdc": CdcSettings,
    "spark": SparkSettings,
    "glue": GlueSettings,
    "orchestration": OrchestrationSettings,
    "reconcile": ReconcileSettings,
    "dashboards": DashboardSettings,
}


@dataclass(frozen=True)
class Settings:
    """Every resolved value, one section per stand-in, plus where each value came from."""

    stack: StackSettings
    mysql: MySQLSettings
    postgres: PostgresSettings
    localstack: LocalStackSettings
    lake: LakeSettings
    cdc: CdcSettings
    spark: SparkSettings
    glue: GlueSettings
    orchestration: OrchestrationSettings
    reconcile: ReconcileSettings
    dashboards: DashboardSettings
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def mode(self) -> str:
        return self.stack.mode

    @property
    def state_dir(self) -> Path:
        return self.stack.state_dir

    def describe(self) -> list[tuple[str, str, str, str]]:
        """Rows of (key, value, source, doc) for `shoplake config show`; secrets masked."""
        rows = []
        for section_name in SECTIONS:
            section = getattr(self, section_name)
            for f in dataclasses.fields(section):
                key = f"{section_name}.{f.name}"
                value = getattr(section, f.name)
                rows.append((key, str(value), self.sources.get(key, "default"), f.metadata["doc"]))
        return rows


def as_environment(settings: Settings) -> dict[str, str]:
    """Every setting as its SHOPLAKE_ variable: what a child process (a worker) needs to
    run with exactly these settings, however they were made (env, overrides, defaults)."""
    env = {}
    for section_name in SECTIONS:
        section = getattr(settings, section_name)
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, Secret):
                value = value.reveal()
            elif isinstance(value, bool):
                value = "true" if value else "false"
            env[env_name(section_name, f.name)] = str(value)
    return env


def env_name(section: str, name: str) -> str:
    """`mysql.port` is set by `SHOPLAKE_MYSQL_PORT`."""
    return f"{ENV_PREFIX}{section}_{name}".upper()


def _convert(raw: Any, annotation: str, key: str, source: str = "") -> Any:
    where = f" (from {source})" if source.startswith("env") else ""
    try:
        if annotation == "int":
            return int(raw)
        if annotation == "float":
            number = float(raw)
            if not math.isfinite(number):  # nan passes every range check; inf never ends
                raise ConfigError(f"`{key}` must be a finite number, got `{raw}`{where}",
                                  key=key)
            return number
        if annotation == "bool":
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if annotation == "Path":
            return Path(raw)
        if annotation == "Secret":
            return raw if isinstance(raw, Secret) else Secret(str(raw))
        return str(raw)
    except ValueError as exc:
        raise ConfigError(f"`{key}` must be {annotation}, got `{raw}`{where}",
                          key=key) from exc


def _check(value: Any, meta: Mapping[str, Any], key: str, source: str) -> None:
    """Refuse a value the field does not accept, naming where it came from."""
    where = f" (from {source})" if source.startswith("env") else ""
    if meta["choices"] and value not in meta["choices"]:
        raise ConfigError(f"`{key}` must be one of {', '.join(meta['choices'])}; got "
                          f"`{value}`{where}", key=key)
    low, high = meta["minimum"], meta["maximum"]
    if (low is not None and value < low) or (high is not None and value > high):
        def num(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        bounds = (f"from {num(low)} to {num(high)}" if low is not None and high is not None
                  else f"at least {num(low)}" if low is not None else f"at most {num(high)}")
        raise ConfigError(f"`{key}` must be {bounds}; got `{value}`{where}", key=key)
    if meta.get("pattern") and not re.fullmatch(meta["pattern"][0], str(value)):
        raise ConfigError(f"`{key}` must be {meta['pattern'][1]}; got `{value}`{where}",
                          key=key)


def _check_together(built: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """Rules between settings, named by the variable that breaks them."""
    o = built["orchestration"]
    if o.heartbeat_s >= o.task_timeout_s:
        key = "orchestration.heartbeat_s"
        source = sources.get(key, "")
        if not source.startswith("env"):
            key, source = "orchestration.task_timeout_s", sources.get(
                "orchestration.task_timeout_s", "")
        where = f" (from {source})" if source.startswith("env") else ""
        raise ConfigError(f"`orchestration.heartbeat_s` ({o.heartbeat_s}) must be below "
                          f"`orchestration.task_timeout_s` ({o.task_timeout_s}): Step "
                          f"Functions refuses a heartbeat not shorter than the task's "
                          f"timeout{where}", key=key)


NOT_SETTINGS = ("SHOPLAKE_PYTHON", "SHOPLAKE_LOCALSTACK_PYTHON_BASE")
"""SHOPLAKE_ variables that are not settings: setup.sh's Pythons (and SHOPLAKE_TEST_*, the
test suite's knobs)."""


def _unknown_variables(env: Mapping[str, str]) -> None:
    """A SHOPLAKE_ variable that names no setting is a typo that would be silently ignored:
    refuse it, with the nearest real name."""
    import difflib

    known = [env_name(sec, f.name) for sec, cls in SECTIONS.items()
             for f in dataclasses.fields(cls)]
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var in known:
            continue
        if var in NOT_SETTINGS or var.startswith("SHOPLAKE_TEST_"):
            continue
        near = difflib.get_close_matches(var, known, n=1)
        raise ConfigError(f"`{var}` is not a setting, so it would have no effect",
                          key=var, hint=(f"did you mean `{near[0]}`? " if near else "")
                          + "`shoplake config show` lists every setting")


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Resolve settings from overrides, then `SHOPLAKE_*` variables, then mode defaults.

    `overrides` take dotted keys with `__` for the dot (``mysql__port=1``), which is how
    test fixtures pin ports and folders without touching the process environment.
    """
    env = dict(os.environ if environ is None else environ)
    _unknown_variables(env)
    flat = {k.replace("__", "."): v for k, v in overrides.items()}
    mode = flat.get("stack.mode") or env.get(env_name("stack", "mode")) or "native"
    if mode not in MODES:
        raise ConfigError(f"`SHOPLAKE_STACK_MODE` must be one of {MODES}, got `{mode}`",
                          key="stack.mode")
    sources: dict[str, str] = {}
    built: dict[str, Any] = {}
    for section_name, cls in SECTIONS.items():
        values = {}
        for f in dataclasses.fields(cls):
            key = f"{section_name}.{f.name}"
            var = env_name(section_name, f.name)
            if key in flat:
                raw, sources[key] = flat[key], "override"
            elif var in env:
                raw, sources[key] = env[var], f"env {var}"
            else:
                raw, sources[key] = f.metadata[mode], f"default ({mode})"
            values[f.name] = _convert(raw, str(f.type), key, sources[key])
            _check(values[f.name], f.metadata, key, sources[key])
        built[section_name] = cls(**values)
    _check_together(built, sources)
    built["stack"] = _absolute_dirs(built["stack"])
    return Settings(**built, sources=sources)


def _absolute_dirs(stack: StackSettings) -> StackSettings:
    """Relative folders are taken from the current directory, then fixed for the run."""
    return dataclasses.replace(
        stack,
        state_dir=stack.state_dir.expanduser().absolute(),
        tools_dir=stack.tools_dir.expanduser().absolute(),
    )
