"""One SparkSession per process, wired to LocalStack's S3 through s3a://."""

from __future__ import annotations

import logging
import re
import shutil
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.config import Settings
from pipeline.errors import TerminalError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOG = logging.getLogger(__name__)
_LOCK = threading.Lock()
_SESSION: SparkSession | None = None
_KEY: tuple | None = None
MAVEN = "https://repo1.maven.org/maven2"
S3A_ATTEMPTS = 2
"""AWS SDK attempts per S3 request from Spark (Hadoop's default, 20, took minutes)."""


ICEBERG_RUNTIME = "iceberg-spark-runtime-3.5_2.12"
"""Iceberg's Spark runtime for Spark 3.5 / Scala 2.12 (pyspark's build)."""


def _maven_jars(settings: Settings) -> list[tuple[str, str]]:
    """(Maven Central path, file name) of every jar the jobs need beyond pyspark's own:
    s3a (hadoop-aws and the AWS SDK bundle it was built against), Iceberg's Spark runtime,
    and the PostgreSQL JDBC driver of silver's catalog."""
    sp = settings.spark
    hadoop, sdk, ice, pg = (sp.hadoop_aws_version, sp.aws_sdk_version, sp.iceberg_version,
                            sp.postgres_jdbc_version)
    coords = [("org/apache/hadoop", "hadoop-aws", hadoop),
              ("com/amazonaws", "aws-java-sdk-bundle", sdk),
              ("org/apache/iceberg", ICEBERG_RUNTIME, ice),
              ("org/postgresql", "postgresql", pg)]
    return [(f"{group}/{name}/{version}/{name}-{version}.jar", f"{name}-{version}.jar")
            for group, name, version in coords]


def jar_paths(settings: Settings) -> list[Path]:
    """The jars of `_maven_jars` where setup.sh downloads them."""
    folder = Path(settings.spark.jars_dir or settings.stack.tools_dir / "jars")
    return [folder / name for _, name in _maven_jars(settings)]


def jar_urls(settings: Settings) -> list[str]:
    """Where Maven Central keeps the jars of `jar_paths`, in the same order."""
    return [f"{MAVEN}/{path}" for path, _ in _maven_jars(settings)]


def _jars_config(settings: Settings) -> str:
    import pyspark

    bundled = Path(pyspark.__file__).parent / "jars"
    jars = jar_paths(settings)
    if all((bundled / j.name).exists() for j in jars):
        return ""  # already on the classpath (setup.sh links them, the image copies them)
    if all(j.exists() for j in jars):
        return ",".join(str(j) for j in jars)
    missing = ", ".join(j.name for j in jars if not j.exists())
    raise TerminalError(f"Spark cannot reach S3 and silver's Iceberg tables without {missing}",
                        hint="run `bash scripts/setup.sh` (it downloads them from Maven "
                             "Central) or set SHOPLAKE_SPARK_JARS_DIR")


