"""The Glue Data Catalog through the Glue API (moto's server, a service of the stack)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.catalog.store import find_table, get_table, list_tables, put_table, table_versions
from pipeline.config import Settings
from pipeline.errors import TerminalError

pytestmark = pytest.mark.integration


def _entry(database: str, columns: list[tuple[str, str]], version: int) -> dict:
    return {"Name": "probe", "DatabaseName": database, "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "parquet", "schemaVersion": str(version)},
            "StorageDescriptor": {"Columns": [{"Name": n, "Type": t} for n, t in columns],
                                  "Location": "s3://somewhere/shop/probe/"},
            "PartitionKeys": []}


def test_tables_versions_and_catalog_show(stack_settings: Settings,
                                          cli_env: dict[str, str]) -> None:
    database = "probe_catalog"
    assert find_table(stack_settings, "probe", database) is None
    with pytest.raises(TerminalError, match="not in the Glue Data Catalog"):
        get_table(stack_settings, "probe", database)
    put_table(stack_settings, _entry(database, [("id", "bigint")], 1))
    put_table(stack_settings, _entry(database, [("id", "bigint"), ("x", "string")], 2))
    entry = get_table(stack_settings, "probe", database)
    assert [c["Name"] for c in entry["StorageDescriptor"]["Columns"]] == ["id", "x"]
    assert entry["Parameters"]["schemaVersion"] == "2"
    assert len(table_versions(stack_settings, "probe", database)) == 2
    assert [t["Name"] for t in list_tables(stack_settings, database)] == ["probe"]

    done = subprocess.run([sys.executable, "-m", "pipeline.cli.main", "catalog", "show",
                           "--database", database, "--format", "json"], env=cli_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [row] = json.loads(done.stdout)
    assert row == {"table": "probe", "schema_version": "2", "glue_versions": 2, "columns": 2,
                   "format": "parquet", "records": "", "location": "s3://somewhere/shop/probe/"}
