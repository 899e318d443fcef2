"""Silver's Apache Iceberg catalog: a JDBC catalog in a database of its own on the
warehouse's PostgreSQL server (`lake.catalog_database`), natively and in compose.

A commit is a compare-and-swap of the table's metadata location in that database's
`iceberg_tables` row, so a writer never leaves half a table and two writers never merge
their outputs: the loser's commit fails (and is retried by Iceberg, then by the job).
Spark reaches it as catalog `silver` (`catalog_conf`); Python readers without a JVM
(reconcile, health, `shoplake lake show`) through pyiceberg's SQL catalog, which reads the
same two tables (`py_catalog`). On AWS the same tables live in the Glue Data Catalog.

The login is the warehouse's, from Secrets Manager (every component reads creds there).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any

import psycopg2
from psycopg2 import sql

from pipeline.aws.secrets import DbCredentials, warehouse_credentials
from pipeline.config import Settings
from pipeline.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyspark.sql import SparkSession

LOG = logging.getLogger(__name__)
_LOCK = threading.Lock()
_READY: set[tuple[str, int, str]] = set()
_CATALOGS: dict[tuple, Any] = {}

TABLE_PROPERTIES = {
    "format-version": "2",
    # Updates, deletes and merges write position-delete files instead of rewriting data
    # files: a small change costs a small commit (compaction folds them in later).
    "write.delete.mode": "merge-on-read",
    "write.update.mode": "merge-on-read",
    "write.merge.mode": "merge-on-read",
    "write.parquet.compression-codec": "snappy",
}
"""Every silver table's Iceberg properties (format v2, merge-on-read)."""


class CatalogUnreachableError(ServiceUnavailableError):
    """The PostgreSQL database holding silver's Iceberg catalog does not answer."""

    def __init__(self, creds: DbCredentials, database: str, detail: str) -> None:
        super().__init__(
            f"silver's Iceberg catalog (database `{database}` of `postgres` at "
            f"{creds.host}:{creds.port}, login from secret `{creds.secret_name}`) is not "
            f"reachable: {detail}",
            service="postgres", port=creds.port,
            hint="start the stack (`shoplake stack up`; `shoplake stack status` shows "
                 "postgres), then rerun: nothing was written")
        self.database = database


def catalog_login(settings: Settings) -> DbCredentials:
    """The login the catalog database is reached with (the warehouse's)."""
    return warehouse_credentials(settings)


def _connect(creds: DbCredentials, dbname: str, database: str) -> psycopg2.extensions.connection:
    """A session on `dbname` of the catalog's server; CatalogUnreachableError (naming the
    catalog `database`) when it does not answer."""
    try:
        return psycopg2.connect(host=creds.host, port=creds.port, user=creds.username,
                                password=creds.password.reveal(), dbname=dbname,
                                connect_timeout=5, application_name="shoplake-catalog")
    except psycopg2.Error as exc:
        raise CatalogUnreachableError(creds, database, describe_error(exc)) from exc


def ensure_database(settings: Settings, creds: DbCredentials | None = None) -> None:
    """Create the catalog database on first use (Iceberg creates its tables in it)."""
    creds = creds or catalog_login(settings)
    database = settings.lake.catalog_database
    key = (creds.host, creds.port, database)
    with _LOCK:
        if key in _READY:
            return
        conn = _connect(creds, creds.dbname, database)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if cur.fetchone() is None:
                    LOG.info("creating the Iceberg catalog database `%s`", database)
                    # another process may create it in between
                    with contextlib.suppress(psycopg2.errors.DuplicateDatabase,
                                             psycopg2.errors.UniqueViolation):
                        cur.execute(sql.SQL("CREATE DATABASE {}").format(
                            sql.Identifier(database)))
        finally:
            conn.close()
        _create_catalog_tables(creds, database)
        _READY.add(key)


CATALOG_TABLES = (
    "CREATE TABLE IF NOT EXISTS iceberg_tables (catalog_name VARCHAR(255) NOT NULL, "
    "table_namespace VARCHAR(255) NOT NULL, table_name VARCHAR(255) NOT NULL, "
    "metadata_location VARCHAR(1000), previous_metadata_location VARCHAR(1000), "
    "iceberg_type VARCHAR(5), PRIMARY KEY (catalog_name, table_namespace, table_name))",
    "CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (catalog_name VARCHAR(255) NOT "
    "NULL, namespace VARCHAR(255) NOT NULL, property_key VARCHAR(255), property_value "
    "VARCHAR(1000), PRIMARY KEY (catalog_name, namespace, property_key))",
)
"""The JDBC catalog's two tables, in the schema Iceberg's JdbcCatalog (V1) and pyiceberg's
SqlCatalog both read. Created here, once, under a lock: each of them creates the tables
when missing, and two processes doing that at once collide in PostgreSQL."""


