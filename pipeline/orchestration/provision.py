"""Provision what a run needs on LocalStack, idempotently (LocalStack forgets on restart):
one activity per step, the state machine in its local binding (with its role's ARN), and
the RunFailed rule on the default event bus delivering to an SQS queue.
"""

from __future__ import annotations

import json
import logging

from botocore.exceptions import ClientError

from pipeline.aws.clients import aws_client
from pipeline.aws.provision import Provisioned
from pipeline.config import Settings
from pipeline.orchestration import asl
from pipeline.orchestration.names import FAILURE_RULE, activity_name, role_arn, state_machine_arn
from pipeline.orchestration.steps import STEPS

LOG = logging.getLogger(__name__)

__all__ = ["FAILURE_RULE", "provision_orchestration", "queue_url", "role_arn",
           "state_machine_arn"]


def queue_url(settings: Settings) -> str:
    sqs = aws_client(settings, "sqs")
    return sqs.get_queue_url(QueueName=settings.orchestration.failure_queue)["QueueUrl"]


def provision_orchestration(settings: Settings) -> list[Provisioned]:
    done = [_activity(settings, name) for name in STEPS]
    done.append(_state_machine(settings))
    done += _failure_rule(settings)
    return done


def _activity(settings: Settings, step: str) -> Provisioned:
    sfn = aws_client(settings, "stepfunctions")
    name = activity_name(settings, step)
    existing = {a["name"] for p in sfn.get_paginator("list_activities").paginate()
                for a in p["activities"]}
    if name in existing:
        return Provisioned("activity", name, "unchanged")
    sfn.create_activity(name=name)  # idempotent on AWS and LocalStack for the same name
    return Provisioned("activity", name, "created")


def _state_machine(settings: Settings) -> Provisioned:
    sfn = aws_client(settings, "stepfunctions")
    definition = asl.render_json(settings, "local")
    arn = state_machine_arn(settings)
    try:
        current = sfn.describe_state_machine(stateMachineArn=arn)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("StateMachineDoesNotExist",
                                                 "ResourceNotFoundException"):
            raise
        sfn.create_state_machine(name=settings.orchestration.state_machine,
                                 definition=definition, roleArn=role_arn(settings),
                                 type="STANDARD")
        return Provisioned("state machine", settings.orchestration.state_machine, "created")
    if json.loads(current["definition"]) == json.loads(definition):
        return Provisioned("state machine", settings.orchestration.state_machine, "unchanged")
    sfn.update_state_machine(stateMachineArn=arn, definition=definition,
                             roleArn=role_arn(settings))
    return Provisioned("state machine", settings.orchestration.state_machine, "updated")


def _failure_rule(settings: Settings) -> list[Provisioned]:
    sqs, events = aws_client(settings, "sqs"), aws_client(settings, "events")
    queue = settings.orchestration.failure_queue
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]  # returns the same queue if present
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    pattern = json.dumps({"source": ["shoplake.pipeline"], "detail-type": ["RunFailed"]})
    events.put_rule(Name=FAILURE_RULE, EventPattern=pattern, State="ENABLED",
                    Description="A pipeline run failed (sent by its NotifyFailure state)")
    events.put_targets(Rule=FAILURE_RULE, Targets=[{"Id": "failure-queue", "Arn": arn}])
    return [Provisioned("queue", queue, "ready"), Provisioned("rule", FAILURE_RULE, "ready")]
