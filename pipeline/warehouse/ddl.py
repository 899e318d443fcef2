"""Render the model to Postgres DDL (what runs here) and Redshift DDL (what would run on AWS).

`python -m pipeline.warehouse.ddl` rewrites `pipeline/warehouse/sql/postgres.sql`,
`pipeline/warehouse/sql/redshift.sql` and the SCD2 procedures `pipeline/warehouse/sql/merges.sql`;
`--check` only reports whether they drifted from the model (a unit test does the same). Every
rendering is idempotent (IF NOT EXISTS, CREATE OR REPLACE).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.warehouse.model import (
    MERGES_FILE,
    POSTGRES_FILE,
    REDSHIFT_FILE,
    SCHEMA,
    SQL_DIR,
    TABLES,
    Column,
    Table,
)

HEADER = ("-- Generated from pipeline/warehouse/model.py by `python -m pipeline.warehouse.ddl`;\n"
          "-- edit the model, not this file (a unit test fails when they drift).\n")

_PARAM = re.compile(r"^(\w+)(?:\((\d+)(?:,(\d+))?\))?$")
_REDSHIFT_VARCHAR_MAX = 65535


def _split(type_: str) -> tuple[str, list[int]]:
    match = _PARAM.match(type_)
    if not match:
        raise ValueError(f"unknown portable type `{type_}`")
    return match.group(1), [int(g) for g in match.groups()[1:] if g is not None]


def postgres_type(column: Column) -> str:
    kind, args = _split(column.type)
    if kind in ("string", "ascii"):
        return "text"  # Postgres stores text and varchar alike; lengths only bite on Redshift
    if kind == "numeric":
        return f"numeric({args[0]},{args[1]})"
    return {"int": "integer"}.get(kind, kind)


def redshift_type(column: Column) -> str:
    kind, args = _split(column.type)
    if kind == "string":
        # Redshift counts VARCHAR length in bytes; a UTF-8 character takes up to 4.
        return f"VARCHAR({min(args[0] * 4, _REDSHIFT_VARCHAR_MAX)})"
    if kind == "ascii":
        return f"VARCHAR({args[0]})"
    if kind == "numeric":
        return f"DECIMAL({args[0]},{args[1]})"
    return {"int": "INTEGER"}.get(kind, kind.upper())


def _comment(t: Table) -> str:
    return f"COMMENT ON TABLE {t.qualified} IS '{t.doc.replace(chr(39), chr(39) * 2)}';\n"


def _body(t: Table, lines: list[str]) -> str:
    return (f"CREATE TABLE IF NOT EXISTS {t.qualified} (\n    "
            + ",\n    ".join([*lines, f"PRIMARY KEY ({', '.join(t.primary_key)})"]) + "\n)")


def render_postgres_table(t: Table) -> str:
    width = max(len(c.name) for c in t.columns)
    lines = []
    for c in t.columns:
        parts = [f"{c.name:<{width}}", postgres_type(c)]
        if c.identity:
            parts.append("GENERATED ALWAYS AS IDENTITY")
        if c.default is not None:
            parts.append(f"DEFAULT {c.default}")
        if not c.nullable:
            parts.append("NOT NULL")
        lines.append(" ".join(parts))
    out = _body(t, lines) + ";\n" + _comment(t)
    for ix in t.indexes:
        unique = "UNIQUE " if ix.unique else ""
        where = f" WHERE {ix.where}" if ix.where else ""
        out += (f"CREATE {unique}INDEX IF NOT EXISTS {ix.name} ON {t.qualified} "
                f"({', '.join(ix.columns)}){where};\n")
    return out


def render_redshift_table(t: Table) -> str:
    width = max(len(c.name) for c in t.columns)
    lines = []
    for c in t.columns:
        # Redshift's grammar: attributes (DEFAULT, IDENTITY, ENCODE) before constraints.
        parts = [f"{c.name:<{width}}", redshift_type(c)]
        if c.default is not None:
            parts.append(f"DEFAULT {c.default}")
        if c.identity:
            parts.append("IDENTITY(1,1)")
        parts.append(f"ENCODE {t.encoding(c)}")
        if not c.nullable:
            parts.append("NOT NULL")
        lines.append(" ".join(parts))
    attributes = [f"DISTSTYLE {t.diststyle}"]
    if t.distkey:
        attributes.append(f"DISTKEY ({t.distkey})")
    if t.sortkey:
        attributes.append(f"COMPOUND SORTKEY ({', '.join(t.sortkey)})")
    return _body(t, lines) + "\n" + "\n".join(attributes) + ";\n" + _comment(t)


def _render(tables: Sequence[Table], render_table: Callable[[Table], str], note: str) -> str:
    parts = [HEADER + note, f"CREATE SCHEMA IF NOT EXISTS {SCHEMA};\n"]
    parts += [render_table(t) for t in tables]
    return "\n".join(parts)


def render_postgres(tables: Sequence[Table] = TABLES) -> str:
    """DDL of the stand-in: no DIST/SORT/ENCODE; identity columns and indexes instead."""
    return _render(tables, render_postgres_table,
                   "-- PostgreSQL 15 (the Redshift stand-in). Procedures: procedures.sql.\n")


def render_redshift(tables: Sequence[Table] = TABLES) -> str:
    """DDL for Amazon Redshift: DISTSTYLE/DISTKEY, compound SORTKEY, ENCODE, IDENTITY."""
    return _render(tables, render_redshift_table,
                   "-- Amazon Redshift. Not executed by shoplake; kept to show the AWS shape.\n")


def rendered_files() -> dict[Path, str]:
    from pipeline.warehouse.procedures import render_merges

    return {POSTGRES_FILE: render_postgres(), REDSHIFT_FILE: render_redshift(),
            MERGES_FILE: render_merges()}


def stale_files() -> list[Path]:
    """Committed files whose content differs from the model's rendering."""
    return [path for path, text in rendered_files().items()
            if not path.exists() or path.read_text() != text]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.warehouse.ddl",
                                     description="Render the warehouse model to SQL files.")
    parser.add_argument("--check", action="store_true",
                        help="Exit 1 if the committed files differ from the model.")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"{path} is out of date: run `python -m pipeline.warehouse.ddl`",
                  file=sys.stderr)
        return 1 if stale else 0
    SQL_DIR.mkdir(exist_ok=True)
    for path, text in rendered_files().items():
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