def _create_catalog_tables(creds: DbCredentials, database: str) -> None:
    conn = _connect(creds, database, database)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext('shoplake-iceberg-catalog'))")
            for statement in CATALOG_TABLES:
                cur.execute(statement)
    finally:
        conn.close()


def jdbc_url(creds: DbCredentials, database: str) -> str:
    return f"jdbc:postgresql://{creds.host}:{creds.port}/{database}"


def warehouse_location(settings: Settings) -> str:
    return f"s3a://{settings.lake.silver_bucket}"


STATIC_CONF = {
    # MERGE INTO, CALL and Iceberg's metadata tables.
    "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
    # Iceberg 1.7.x's vectorized Parquet reader crashes the JVM (SIGSEGV) or hangs on
    # Spark 3.5.4 (design notes section 10); the row reader is exact and fast enough.
    "spark.sql.iceberg.vectorization.enabled": "false",
}
"""Spark settings fixed when the session starts (they need no service)."""


def session_target(spark: SparkSession, settings: Settings) -> str:
    """`aws` when the session was started with the AWS binding (a Glue job's `--conf`, as
    `shoplake deploy render` writes it: the Glue Data Catalog), else `local`."""
    key = f"spark.sql.catalog.{settings.lake.catalog_name}.catalog-impl"
    aws = catalog_binding(settings, "aws")[key]
    return "aws" if spark.conf.get(key, "") == aws else "local"


def attach(spark: SparkSession, settings: Settings) -> None:
    """Point the session's catalog `lake.catalog_name` at the catalog database (its login
    from Secrets Manager), on first use: a session that never touches silver (unit tests,
    the crawler) needs neither PostgreSQL nor the secret. Idempotent and cheap.

    On AWS the Glue job was started with the Glue Data Catalog binding: that one stays,
    and nothing local (the JDBC catalog, its secret) is looked up."""
    with _LOCK:
        attached = getattr(spark, "_shoplake_catalog", None)
        if attached == "aws" or (attached is None and session_target(spark, settings) == "aws"):
            spark._shoplake_catalog = "aws"
            return
    conf = catalog_conf(settings)
    key = tuple(sorted(conf.items()))
    with _LOCK:
        attached = getattr(spark, "_shoplake_catalog", None)
        if attached == key:
            return
        for name, value in conf.items():
            spark.conf.set(name, value)
        if attached is not None:  # the catalog was loaded with other settings
            spark._jsparkSession.sessionState().catalogManager().reset()
        spark._shoplake_catalog = key


def catalog_conf(settings: Settings) -> dict[str, str]:
    """Spark settings for catalog `lake.catalog_name` here (Iceberg's SparkCatalog over a
    JdbcCatalog); creates the catalog database on first use."""
    creds = catalog_login(settings)
    ensure_database(settings, creds)
    return catalog_binding(settings, "local", creds)


