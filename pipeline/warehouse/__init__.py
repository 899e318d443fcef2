"""The Gold warehouse: PostgreSQL schema `sales` standing in for Amazon Redshift.

One model of the tables (`model.py`) renders both to Postgres DDL, which we run, and to
Redshift DDL (DISTKEY, SORTKEY, ENCODE, IDENTITY), which we commit to show what would run on
AWS (`ddl.py`). Staging tables are loaded by COPY (`load.py`), merged by stored procedures
into SCD2 dimensions and facts (`procedures.py` -> `sql/merges.sql`, and
`sql/procedures.sql`), change-only after the first load, and checked against the source
(`reconcile.py`).
"""

from __future__ import annotations

from pipeline.warehouse.load import (
    call,
    connect,
    copy_rows,
    load_staging,
    procedure_state,
    session,
    staging_state,
)
from pipeline.warehouse.model import PROCEDURES, SCHEMA, STAGING_COLUMNS
from pipeline.warehouse.reconcile import ReconcileReport, reconcile
from pipeline.warehouse.schema import apply_ddl

__all__ = ["PROCEDURES", "SCHEMA", "STAGING_COLUMNS", "ReconcileReport", "apply_ddl", "call",
           "connect", "copy_rows", "load_staging", "procedure_state",
           "reconcile", "session", "staging_state"]
