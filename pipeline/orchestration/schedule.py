"""The schedule that starts runs: an EventBridge rule whose target is the state machine.

`rate(5 minutes)` or `cron(0 3 * * ? *)`: a rule with that ScheduleExpression (the
EventBridge Scheduler API accepts schedules on LocalStack but never fires them: rules do).
`on-arrival`: the bronze bucket sends its events to EventBridge, and a rule on "Object
Created" under the schema's prefix starts a run for every file; each run first waits
`orchestration.arrival_debounce_s` (so a burst gives one run: the Guard ends the others)
and, before it ends, goes round again while files keep arriving, so the last file's rows
reach gold without another trigger.

LocalStack forgets rules when it restarts: the schedule is kept in `<state>/schedule.json`
and `stack up` applies it again. An expression is checked by EventBridge's rules first
(`cron.check`), and saved only once EventBridge has taken it: on any failure the previous
schedule stays, saved and applied. A saved one that cannot be applied (written by hand, or
by an older shoplake) does not stop `stack up`: it is named, and no schedule is active.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import ClientError

from pipeline.aws.clients import aws_client, ensure_answering
from pipeline.config import Settings
from pipeline.orchestration import asl
from pipeline.orchestration.cron import ScheduleError, check
from pipeline.orchestration.names import role_arn, state_machine_arn

LOG = logging.getLogger(__name__)

SCHEDULE_RULE = "shoplake-schedule"
ARRIVAL_RULE = "shoplake-on-arrival"
ON_ARRIVAL = "on-arrival"


def check_expression(expression: str) -> str:
    """The expression, normalised; ScheduleError for anything EventBridge would refuse or
    that would never fire."""
    expression = " ".join(expression.split())
    if expression == ON_ARRIVAL:
        return expression
    return check(expression)


def _file(settings: Settings):  # noqa: ANN202 - Path
    return settings.state_dir / "schedule.json"


def stored(settings: Settings) -> str | None:
    """The schedule set with `shoplake schedule`; else the setting's; None for none (and
    for a saved file that cannot be read: `problem` names it)."""
    return _saved(settings)[0]


def _saved(settings: Settings) -> tuple[str | None, str | None]:
    """The saved expression, and why the saved file cannot be used (None when it can)."""
    path = _file(settings)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return settings.orchestration.schedule or None, None
    except OSError as exc:
        return None, f"{path} cannot be read ({exc.strerror or exc})"
    try:
        data = json.loads(text)
    except ValueError:
        return None, f"{path} is not JSON (edited by hand?)"
    if not isinstance(data, dict) or "expression" not in data:
        return None, f"{path} holds no `expression` (edited by hand?)"
    expression = data["expression"]
    if expression is not None and not isinstance(expression, str):
        return None, (f"{path}: `expression` is {json.dumps(expression)[:60]}, not an "
                      "EventBridge expression in quotes")
    return expression or None, None


def set_schedule(settings: Settings, expression: str | None) -> str | None:
    """Check, apply, then save a schedule (None: off). On any failure the previous one
    stays saved and is applied again."""
    expression = check_expression(expression) if expression is not None else None
    ensure_answering(settings)
    previous = stored(settings)
    try:
        _apply(settings, expression)
    except Exception:
        try:
            _apply(settings, check_expression(previous) if previous else None)
        except Exception as undo:  # noqa: BLE001 - the first failure is the one to report
            LOG.warning("the previous schedule %s was not applied again: %s", previous, undo)
        raise
    path = _file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"expression": expression}))
    tmp.replace(path)
    return expression


def apply(settings: Settings) -> str | None:
    """Make EventBridge hold exactly the saved schedule (idempotent; `stack up` calls it).
    ScheduleError, with no schedule left active, when the saved one cannot be applied."""
    expression = stored(settings)
    try:
        checked = check_expression(expression) if expression else None
    except ScheduleError:
        _apply(settings, None)
        raise
    _apply(settings, checked)
    return checked


def problem(settings: Settings) -> str | None:
    """Why the saved schedule is not active, or None when it is (or none is saved)."""
    expression, unreadable = _saved(settings)
    if unreadable:
        return unreadable
    if not expression:
        return None
    try:
        check_expression(expression)
    except ScheduleError as exc:
        return exc.message
    rule = ARRIVAL_RULE if expression == ON_ARRIVAL else SCHEDULE_RULE
    if rule not in describe(settings)["rules"]:
        return f"the saved schedule `{expression}` is not applied (EventBridge holds no rule)"
    return None


def _apply(settings: Settings, expression: str | None) -> None:
    """EventBridge holds exactly `expression` (already checked) afterwards."""
    _remove(settings, SCHEDULE_RULE)
    _remove(settings, ARRIVAL_RULE)
    _bucket_events(settings, on=expression == ON_ARRIVAL)
    if expression is None:
        return
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
        try:
            events.put_rule(Name=SCHEDULE_RULE, ScheduleExpression=expression,
                            State="ENABLED", Description="Start a pipeline run")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ValidationException":
                raise
            raise ScheduleError(expression, "EventBridge refused it: "
                                f"{exc.response['Error'].get('Message', '')}") from exc
        target["Input"] = json.dumps(asl.execution_input("schedule"))
        events.put_targets(Rule=SCHEDULE_RULE, Targets=[target])
    LOG.info("schedule: %s", expression)


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
