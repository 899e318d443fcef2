"""Glue-style job arguments: parsing `--KEY value` and the defaults the pipeline passes."""

from __future__ import annotations

import pytest

from pipeline.config import load_settings
from pipeline.errors import ConfigError
from pipeline.glue.jobs import default_args, parse_glue_args

pytestmark = pytest.mark.unit


def test_key_value_pairs() -> None:
    got = parse_glue_args(["--JOB_NAME", "bronze_to_silver", "--table", "orders"])
    assert got == {"JOB_NAME": "bronze_to_silver", "table": "orders"}


def test_key_equals_value() -> None:
    got = parse_glue_args(["--table=orders", "--filter=a=b", "--empty="])
    assert got == {"table": "orders", "filter": "a=b", "empty": ""}


def test_a_bare_flag_is_true() -> None:
    assert parse_glue_args(["--reset-bookmark"]) == {"reset-bookmark": "true"}


def test_a_flag_before_another_key_is_true() -> None:
    got = parse_glue_args(["--reset-bookmark", "--table", "orders", "--debug"])
    assert got == {"reset-bookmark": "true", "table": "orders", "debug": "true"}


def test_a_value_may_look_like_a_short_option() -> None:
    assert parse_glue_args(["--offset", "-1"]) == {"offset": "-1"}


def test_a_repeated_key_keeps_the_last_value() -> None:
    assert parse_glue_args(["--table", "orders", "--table", "customers"]) == {
        "table": "customers"}


def test_no_arguments() -> None:
    assert parse_glue_args([]) == {}


@pytest.mark.parametrize("argv", [["orders"], ["--table", "orders", "customers"]])
def test_a_stray_positional_is_a_config_error(argv: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_glue_args(argv)
    assert info.value.message == f"unexpected job argument `{argv[-1]}`; use `--KEY value`"


def test_default_args_come_from_settings() -> None:
    settings = load_settings(environ={})
    assert default_args(settings, "bronze_to_silver", "orders") == {
        "JOB_NAME": "bronze_to_silver",
        "bronze_path": "s3a://shoplake-bronze/shop",
        "silver_path": "s3a://shoplake-silver/shop",
        "catalog_database": "shop_bronze",
        "table": "orders",
    }


def test_default_args_without_a_table_have_no_table() -> None:
    settings = load_settings(environ={})
    assert default_args(settings, "load_fact_orders", None) == {
        "JOB_NAME": "load_fact_orders",
        "bronze_path": "s3a://shoplake-bronze/shop",
        "silver_path": "s3a://shoplake-silver/shop",
        "catalog_database": "shop_bronze",
    }


def test_default_args_follow_the_environment() -> None:
    settings = load_settings(environ={"SHOPLAKE_LAKE_BRONZE_BUCKET": "raw",
                                      "SHOPLAKE_LAKE_SILVER_BUCKET": "clean",
                                      "SHOPLAKE_MYSQL_DATABASE": "oltp",
                                      "SHOPLAKE_GLUE_DATABASE": "oltp_bronze"})
    assert default_args(settings, "bronze_to_silver", "orders") == {
        "JOB_NAME": "bronze_to_silver",
        "bronze_path": "s3a://raw/oltp",
        "silver_path": "s3a://clean/oltp",
        "catalog_database": "oltp_bronze",
        "table": "orders",
    }


def test_default_args_round_trip_through_the_command_line() -> None:
    args = default_args(load_settings(environ={}), "bronze_to_silver", "orders")
    argv = [token for key, value in args.items() for token in (f"--{key}", value)]
    assert parse_glue_args(argv) == args


def test_the_load_jobs_share_one_script_that_their_name_configures() -> None:
    from pipeline.errors import ConfigError
    from pipeline.glue.jobs import JOBS, JobContext
    from pipeline.warehouse.model import LOADS, STAGING_COLUMNS
    from spark_jobs import load_gold

    assert {JOBS[load.job] for load in LOADS} == {"spark_jobs.load_gold"}
    assert all(s in STAGING_COLUMNS and s in load_gold.STAGING for load in LOADS
               for s in load.staging)
    ctx = JobContext(load_settings(environ={}), None, "load_dim_nothing", {})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="load_dim_nothing.*load_dim_customer"):
        load_gold.run(ctx)


def test_each_load_job_stages_every_staging_table_its_procedure_reads() -> None:
    """Run on its own (`shoplake job run load_fact_order_items`), a load job must bring
    every staging table its procedure reads up to silver, or it merges from a stale one."""
    import re

    from pipeline.warehouse.model import LOADS, MERGES_FILE

    sql = MERGES_FILE.read_text()
    for load in LOADS:
        start = sql.index(f"CREATE OR REPLACE PROCEDURE sales.{load.procedure}(")
        body = sql[start:sql.index("\n$$;", start)]
        # Tables it reads (`sales.stg_x`); `staging = 'stg_customers'` names a dimension's
        # staged keys, which the dimension's own load writes before the facts run.
        read = set(re.findall(r"\bsales\.(stg_[a-z_]+)\b", body))
        assert read and read <= set(load.staging), (load.job, sorted(read - set(load.staging)))


def test_one_rendering_of_the_lake_arguments_for_both_bindings_and_a_hand_run() -> None:
    """A changed bucket reaches every Glue job the state machine starts, in both bindings,
    and a job run by hand, from the one function; settings_for reads it back."""
    from pipeline.glue.arguments import as_glue, lake_arguments
    from pipeline.glue.jobs import settings_for
    from pipeline.orchestration import asl

    settings = load_settings(environ={"SHOPLAKE_LAKE_BRONZE_BUCKET": "elsewhere-bronze"})
    expected = lake_arguments(settings)
    assert expected["bronze_path"] == "s3a://elsewhere-bronze/shop"
    for target in asl.TARGETS:
        spark_jobs = [state["Parameters"] for _, _, state, _ in
                      asl._walk(asl.render(settings, target)["States"])
                      if (state.get("Parameters") or {}).get("JobName") in (
                          "bronze_to_silver", "maintain_silver")]
        assert len(spark_jobs) == 2, target
        for job in spark_jobs:
            assert as_glue(expected).items() <= job["Arguments"].items(), (target, job)
    hand = default_args(settings, "bronze_to_silver", "orders")
    assert {k: v for k, v in hand.items() if k in expected} == expected
    assert settings_for(settings, hand).lake.bronze_bucket == "elsewhere-bronze"
