"""MariaDB standing in for RDS MySQL: binlog on, ROW format, FULL row image and metadata."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pymysql

from pipeline.cdc.dialect import Dialect
from pipeline.config import Settings
from pipeline.errors import ServiceStartError
from pipeline.stack.credentials import load_credentials
from pipeline.stack.service import NativeService, find_binary

SBIN = ["/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin"]


class MariaDBService(NativeService):
    name = "mariadb"
    section = "mysql"

    @property
    def socket(self) -> Path:
        return self.settings.state_dir / "run" / "mariadb.sock"

    def check_installed(self) -> None:
        find_binary("mariadbd", "mariadb-server", self.name, SBIN)
        find_binary("mariadb-install-db", "mariadb-server", self.name, SBIN)

    def prepare(self) -> None:
        if (self.data_dir / "mysql").is_dir():
            return
        staging = self.data_dir.with_name(self.data_dir.name + ".init")
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        cmd = [find_binary("mariadb-install-db", "mariadb-server", self.name, SBIN),
               "--no-defaults", f"--datadir={staging}", "--auth-root-authentication-method=normal",
               "--skip-test-db"]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise ServiceStartError("`mariadb-install-db` failed", service=self.name,
                                    log_tail=(done.stdout + done.stderr)[-2000:])
        # Only a complete data dir gets the real name, so a crash here just re-runs init.
        shutil.rmtree(self.data_dir, ignore_errors=True)
        staging.rename(self.data_dir)

    def command(self) -> list[str]:
        mysql = self.settings.mysql
        cmd = [
            find_binary("mariadbd", "mariadb-server", self.name, SBIN), "--no-defaults",
            f"--datadir={self.data_dir}", f"--socket={self.socket}", f"--port={self.port}",
            "--bind-address=127.0.0.1", "--skip-name-resolve",
            f"--pid-file={self.settings.state_dir / 'run' / 'mariadbd.pid'}",
            f"--log-bin={self.data_dir / 'binlog'}", "--binlog-format=ROW",
            "--binlog-row-image=FULL", "--binlog-row-metadata=FULL",
            f"--server-id={mysql.server_id}", "--binlog-expire-logs-seconds=604800",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
            "--default-time-zone=+00:00", "--innodb-buffer-pool-size=256M",
        ]
        if os.geteuid() == 0:
            cmd.append("--user=root")
        return cmd

    def env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TZ": "UTC"}

    # -- probing and bootstrapping ------------------------------------------------------
    def _connect_root(self) -> pymysql.connections.Connection:
        """Root over the unix socket: with its password, or with none before bootstrap."""
        password = load_credentials(self.settings).mysql_root.reveal()
        # Natively root is socket-only; the compose image gives root a TCP login.
        where = ({"host": self.host, "port": self.port} if self.settings.mode == "compose"
                 else {"unix_socket": str(self.socket)})
        try:
            return pymysql.connect(user="root", password=password, connect_timeout=2,
                                   autocommit=True, **where)
        except pymysql.err.OperationalError as exc:
            if exc.args[0] != 1045:  # not "access denied": the server is not answering
                raise
            return pymysql.connect(user="root", password="", connect_timeout=2,
                                   autocommit=True, **where)

    def healthy(self) -> bool:
        try:
            with self._connect_root() as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone() == (1,)
        except (pymysql.err.MySQLError, OSError):
            return False

    def bootstrap(self) -> None:
        creds = load_credentials(self.settings)
        # Natively and in compose alike (there `stack up` in the driver container runs
        # this as root over TCP): the compose image makes only root and the app user.
        with self._connect_root() as conn, conn.cursor() as cur:
            for statement, args in bootstrap_statements(
                    Dialect.of(conn), self.settings, root_pw=creds.mysql_root.reveal(),
                    app_pw=creds.mysql_app.reveal(), cdc_pw=creds.mysql_cdc.reveal()):
                cur.execute(statement, args)


def bootstrap_statements(dialect: Dialect, settings: Settings, *, root_pw: str, app_pw: str,
                         cdc_pw: str) -> list[tuple[str, tuple[str, ...] | None]]:
    """What bootstrapping the source runs, in order (statement, parameters): root's
    password, the `shop` database, the application login (all of `shop`) and the CDC login
    (the binlog, the snapshot's lock, read-only `shop`), each for `dialect`."""
    mysql, cdc_user = settings.mysql, settings.cdc.user
    # None, not (), where nothing is passed: PyMySQL %-formats whenever args is not None,
    # and `'%'` in a GRANT is no placeholder.
    out: list[tuple[str, tuple[str, ...] | None]] = [
        (f"ALTER USER 'root'@'localhost' {dialect.auth_clause} %s", (root_pw,)),
        (f"CREATE DATABASE IF NOT EXISTS `{mysql.database}` "
         f"CHARACTER SET utf8mb4 COLLATE {dialect.collation}", None),
    ]
    out += [(sql, (app_pw,)) for sql in dialect.login_statements(mysql.user)]
    out.append((f"GRANT ALL PRIVILEGES ON `{mysql.database}`.* TO '{mysql.user}'@'%'", None))
    out += [(sql, (cdc_pw,)) for sql in dialect.login_statements(cdc_user)]
    out += [(sql, None) for sql in dialect.cdc_grants(cdc_user, mysql.database)]
    return out
