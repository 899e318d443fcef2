"""The schedule that starts runs: an EventBridge rule whose target is the state machine.

`rate(5 minutes)` or `cron(0 3 * * ? *)`: a rule with that ScheduleExpression (the
EventBridge Scheduler API accepts schedules on LocalStack but never fires them: rules do).
`on-arrival`: the bronze bucket sends its events to EventBridge, and a rule on "Object
Created" under the schema's prefix starts a run for every file; each run first waits
`orchestration.arrival_debounce_s` (so a burst gives one run: the Guard ends the others)
and, before it ends, goes round again while files keep arriving, so the last file's rows
reach gold without another trigger.

LocalStack forgets rules when it restarts: the schedule is kept in `<state>/schedule.json`
and `stack up` applies it again.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from botocore.exceptions import ClientError

from pipeline.aws.clients import aws_client
from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.orchestration import asl
from pipeline.orchestration.provision import role_arn, state_machine_arn

LOG = logging.getLogger(__name__)

SCHEDULE_RULE = "shoplake-schedule"
ARRIVAL_RULE = "shoplake-on-arrival"
ON_ARRIVAL = "on-arrival"
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((\S+\s+){5}\S+\)$")


def check_expression(expression: str) -> str:
    """The expression, normalised; ConfigError for anything EventBridge would refuse."""
    expression = " ".join(expression.split())
    if expression == ON_ARRIVAL:
        return expression
    rate = _RATE.match(expression)
    if rate:
        n, unit = int(rate.group(1)), rate.group(2)
        if n < 1 or (n == 1) != (not unit.endswith("s")):
            raise ConfigError(f"`{expression}`: EventBridge wants `rate(1 minute)` or "
                              f"`rate({max(n, 2)} minutes)` (singular for 1)")
        return expression
    if _CRON.match(expression):
        return expression
    raise ConfigError(f"`{expression}` is not a schedule",
                      hint="use `rate(5 minutes)`, `cron(0 3 * * ? *)` (six fields, as "
                           "EventBridge) or `on-arrival`")


def _file(settings: Settings):  # noqa: ANN202 - Path
    return settings.state_dir / "schedule.json"


def stored(settings: Settings) -> str | None:
    """The schedule set with `shoplake schedule`; else the setting's; None for none."""
    try:
        data = json.loads(_file(settings).read_text())
        return data.get("expression") or None
    except (OSError, ValueError):
        return settings.orchestration.schedule or None


def set_schedule(settings: Settings, expression: str | None) -> str | None:
    """Store and apply a schedule (None: off)."""
    expression = check_expression(expression) if expression else None
    path = _file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"expression": expression}))
    apply(settings)
    return expression


def apply(settings: Settings) -> str | None:
    """Make EventBridge hold exactly the stored schedule (idempotent; `stack up` calls it)."""
    expression = stored(settings)
    _remove(settings, SCHEDULE_RULE)
    _remove(settings, ARRIVAL_RULE)
    _bucket_events(settings, on=expression == ON_ARRIVAL)
    if expression is None:
        return None
    events = aws_client(settings, "events")
    target: dict[str, Any] = {"Id": "state-machine", "Arn": state_machine_arn(settings),
                              "RoleArn": role_arn(settings)}
    if expression == ON_ARRIVAL:
        bucket, schema = settings.lake.bronze_bucket, settings.mysql.database
        events.put_rule(Name=ARRIVAL_RULE, State="ENABLED", EventPattern=json.dumps({
            "source": ["aws.s3"], "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": [bucket]},
                       "object": {"key": [{"prefix": f"{schema}/"}]}}}),
            Description="A CDC file landed in bronze: start a run")
        target["Input"] = json.dumps(asl.execution_input(
            "arrival", settings.orchestration.arrival_debounce_s))
        events.put_targets(Rule=ARRIVAL_RULE, Targets=[target])
    else:
        events.put_rule(Name=SCHEDULE_RULE, ScheduleExpression=expression, State="ENABLED",
                        Description="Start a pipeline run")
        target["Input"] = json.dumps(asl.execution_input("schedule"))
        events.put_targets(Rule=SCHEDULE_RULE, Targets=[target])
    LOG.info("schedule: %s", expression)
    return expression


def _remove(settings: Settings, rule: str) -> None:
    events = aws_client(settings, "events")
    try:
        targets = events.list_targets_by_rule(Rule=rule)["Targets"]
        if targets:
            events.remove_targets(Rule=rule, Ids=[t["Id"] for t in targets])
        events.delete_rule(Name=rule)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise


def _bucket_events(settings: Settings, on: bool) -> None:
    s3 = aws_client(settings, "s3")
    config = {"EventBridgeConfiguration": {}} if on else {}
    s3.put_bucket_notification_configuration(Bucket=settings.lake.bronze_bucket,
                                             NotificationConfiguration=config)


def describe(settings: Settings) -> dict[str, Any]:
    """What is stored and what EventBridge holds now."""
    events = aws_client(settings, "events")
    rules = {}
    for rule in (SCHEDULE_RULE, ARRIVAL_RULE):
        try:
            r = events.describe_rule(Name=rule)
            rules[rule] = {"state": r.get("State"), "schedule": r.get("ScheduleExpression"),
                           "pattern": r.get("EventPattern")}
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
    return {"expression": stored(settings), "rules": rules}
