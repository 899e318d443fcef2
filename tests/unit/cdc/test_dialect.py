"""Every MySQL-8-only path, made explicit: CI runs MariaDB only (no MySQL 8 server can be
installed here), so what compose's mysql:8.4 gets is checked statement by statement."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.cdc.dialect import Dialect
from pipeline.cdc.snapshot import open_snapshot
from pipeline.cdc.source import BinlogPosition, current_position
from pipeline.config import load_settings
from pipeline.stack.mariadb import bootstrap_statements

pytestmark = pytest.mark.unit

MYSQL_84 = "8.4.3"
MARIADB = "10.11.6-MariaDB-0+deb12u1"


class Recording:
    """Stands in for a PyMySQL connection: records statements, answers the few reads."""

    def __init__(self, version: str) -> None:
        self.version, self.executed = version, []

    def get_server_info(self) -> str:
        return self.version

    def cursor(self) -> Recording:
        return self

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, sql: str, args: object = None) -> None:
        dialect = Dialect.from_version(self.version)
        if sql == "SHOW MASTER STATUS" and not dialect.mariadb and dialect.version >= (8, 4, 0):
            raise AssertionError("MySQL 8.4 has no SHOW MASTER STATUS")
        self.executed.append(sql)

    def fetchone(self) -> tuple:
        return ("mysql-bin.000003", 4242)

    def fetchall(self) -> list:
        return [("Binlog_snapshot_file", "mysql-bin.000003"),
                ("Binlog_snapshot_position", "4242")]


@pytest.mark.parametrize(("text", "flavor", "version"), [
    ("8.4.3", "mysql", (8, 4, 3)), ("8.0.36-0ubuntu0.22.04.1", "mysql", (8, 0, 36)),
    (MARIADB, "mariadb", (10, 11, 6)), ("11.4.2-MariaDB", "mariadb", (11, 4, 2)),
    ("5.5.5-10.11.6-MariaDB", "mariadb", (5, 5, 5)),
])
def test_the_dialect_reads_the_server_version(text, flavor, version) -> None:
    assert Dialect.from_version(text) == Dialect(flavor, version)


def test_an_unreadable_version_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot read a server version"):
        Dialect.from_version("unknown")


@pytest.mark.parametrize(("version", "sql"), [
    (MYSQL_84, "SHOW BINARY LOG STATUS"), ("8.2.0", "SHOW BINARY LOG STATUS"),
    ("8.0.36", "SHOW MASTER STATUS"), (MARIADB, "SHOW MASTER STATUS"),
])
def test_the_binlog_position_uses_the_servers_statement(version, sql) -> None:
    conn = Recording(version)
    assert current_position(conn) == BinlogPosition("mysql-bin.000003", 4242)
    assert conn.executed == [sql]


def test_mysql_8_4_snapshot_locks_reads_the_position_and_unlocks() -> None:
    conn = Recording(MYSQL_84)
    assert open_snapshot(conn) == BinlogPosition("mysql-bin.000003", 4242)
    assert conn.executed == ["SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                             "FLUSH TABLES WITH READ LOCK",
                             "START TRANSACTION WITH CONSISTENT SNAPSHOT",
                             "SHOW BINARY LOG STATUS", "UNLOCK TABLES"]


def test_mariadb_snapshot_takes_no_lock() -> None:
    conn = Recording(MARIADB)
    assert open_snapshot(conn) == BinlogPosition("mysql-bin.000003", 4242)
    assert "FLUSH TABLES WITH READ LOCK" not in conn.executed
    assert conn.executed[-1] == "SHOW STATUS LIKE 'binlog_snapshot_%'"


def _bootstrap(version: str) -> list[str]:
    statements = bootstrap_statements(Dialect.from_version(version), load_settings(environ={}),
                                      root_pw="r", app_pw="a", cdc_pw="c")
    for sql, args in statements:
        # PyMySQL %-formats whenever args is not None: a GRANT's '%' must then be '%%'.
        if args is not None:
            assert sql.count("%s") == len(args), sql
            assert "'%'" in sql % tuple("x" for _ in args) or "@'localhost'" in sql
    return [sql for sql, _ in statements]


def test_mysql_8_4_logins_use_caching_sha2_and_the_cdc_login_may_lock() -> None:
    sql = _bootstrap(MYSQL_84)
    logins = [s for s in sql if s.startswith(("CREATE USER", "ALTER USER"))]
    assert len(logins) == 5  # root, app (create, alter), cdc (create, alter)
    assert all("IDENTIFIED WITH caching_sha2_password BY %s" in s for s in logins)
    assert any("COLLATE utf8mb4_0900_ai_ci" in s for s in sql)
    grant = next(s for s in sql if "REPLICATION SLAVE" in s)
    assert "RELOAD" in grant and "TO 'shoplake_cdc'@'%'" in grant  # FLUSH TABLES needs it
    assert "GRANT SELECT ON `shop`.* TO 'shoplake_cdc'@'%'" in sql


def test_mariadb_logins_keep_the_servers_default_plugin() -> None:
    sql = _bootstrap(MARIADB)
    assert not any("caching_sha2" in s for s in sql)
    assert any("COLLATE utf8mb4_unicode_ci" in s for s in sql)


def test_pymysql_can_complete_caching_sha2_over_plain_tcp() -> None:
    """MySQL 8.4's default plugin, without TLS: PyMySQL's RSA exchange needs cryptography."""
    import cryptography  # noqa: F401 - a declared dependency, for this
    from pymysql import _auth

    assert hasattr(_auth, "caching_sha2_password_auth") and hasattr(_auth, "sha2_rsa_encrypt")


def test_compose_runs_mysql_with_the_dialects_collation_and_the_binlog_cdc_needs() -> None:
    compose = yaml.safe_load((Path(__file__).resolve().parents[3] / "docker-compose.yml")
                             .read_text())
    command = compose["services"]["mysql"]["command"]
    assert compose["services"]["mysql"]["image"].startswith("mysql:8.4")
    assert f"--collation-server={Dialect('mysql', (8, 4, 0)).collation}" in command
    for flag in ("--binlog-format=ROW", "--binlog-row-image=FULL",
                 "--binlog-row-metadata=FULL", "--default-time-zone=+00:00"):
        assert flag in command