def catalog_binding(settings: Settings, target: str,
                    creds: DbCredentials | None = None) -> dict[str, str]:
    """The one place silver's Iceberg catalog differs between AWS and here: on AWS the Glue
    Data Catalog with S3FileIO (`shoplake deploy render` puts these in each Glue job's
    `--conf`), locally a JdbcCatalog in PostgreSQL with Hadoop's S3A (`creds`: its login)."""
    prefix = f"spark.sql.catalog.{settings.lake.catalog_name}"
    common = {prefix: "org.apache.iceberg.spark.SparkCatalog",
              # Workers in other JVMs commit too: always read the catalog's current metadata.
              f"{prefix}.cache-enabled": "false"}
    if target == "aws":
        return common | {
            f"{prefix}.catalog-impl": "org.apache.iceberg.aws.glue.GlueCatalog",
            f"{prefix}.warehouse": f"s3://{settings.lake.silver_bucket}",
            f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO"}
    if creds is None:
        raise ValueError("the local catalog binding needs the catalog database's login")
    return common | {
        f"{prefix}.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
        f"{prefix}.uri": jdbc_url(creds, settings.lake.catalog_database),
        f"{prefix}.jdbc.user": creds.username,
        f"{prefix}.jdbc.password": creds.password.reveal(),
        f"{prefix}.warehouse": warehouse_location(settings),
        f"{prefix}.io-impl": "org.apache.iceberg.hadoop.HadoopFileIO",
        f"{prefix}.jdbc.schema-version": "V1",
    }


def table_name(settings: Settings, table: str) -> str:
    """Spark's name of silver table `table`: `silver.shop.customers`."""
    return f"{settings.lake.catalog_name}.{settings.mysql.database}.{table}"


def held_table_name(settings: Settings, table: str) -> str:
    """The keys of `table` whose latest change is held in quarantine."""
    return f"{settings.lake.catalog_name}.{settings.mysql.database}_held.{table}"


def changes_namespace(settings: Settings) -> str:
    return f"{settings.mysql.database}_changes"


def changes_table_name(settings: Settings, table: str) -> str:
    """The change log of `table`: one row per key a run changed (append-only), which the
    load jobs read incrementally to stage only what changed."""
    return f"{settings.lake.catalog_name}.{changes_namespace(settings)}.{table}"


def table_location(settings: Settings, table: str, namespace: str | None = None) -> str:
    return f"s3a://{settings.lake.silver_bucket}/{namespace or settings.mysql.database}/{table}"


def py_catalog(settings: Settings) -> SqlCatalog:
    """pyiceberg's view of the same catalog (no JVM): S3 through pyarrow, at LocalStack."""

    creds = catalog_login(settings)
    ensure_database(settings, creds)
    ls = settings.localstack
    password = creds.password.reveal()
    from sqlalchemy.exc import OperationalError

    key = (creds.host, creds.port, creds.username, password, settings.lake.catalog_database,
           settings.lake.catalog_name, ls.endpoint_url)
    try:
        with _LOCK:
            if key not in _CATALOGS:  # one engine (and connection pool) per process
                _CATALOGS[key] = _sql_catalog(settings, creds, password, ls)
            return _CATALOGS[key]
    except OperationalError as exc:
        raise CatalogUnreachableError(creds, settings.lake.catalog_database,
                                      describe_error(exc.orig or exc)) from exc


def _sql_catalog(settings: Settings, creds: DbCredentials, password: str,
                 ls: Any) -> SqlCatalog:
    from urllib.parse import quote

    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog(
        settings.lake.catalog_name,
        uri=(f"postgresql+psycopg2://{quote(creds.username)}:{quote(password)}@"
             f"{creds.host}:{creds.port}/{settings.lake.catalog_database}"),
        warehouse=warehouse_location(settings),
        **{"s3.endpoint": ls.endpoint_url, "s3.access-key-id": ls.access_key_id,
           "s3.secret-access-key": ls.secret_access_key.reveal(), "s3.region": ls.region,
           "s3.path-style-access": "true",
           # A pooled connection dies with a restarted PostgreSQL: test it before use.
           "pool_pre_ping": "true",
           "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"})


def describe_error(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def catalog_tables(settings: Settings) -> list[dict[str, Any]]:
    """The catalog's table rows (namespace, name, metadata location), read with SQL."""
    creds = catalog_login(settings)
    ensure_database(settings, creds)
    conn = _connect(creds, settings.lake.catalog_database, settings.lake.catalog_database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('iceberg_tables')")
            if cur.fetchone()[0] is None:
                return []
            cur.execute("SELECT table_namespace, table_name, metadata_location FROM "
                        "iceberg_tables WHERE catalog_name = %s ORDER BY 1, 2",
                        (settings.lake.catalog_name,))
            return [{"namespace": r[0], "table": r[1], "metadata_location": r[2]}
                    for r in cur.fetchall()]
    finally:
        conn.close()


def forget_table(settings: Settings, namespace: str, table: str) -> bool:
    """Remove a table's row from the catalog without reading its metadata (whose files
    may be gone: LocalStack's S3 forgets every object on restart, the catalog does not)."""
    creds = catalog_login(settings)
    conn = _connect(creds, settings.lake.catalog_database, settings.lake.catalog_database)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('iceberg_tables')")
            if cur.fetchone()[0] is None:
                return False
            cur.execute("DELETE FROM iceberg_tables WHERE catalog_name = %s AND "
                        "table_namespace = %s AND table_name = %s",
                        (settings.lake.catalog_name, namespace, table))
            return cur.rowcount > 0
    finally:
        conn.close()
