"""The warehouse's read-only role: what the dashboards (QuickSight's Redshift user) log in as.

Provisioning creates it with the password from the state folder and stores it in Secrets
Manager (`dashboards.secret_name`); dashboards read that secret, never the owner's. The role
may read every table and view of schema `sales`, and nothing else: it owns nothing, has no
privilege beyond SELECT, and its sessions are read-only by default, so even a procedure
(which runs with its caller's rights) cannot write through it.
"""

from __future__ import annotations

import logging

import psycopg2
from psycopg2 import sql

from pipeline.aws.secrets import reader_credentials
from pipeline.config import Secret, Settings
from pipeline.warehouse.errors import from_connect_error, from_psycopg
from pipeline.warehouse.load import Connection, session
from pipeline.warehouse.model import SCHEMA

LOG = logging.getLogger(__name__)


def grant_sql(role: str) -> sql.Composed:
    """SELECT on everything in `sales`, now and later (run after the DDL: a reset schema
    loses its grants)."""
    r, s = sql.Identifier(role), sql.Identifier(SCHEMA)
    return sql.SQL(
        "GRANT USAGE ON SCHEMA {s} TO {r}; GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}; "
        "ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT ON TABLES TO {r};").format(s=s, r=r)


def ensure_reader_role(settings: Settings, password: Secret) -> None:
    """Create (or bring up to date) the read-only role; idempotent."""
    role = settings.dashboards.reader_user
    r = sql.Identifier(role)
    with session(settings) as conn:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
                verb = "ALTER" if cur.fetchone() else "CREATE"
                cur.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                                    "NOREPLICATION PASSWORD {}").format(
                    r, sql.Literal(password.reveal())))
                cur.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on")
                            .format(r))
                cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                    sql.Identifier(settings.postgres.database), r))
                # Postgres before 15 lets every role create tables in `public`.
                cur.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
                cur.execute(grant_sql(role))
            conn.commit()
        except psycopg2.Error as exc:
            conn.rollback()
            raise from_psycopg(exc, f"creating the read-only role `{role}`") from exc
    LOG.info("read-only role %s ready", role)


def connect_reader(settings: Settings, application: str = "shoplake-dashboards") -> Connection:
    """A read-only session as the dashboards' role, in UTC, each statement cut off after
    `dashboards.query_timeout_s`."""
    creds = reader_credentials(settings)
    timeout_ms = int(settings.dashboards.query_timeout_s * 1000)
    try:
        conn = psycopg2.connect(host=creds.host, port=creds.port, user=creds.username,
                                password=creds.password.reveal(), dbname=creds.dbname,
                                connect_timeout=5, application_name=application,
                                options=f"-c timezone=UTC -c statement_timeout={timeout_ms} "
                                        "-c default_transaction_read_only=on")
    except psycopg2.Error as exc:
        raise from_connect_error(exc, creds.host, creds.port, creds.username,
                                 creds.secret_name) from exc
    conn.autocommit = True  # each panel's query its own transaction: one failure is one panel
    return conn