def get_spark(settings: Settings) -> SparkSession:
    """The process's SparkSession, created on first use (3-5 s), reused by every job."""
    global _SESSION, _KEY
    ls = settings.localstack
    key = (settings.spark.master, ls.endpoint_url, ls.access_key_id, settings.spark.driver_memory)
    with _LOCK:
        if _SESSION is not None and _SESSION.sparkContext._jsc is not None \
                and _SESSION.sparkContext._jsc.sc().isStopped():
            # Spark stops a context whose master went away: start a new one.
            LOG.warning("the Spark session was stopped (master %s lost); starting a new one",
                        settings.spark.master)
            _SESSION = None
        if _SESSION is not None and _SESSION.sparkContext._jsc is not None:
            if key == _KEY:
                return _SESSION
            # Other endpoints (tests on other ports): s3a caches its clients per JVM.
            _SESSION.stop()
            _SESSION = None
        _check_master(settings.spark.master)
        if shutil.which("java") is None:
            raise TerminalError("Spark needs Java 17, and `java` is not on PATH",
                                hint="apt-get install openjdk-17-jdk-headless "
                                     "(or run `bash scripts/setup.sh`)")
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:  # someone else's session would hide our configuration
            active.stop()
        from pipeline.glue.iceberg import STATIC_CONF

        conf = _spark_conf(settings)
        conf.setAll(list(STATIC_CONF.items()))  # the catalog itself: `iceberg.attach`
        if settings.spark.master.startswith("local"):
            # Local mode needs no network identity; loopback keeps it off other interfaces.
            conf.set("spark.driver.host", "127.0.0.1").set("spark.driver.bindAddress",
                                                           "127.0.0.1")
        elif settings.spark.master.startswith("spark://"):
            # Executors connect back to the driver: advertise (and listen on) the address
            # on the master's network, not whichever one the hostname resolves to.
            from pipeline.glue.network import master_host_port, route_address

            address = route_address(*master_host_port(settings.spark.master))
            conf.set("spark.driver.host", address).set("spark.driver.bindAddress", address)
            if settings.spark.cores_max:
                conf.set("spark.cores.max", str(settings.spark.cores_max))
        jars = _jars_config(settings)
        if jars:
            conf.set("spark.jars", jars)
        _launch_jvm(settings, conf)
        handler = signal.getsignal(signal.SIGINT)
        _SESSION = SparkSession.builder.config(conf=conf).getOrCreate()
        # pyspark installs a SIGINT handler that cancels jobs through the JVM (and logs
        # tracebacks when that fails mid-call); keep the process's own, which ends the
        # command (the JVM follows when its stdin closes).
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)
        _KEY = key
        _SESSION.sparkContext.setLogLevel("ERROR")
        LOG.info("spark session on %s", settings.spark.master)
        return _SESSION


_MASTER = re.compile(r"^(local(\[(\*|\d+)(,\d+)?\])?|spark://[^:/]+:\d+(,[^:/]+:\d+)*|yarn|"
                     r"k8s://.+|mesos://.+)$")


def _check_master(master: str) -> None:
    """A master Spark cannot use fails here, naming the setting, not after a JVM start."""
    if not _MASTER.match(master):
        from pipeline.errors import ConfigError

        raise ConfigError(f"`spark.master` is `{master}`, which is not a Spark master",
                          key="spark.master",
                          hint="use `local[N]`, `local[*]` or `spark://HOST:PORT` "
                               "(SHOPLAKE_SPARK_MASTER)")


