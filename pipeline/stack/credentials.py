"""Database passwords, generated at first start and kept in the state folder (never the repo).

Only the stack itself reads these files: it needs them to bootstrap the databases and to
write them into Secrets Manager. Every other component reads the secrets from there.
In compose mode the same files live on a shared volume and the mysql and postgres images
read them through their `*_PASSWORD_FILE` variables.
"""

from __future__ import annotations

import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Secret, Settings

# Names of the files under <state>/credentials/, one password each.
MYSQL_ROOT = "mysql_root_password"
MYSQL_APP = "mysql_password"
MYSQL_CDC = "mysql_cdc_password"
POSTGRES = "postgres_password"
PII_SALT = "pii_salt"
DASHBOARDS = "dashboards_password"
"""The warehouse's read-only role the dashboards log in as."""
ALL = (MYSQL_ROOT, MYSQL_APP, MYSQL_CDC, POSTGRES, PII_SALT, DASHBOARDS)
MYSQL_ROOT_CNF = "mysql_root.cnf"
"""The root password again, as a MySQL client option file (for the compose healthcheck)."""

_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Credentials:
    mysql_root: Secret
    mysql_app: Secret
    mysql_cdc: Secret
    postgres: Secret
    pii_salt: Secret
    dashboards: Secret


def credentials_dir(settings: Settings) -> Path:
    return settings.state_dir / "credentials"


def ensure_credentials(settings: Settings) -> Credentials:
    """Generate any missing password file (idempotent) and return them all."""
    folder = credentials_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    # Containers read these as their own non-root users; on a laptop only we may read them.
    mode = 0o644 if settings.mode == "compose" else 0o600
    for name in ALL:
        path = folder / name
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w") as fh:
                fh.write("".join(secrets.choice(_ALPHABET) for _ in range(24)))
            tmp.replace(path)
        path.chmod(mode)
    # The same root password as a client option file, for healthchecks: `mysqladmin
    # --defaults-extra-file=...` reads it from there, never from its command line (which
    # every user of the machine can read in `ps`).
    cnf = folder / MYSQL_ROOT_CNF
    wanted = f"[client]\nuser=root\npassword={(folder / MYSQL_ROOT).read_text().strip()}\n"
    if not cnf.exists() or cnf.read_text() != wanted:
        fd = os.open(cnf.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(wanted)
        cnf.with_suffix(".tmp").replace(cnf)
    cnf.chmod(mode)
    return load_credentials(settings)


def load_credentials(settings: Settings) -> Credentials:
    folder = credentials_dir(settings)
    read = {name: Secret((folder / name).read_text().strip()) for name in ALL}
    return Credentials(read[MYSQL_ROOT], read[MYSQL_APP], read[MYSQL_CDC], read[POSTGRES],
                       read[PII_SALT], read[DASHBOARDS])
