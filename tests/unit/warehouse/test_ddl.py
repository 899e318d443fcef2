"""The committed DDL is the model's rendering; each engine gets only what it understands."""

from __future__ import annotations

import re

import pytest

from pipeline.warehouse import ddl
from pipeline.warehouse.model import (
    MERGES_FILE,
    POSTGRES_FILE,
    PROCEDURES,
    PROCEDURES_FILE,
    REDSHIFT_FILE,
    SCD2_DIMS,
    STAGING_COLUMNS,
    TABLES,
    Column,
    table,
)
from pipeline.warehouse.procedures import render_merges

pytestmark = pytest.mark.unit

REDSHIFT_ONLY = re.compile(r"\b(DISTSTYLE|DISTKEY|SORTKEY|ENCODE|IDENTITY\()", re.I)


def test_committed_files_equal_the_rendering_of_the_model() -> None:
    assert POSTGRES_FILE.read_text() == ddl.render_postgres(), \
        "run `python -m pipeline.warehouse.ddl` and commit pipeline/warehouse/sql/postgres.sql"
    assert REDSHIFT_FILE.read_text() == ddl.render_redshift(), \
        "run `python -m pipeline.warehouse.ddl` and commit pipeline/warehouse/sql/redshift.sql"
    assert MERGES_FILE.read_text() == render_merges(), \
        "run `python -m pipeline.warehouse.ddl` and commit pipeline/warehouse/sql/merges.sql"
    assert ddl.stale_files() == []
    assert ddl.main(["--check"]) == 0


def test_redshift_has_dist_sort_and_encode_and_postgres_has_none() -> None:
    redshift, postgres = ddl.render_redshift(), ddl.render_postgres()
    for keyword in ("DISTSTYLE", "DISTKEY (", "SORTKEY (", "ENCODE ", "IDENTITY(1,1)"):
        assert keyword in redshift
    assert not REDSHIFT_ONLY.search(postgres)
    assert "GENERATED ALWAYS AS IDENTITY" in postgres
    assert "CREATE INDEX" not in redshift  # Redshift has no indexes; sort keys do that job


@pytest.mark.parametrize("t", TABLES, ids=lambda t: t.name)
def test_every_table_appears_in_both_renderings(t) -> None:
    for rendered in (ddl.render_postgres(), ddl.render_redshift()):
        block = rendered.split(f"CREATE TABLE IF NOT EXISTS {t.qualified} (\n", 1)[1]
        body = block.split("\n)", 1)[0]
        assert [line.split()[0] for line in body.splitlines()][:-1] == list(t.column_names)
        assert f"PRIMARY KEY ({', '.join(t.primary_key)})" in body


def test_model_covers_staging_dims_and_facts() -> None:
    names = {t.name for t in TABLES}
    assert {"stg_customers", "stg_products", "stg_orders", "stg_order_items", "dim_customer",
            "dim_product", "dim_date", "fact_orders", "fact_order_items"} <= names
    assert set(STAGING_COLUMNS) == {"stg_customers", "stg_products", "stg_orders",
                                    "stg_order_items"}
    assert STAGING_COLUMNS["stg_order_items"] == ("order_item_id", "order_id", "product_id",
                                                  "quantity", "unit_price")


def test_redshift_types_and_encodings() -> None:
    dim = table("sales.dim_customer")
    rendered = ddl.render_redshift_table(dim)
    assert "customer_sk     BIGINT IDENTITY(1,1) ENCODE az64 NOT NULL" in rendered
    # The leading sort key column stays RAW; strings are sized in bytes (4 per character).
    assert "customer_id     INTEGER ENCODE raw NOT NULL" in rendered
    assert "name            VARCHAR(400) ENCODE zstd" in rendered
    assert "DISTSTYLE ALL\nCOMPOUND SORTKEY (customer_id, record_start_ts);" in rendered
    assert "DEFAULT '9999-12-31 00:00:00'" in rendered
    facts = ddl.render_redshift_table(table("fact_order_items"))
    assert "DISTSTYLE KEY\nDISTKEY (order_id)\nCOMPOUND SORTKEY (date_key, order_id);" in facts


def test_scd2_dims_get_a_partial_unique_index_on_current_rows_in_postgres() -> None:
    rendered = ddl.render_postgres_table(table("dim_product"))
    assert ("CREATE UNIQUE INDEX IF NOT EXISTS ux_dim_product_current ON sales.dim_product "
            "(product_id) WHERE is_current;") in rendered


def test_unknown_portable_types_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown portable type"):
        Column("x", "varchar(10)")


def test_procedures_file_defines_every_procedure_and_the_view() -> None:
    handwritten, scd2 = PROCEDURES_FILE.read_text(), MERGES_FILE.read_text()
    for name in PROCEDURES:
        assert f"CREATE OR REPLACE PROCEDURE sales.{name}(p_run_id text DEFAULT NULL,\n" \
            "    p_full boolean DEFAULT false)" in handwritten + scd2
        assert f"DROP PROCEDURE IF EXISTS sales.{name}(text);" in handwritten
        assert f"DROP PROCEDURE IF EXISTS sales.{name}();" in handwritten  # the old signature
    assert "CREATE OR REPLACE VIEW sales.v_sales_mart AS" in handwritten
    assert "CREATE TABLE" not in handwritten + scd2  # tables come from the model only
    assert "fn_customer_hash" not in handwritten.split("UPDATE", 1)[0]  # rendered, not copied


@pytest.mark.parametrize("dim", SCD2_DIMS, ids=lambda d: d.dim)
def test_each_scd2_merge_is_rendered_from_its_dimension(dim) -> None:
    text = render_merges()
    body = text.split(f"PROCEDURE sales.{dim.procedure}(", 1)[1].split("$$;", 1)[0]
    staging, model = table(dim.staging), table(dim.dim)
    for column in dim.attributes:  # every tracked attribute goes from staging to the version
        assert column.name in staging.column_names and column.name in model.column_names
        assert f"s.{column.name}" in body
    # Versions follow the binlog (change_seq), a new full load rebuilds, nothing is written
    # over a current version in place.
    assert "s.change_seq > d.change_seq" in body and "DELETE FROM sales." + dim.dim in body
    merge = body.split("INSERT INTO sales.procedure_state", 1)[0]  # before its bookkeeping
    assert "UPDATE SET" not in merge and f"attr_hash = {dim.hash_function}" not in merge
    assert {"change_seq", "commit_ts"} <= set(staging.column_names)
    assert {"change_seq", "generation"} <= set(model.column_names)
