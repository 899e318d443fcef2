"""Names and ARNs of the orchestration's resources, derived from Settings alone.

Depends on nothing else in the package, so runs, schedules and leases can name the state
machine without importing provisioning (which depends on the step registry): the import
graph goes provision -> steps, never back.
"""

from __future__ import annotations

from pipeline.config import Settings

FAILURE_RULE = "shoplake-run-failed"
"""EventBridge rule matching the state machine's RunFailed events."""


def role_arn(settings: Settings) -> str:
    o = settings.orchestration
    return f"arn:aws:iam::{o.account_id}:role/{o.role_name}"


def state_machine_arn(settings: Settings) -> str:
    o = settings.orchestration
    return (f"arn:aws:states:{settings.localstack.region}:{o.account_id}:stateMachine:"
            f"{o.state_machine}")


def activity_name(settings: Settings, step: str) -> str:
    return f"{settings.orchestration.activity_prefix}{step}"


RECENT_RUNS = 25
"""Executions read back from Step Functions on each report, so runs that ended without a
report (aborted, or their report failed) show their final status too."""
