"""Database credentials from Secrets Manager, in the JSON shape RDS and Redshift secrets use."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline.aws.clients import aws_client
from pipeline.aws.errors import translate
from pipeline.config import Secret, Settings
from pipeline.errors import SecretMismatchError, SecretNotFoundError


@dataclass(frozen=True)
class DbCredentials:
    """One database login, as read from a secret."""

    engine: str
    host: str
    port: int
    username: str
    password: Secret
    dbname: str
    secret_name: str = field(default="", compare=False)
    """The secret these came from (not part of its JSON), for messages."""
    service: str = field(default="", compare=False)
    """The stack's name for the server (`mariadb`, `mysql`, `postgres`), for messages."""

    def to_secret_json(self) -> dict[str, Any]:
        """The secret's JSON: RDS's keys (engine, host, port, username, password, dbname)."""
        return {"engine": self.engine, "host": self.host, "port": self.port,
                "username": self.username, "password": self.password.reveal(),
                "dbname": self.dbname}


def get_db_credentials(settings: Settings, secret_name: str) -> DbCredentials:
    """Read a database secret; raises SecretNotFoundError when it was never provisioned,
    and SecretMismatchError when it names another endpoint than the settings do."""
    data = secret_json(settings, secret_name)
    engine = data["engine"]
    # Natively MariaDB stands in for MySQL; `shoplake stack` knows it by that name.
    service = "mariadb" if engine == "mysql" and settings.mode == "native" else engine
    creds = DbCredentials(engine=engine, host=data["host"], port=int(data["port"]),
                          username=data["username"], password=Secret(data["password"]),
                          dbname=data["dbname"], secret_name=secret_name, service=service)
    _agree(settings, creds)
    return creds


def _expected(settings: Settings, secret_name: str) -> dict[str, tuple[str, object]]:
    """What the settings say a secret must hold: field -> (setting key, value)."""
    mysql, pg = settings.mysql, settings.postgres
    if secret_name in (mysql.secret_name, settings.cdc.secret_name):
        user = (("mysql.user", mysql.user) if secret_name == mysql.secret_name
                else ("cdc.user", settings.cdc.user))
        return {"host": ("mysql.host", mysql.host), "port": ("mysql.port", mysql.port),
                "username": user, "dbname": ("mysql.database", mysql.database)}
    if secret_name in (pg.secret_name, settings.dashboards.secret_name):
        user = (("postgres.user", pg.user) if secret_name == pg.secret_name
                else ("dashboards.reader_user", settings.dashboards.reader_user))
        return {"host": ("postgres.host", pg.host), "port": ("postgres.port", pg.port),
                "username": user, "dbname": ("postgres.database", pg.database)}
    return {}


def _agree(settings: Settings, creds: DbCredentials) -> None:
    """Components connect with what the secret holds (as on AWS); config show must not
    claim another endpoint. A difference means the stack was provisioned with other
    settings: refuse, rather than silently use one and show the other."""
    differ = []
    for attr, (key, want) in _expected(settings, creds.secret_name).items():
        have = getattr(creds, attr)
        if str(have) != str(want):
            differ.append((key, want, have, attr))
    if differ:
        raise SecretMismatchError(creds.secret_name, [
            (key, want, have, settings.sources.get(key, "default")) for key, want, have, _
            in differ])


def mysql_credentials(settings: Settings) -> DbCredentials:
    return get_db_credentials(settings, settings.mysql.secret_name)


def cdc_credentials(settings: Settings) -> DbCredentials:
    return get_db_credentials(settings, settings.cdc.secret_name)


def warehouse_credentials(settings: Settings) -> DbCredentials:
    return get_db_credentials(settings, settings.postgres.secret_name)


def reader_credentials(settings: Settings) -> DbCredentials:
    """The dashboards' read-only warehouse role."""
    return get_db_credentials(settings, settings.dashboards.secret_name)


def pii_salt(settings: Settings) -> str:
    """The salt PII is hashed with in silver (secret `shoplake/pii-salt`, JSON {"salt": ...})."""
    return secret_json(settings, settings.glue.pii_salt_secret)["salt"]


def secret_json(settings: Settings, secret_name: str) -> dict[str, Any]:
    """A secret's JSON value; typed errors when it is missing or Secrets Manager is down."""
    client = aws_client(settings, "secretsmanager")
    try:
        raw = client.get_secret_value(SecretId=secret_name)["SecretString"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            raise SecretNotFoundError(secret_name, settings.localstack.endpoint_url) from exc
        raise translate(exc, settings.localstack.endpoint_url, settings.localstack.port) from exc
    except BotoCoreError as exc:
        raise translate(exc, settings.localstack.endpoint_url, settings.localstack.port) from exc
    return json.loads(raw)
