"""Step errors map to Step Functions error names; schedules are checked before EventBridge."""

from __future__ import annotations

import pymysql
import pytest

from pipeline.errors import ConfigError, QualityFailedError, ServiceUnavailableError
from pipeline.orchestration.schedule import check_expression
from pipeline.orchestration.steps import STEPS, error_name

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("exc", "name"), [
    (ServiceUnavailableError("LocalStack is gone", service="localstack"), "Shoplake.Transient"),
    (ConfigError("bad"), "Shoplake.Terminal"),
    (QualityFailedError("gold does not match"), "Shoplake.QualityFailed"),
    (pymysql.err.OperationalError(2003, "Can't connect"), "Shoplake.Transient"),
    (pymysql.err.OperationalError(1045, "Access denied"), "Shoplake.Terminal"),
    (KeyError("customer_id"), "States.TaskFailed"),
])
def test_errors_get_step_functions_names(exc: BaseException, name: str) -> None:
    error, cause = error_name(exc)
    assert error == name
    assert cause


def test_an_unexpected_error_carries_its_tracebacks_last_line() -> None:
    try:
        {}["customer_id"]
    except KeyError as exc:
        assert error_name(exc) == ("States.TaskFailed", "KeyError: 'customer_id'")


@pytest.mark.parametrize("expression", ["rate(1 minute)", "rate(5 minutes)", "rate(2 hours)",
                                        "cron(0 3 * * ? *)", "on-arrival"])
def test_schedules_eventbridge_accepts(expression: str) -> None:
    assert check_expression(expression) == expression


@pytest.mark.parametrize("expression", ["rate(1 minutes)", "rate(5 minute)", "every 5 min",
                                        "cron(0 3 * * *)", "rate(0 minutes)"])
def test_schedules_eventbridge_refuses(expression: str) -> None:
    with pytest.raises(ConfigError):
        check_expression(expression)


def test_the_registry_names_every_step_the_state_machine_uses() -> None:
    assert {"wait_for_cdc_sync", "replicate_now", "start_crawler", "get_crawler", "glue_job",
            "execute_statement", "describe_statement", "quality_and_reconcile",
            "check_arrivals", "write_run_report"} == set(STEPS)


@pytest.mark.parametrize("sql", ["DROP SCHEMA sales CASCADE", "CALL sales.sp_nope(:run_id)",
                                 "CALL sales.sp_load_fact_orders(); DROP TABLE x",
                                 "CALL sales.sp_load_fact_orders(:run_id)"])
def test_execute_statement_only_calls_a_load_procedure_with_its_run_id(sql: str) -> None:
    from pipeline.config import load_settings
    from pipeline.errors import TerminalError
    from pipeline.orchestration.steps import execute_statement
    from pipeline.progress import SilentProgress

    # The last one names :run_id but carries no Parameters: refused before any connection.
    with pytest.raises(TerminalError):
        execute_statement(load_settings(environ={}), {"Sql": sql}, SilentProgress())
