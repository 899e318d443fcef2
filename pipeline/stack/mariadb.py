"""MariaDB standing in for RDS MySQL: binlog on, ROW format, FULL row image and metadata."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pymysql

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
        mysql = self.settings.mysql
        app_pw = creds.mysql_app.reveal()
        with self._connect_root() as conn, conn.cursor() as cur:
            cur.execute("ALTER USER 'root'@'localhost' IDENTIFIED BY %s",
                        (creds.mysql_root.reveal(),))
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{mysql.database}` "
                        "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            cur.execute(f"CREATE USER IF NOT EXISTS '{mysql.user}'@'%%' IDENTIFIED BY %s",
                        (app_pw,))
            cur.execute(f"ALTER USER '{mysql.user}'@'%%' IDENTIFIED BY %s", (app_pw,))
            cur.execute(f"GRANT ALL PRIVILEGES ON `{mysql.database}`.* TO '{mysql.user}'@'%'")
            # The DMS stand-in's login: read the binlog and the source tables, nothing more.
            cdc_user, cdc_pw = self.settings.cdc.user, creds.mysql_cdc.reveal()
            cur.execute(f"CREATE USER IF NOT EXISTS '{cdc_user}'@'%%' IDENTIFIED BY %s",
                        (cdc_pw,))
            cur.execute(f"ALTER USER '{cdc_user}'@'%%' IDENTIFIED BY %s", (cdc_pw,))
            cur.execute(f"GRANT REPLICATION SLAVE, REPLICATION CLIENT, RELOAD ON *.* "
                        f"TO '{cdc_user}'@'%'")
            cur.execute(f"GRANT SELECT ON `{mysql.database}`.* TO '{cdc_user}'@'%'")