def _spark_conf(settings: Settings):  # noqa: ANN202 - a SparkConf (pyspark is optional)
    from pyspark import SparkConf

    ls = settings.localstack
    return SparkConf().setAll([
        ("spark.master", settings.spark.master),
        ("spark.app.name", "shoplake-glue"),
        ("spark.driver.memory", settings.spark.driver_memory),
        ("spark.sql.shuffle.partitions", str(settings.spark.shuffle_partitions)),
        ("spark.scheduler.mode", settings.spark.scheduler_mode),
        ("spark.sql.session.timeZone", "UTC"),
        ("spark.sql.execution.arrow.pyspark.enabled", "true"),
        ("spark.sql.sources.partitionOverwriteMode", "static"),
        ("spark.ui.enabled", "false"),
        ("spark.ui.showConsoleProgress", "false"),
        # The JVMs and Python workers in UTC too: Spark's session zone covers SQL, these
        # cover java.util and Python-side conversions.
        ("spark.driver.extraJavaOptions",
         f"-Dlog4j2.configurationFile={Path(__file__).parent / 'log4j2.properties'} "
         "-Duser.timezone=UTC"),
        ("spark.executor.extraJavaOptions", "-Duser.timezone=UTC"),
        ("spark.executorEnv.TZ", "UTC"),
        ("spark.hadoop.fs.s3a.endpoint", ls.endpoint_url),
        ("spark.hadoop.fs.s3a.endpoint.region", ls.region),
        ("spark.hadoop.fs.s3a.path.style.access", "true"),
        ("spark.hadoop.fs.s3a.connection.ssl.enabled", "false"),
        ("spark.hadoop.fs.s3a.aws.credentials.provider",
         "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"),
        ("spark.hadoop.fs.s3a.access.key", ls.access_key_id),
        ("spark.hadoop.fs.s3a.secret.key", ls.secret_access_key.reveal()),
        # Parquet written by pyarrow (the CDC service) uses microsecond timestamps.
        ("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS"),
        # Dates before 1582 (MySQL accepts 1000-01-01): pyarrow writes the proleptic
        # Gregorian calendar, as Spark 3 does; no rebasing to the old hybrid calendar, in
        # either direction, so such a date is read and written exactly (Spark would
        # otherwise refuse with WRITE_ANCIENT_DATETIME).
        ("spark.sql.parquet.datetimeRebaseModeInWrite", "CORRECTED"),
        ("spark.sql.parquet.datetimeRebaseModeInRead", "CORRECTED"),
        ("spark.sql.parquet.int96RebaseModeInWrite", "CORRECTED"),
        ("spark.sql.parquet.int96RebaseModeInRead", "CORRECTED"),
        # Fail fast when S3 is gone: Hadoop's defaults (20 SDK attempts with backoff, 7 S3A
        # retries of each, a 200 s socket timeout) kept a run hanging ~16 minutes after
        # LocalStack died. These bound one S3 call to a few seconds; the orchestrator
        # retries whole steps instead.
        ("spark.hadoop.fs.s3a.attempts.maximum", str(S3A_ATTEMPTS)),
        ("spark.hadoop.fs.s3a.retry.limit", "2"),
        ("spark.hadoop.fs.s3a.retry.interval", "500ms"),
        ("spark.hadoop.fs.s3a.retry.throttle.limit", "3"),
        ("spark.hadoop.fs.s3a.retry.throttle.interval", "500ms"),
        ("spark.hadoop.fs.s3a.connection.establish.timeout", "3000"),
        ("spark.hadoop.fs.s3a.connection.timeout", "20000"),
        ("spark.hadoop.fs.s3a.connection.request.timeout", "30000"),
    ])


def spark_log_file(settings: Settings) -> Path:
    """Where the JVM's own stdout and stderr go (log4j, Spark's banners)."""
    return settings.state_dir / "logs" / "spark.log"


def _launch_jvm(settings: Settings, conf) -> None:  # noqa: ANN001 - a SparkConf
    """Start Spark's JVM with its stdout and stderr in `spark_log_file`, so that its own
    output never lands between shoplake's progress lines on a terminal.

    pyspark would start the JVM on first use with our stdout and stderr; starting it here,
    with the same configuration, is the only way to hand it other ones. Under spark-submit
    the JVM already runs (it started us), and `spark.console_output` keeps it on ours.
    """
    import os

    from pyspark import SparkContext
    from pyspark.java_gateway import launch_gateway

    if settings.spark.console_output or "PYSPARK_GATEWAY_PORT" in os.environ:
        return
    if SparkContext._gateway is not None:  # this process's JVM is up already
        return
    log_file = spark_log_file(settings)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"\n=== shoplake: starting Spark's JVM (pid {os.getpid()}) "
                  f"master {settings.spark.master}\n".encode())
        log.flush()
        try:
            gateway = launch_gateway(conf, popen_kwargs={"stdout": log, "stderr": log})
        except BaseException:
            # Interrupted (or failed) while the JVM was coming up: it is not watching its
            # stdin yet, so it would outlive us. Stop what was started.
            _kill_spark_children()
            raise
    SparkContext._ensure_initialized(gateway=gateway)
    LOG.info("Spark's JVM writes to %s", log_file)


def _kill_spark_children() -> None:
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            if any("spark" in part.lower() for part in child.cmdline()):
                child.kill()
        except psutil.Error:
            continue


def stop_spark() -> None:
    global _SESSION
    with _LOCK:
        if _SESSION is not None:
            _SESSION.stop()
            _SESSION = None
