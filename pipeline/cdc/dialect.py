"""What differs between the two servers the source runs on: MariaDB natively, MySQL 8.4 in
compose (the real `mysql:8.4` image, which no machine here can run, so CI only ever sees
MariaDB). Every statement that depends on the server is chosen here, from its version
string, so each MySQL-only path is explicit and unit-tested (tests/unit/cdc/test_dialect.py).

From MySQL 8.4's reference manual:
- `SHOW MASTER STATUS` is removed in 8.4 (deprecated in 8.2): `SHOW BINARY LOG STATUS`.
- A consistent snapshot with its binlog position: `FLUSH TABLES WITH READ LOCK` (needs the
  RELOAD privilege), `START TRANSACTION WITH CONSISTENT SNAPSHOT`, the binlog status,
  `UNLOCK TABLES`. MariaDB gives the snapshot's position without a lock
  (`binlog_snapshot_file/position`).
- `caching_sha2_password` is the default authentication plugin, and
  `mysql_native_password` is disabled by default in 8.4: logins are created with
  caching_sha2_password; PyMySQL completes its full authentication over plain TCP through
  an RSA key exchange, which needs the `cryptography` package (a dependency).
- `utf8mb4_0900_ai_ci` is 8.0's default collation; MariaDB 10.11 has no 0900 collations
  (its nearest is utf8mb4_unicode_ci).
- Replication privileges: REPLICATION SLAVE (still accepted in 8.4 beside its newer name
  REPLICATION REPLICA), REPLICATION CLIENT, and RELOAD for the snapshot's lock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pymysql


@dataclass(frozen=True)
class Dialect:
    """The source server's flavour and version, and the statements that depend on them."""

    flavor: str
    """`mariadb` or `mysql`."""
    version: tuple[int, int, int]

    @classmethod
    def from_version(cls, text: str) -> Dialect:
        """From `SELECT VERSION()` / the handshake: `8.4.3`, `10.11.6-MariaDB-0+deb12u1`."""
        match = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
        if not match:
            raise ValueError(f"cannot read a server version from `{text}`")
        flavor = "mariadb" if "mariadb" in text.lower() else "mysql"
        return cls(flavor, tuple(int(g) for g in match.groups()))  # type: ignore[arg-type]

    @classmethod
    def of(cls, conn: pymysql.connections.Connection) -> Dialect:
        return cls.from_version(conn.get_server_info())

    @property
    def mariadb(self) -> bool:
        return self.flavor == "mariadb"

    @property
    def binlog_status_sql(self) -> str:
        """Where the binlog ends now: file and position in its first two columns."""
        if not self.mariadb and self.version >= (8, 2, 0):
            return "SHOW BINARY LOG STATUS"
        return "SHOW MASTER STATUS"

    @property
    def snapshot_locks(self) -> bool:
        """Whether opening a consistent snapshot with its binlog position needs a global
        read lock for a moment (MySQL), or reads the position from the snapshot (MariaDB)."""
        return not self.mariadb

    @property
    def collation(self) -> str:
        """The `shop` database's collation."""
        return "utf8mb4_unicode_ci" if self.mariadb else "utf8mb4_0900_ai_ci"

    @property
    def auth_clause(self) -> str:
        """How a login's password is given in CREATE/ALTER USER (before `BY %s`)."""
        return "IDENTIFIED BY" if self.mariadb else "IDENTIFIED WITH caching_sha2_password BY"

    def cdc_grants(self, user: str, database: str) -> list[str]:
        """The DMS stand-in's login: read the binlog, lock for the snapshot, read `database`."""
        return [f"GRANT REPLICATION SLAVE, REPLICATION CLIENT, RELOAD ON *.* TO '{user}'@'%'",
                f"GRANT SELECT ON `{database}`.* TO '{user}'@'%'"]

    def login_statements(self, user: str) -> list[str]:
        """Create or update login `user`@'%' (its password as the one `%s` parameter)."""
        return [f"CREATE USER IF NOT EXISTS '{user}'@'%%' {self.auth_clause} %s",
                f"ALTER USER '{user}'@'%%' {self.auth_clause} %s"]
