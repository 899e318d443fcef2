"""PostgreSQL standing in for Redshift: initdb + postgres, as a non-root OS user under root."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg2
from psycopg2 import sql

from pipeline.errors import ServiceStartError, TerminalError
from pipeline.stack.credentials import load_credentials
from pipeline.stack.service import NativeService, find_binary


class PostgresService(NativeService):
    name = "postgres"
    section = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown; SIGTERM would wait for clients to leave

    @property
    def socket_dir(self) -> Path:
        return self.settings.state_dir / "run" / "postgres"

    def _bin_dirs(self) -> list[str]:
        if self.settings.postgres.bin_dir:
            return [self.settings.postgres.bin_dir]
        # Debian keeps the server binaries off PATH, one folder per major version.
        return sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                      key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                      else 0, reverse=True)

    def _binary(self, name: str) -> str:
        return find_binary(name, "postgresql", self.name, self._bin_dirs())

    def check_installed(self) -> None:
        self._binary("initdb")
        self._binary("postgres")
        self.run_as()

    def run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        user = self.settings.postgres.os_user
        try:
            pwd.getpwnam(user)
        except KeyError as exc:
            raise TerminalError(
                f"initdb refuses to run as root and the OS user `{user}` does not exist",
                hint=f"create it with `useradd --system {user}` or set SHOPLAKE_POSTGRES_OS_USER",
            ) from exc
        return user

    def _chown(self, path: Path) -> None:
        user = self.run_as()
        if user:
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def prepare(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.socket_dir)
        if (self.data_dir / "PG_VERSION").exists():
            return
        staging = self.data_dir.with_name(self.data_dir.name + ".init")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        self._chown(staging)
        self._check_reachable(staging)
        pwfile = staging.parent / ".postgres-pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(load_credentials(self.settings).postgres.reveal())
        self._chown(pwfile)
        try:
            done = subprocess.run(
                [self._binary("initdb"), "-D", str(staging), "-U", self.settings.postgres.user,
                 f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale"],
                capture_output=True, text=True, user=self.run_as(), env=self.env())
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise ServiceStartError("`initdb` failed", service=self.name,
                                    log_tail=(done.stdout + done.stderr)[-2000:])
        # Only a complete cluster gets the real name, so a crash here just re-runs initdb.
        shutil.rmtree(self.data_dir, ignore_errors=True)
        staging.rename(self.data_dir)

    def _check_reachable(self, folder: Path) -> None:
        user = self.run_as()
        if user is None:
            return
        probe = subprocess.run(["test", "-w", str(folder)], user=user)
        if probe.returncode != 0:
            raise TerminalError(
                f"the OS user `{user}` cannot write `{folder}`",
                hint="make every parent folder of the state dir world-executable (chmod o+x) "
                     "or set SHOPLAKE_STACK_STATE_DIR to such a folder",
            )

    def command(self) -> list[str]:
        return [self._binary("postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-k", str(self.socket_dir), "-c", "listen_addresses=127.0.0.1",
                "-c", "timezone=UTC", "-c", "log_timezone=UTC"]

    def env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TZ": "UTC", "LANG": "C.UTF-8"}

    def _connect(self, dbname: str = "postgres"):  # noqa: ANN202 - psycopg2 connection
        pg = self.settings.postgres
        return psycopg2.connect(host=pg.host, port=pg.port, user=pg.user, dbname=dbname,
                                password=load_credentials(self.settings).postgres.reveal(),
                                connect_timeout=2)

    def healthy(self) -> bool:
        try:
            conn = self._connect()
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                    return cur.fetchone() == (1,)
            finally:
                conn.close()
        except (psycopg2.Error, OSError):
            return False

    def bootstrap(self) -> None:
        pg = self.settings.postgres
        conn = self._connect()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (pg.database,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(pg.database)))
        finally:
            conn.close()
