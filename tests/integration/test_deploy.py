"""One definition, changed once, shows up both in what `stack up` provisions on LocalStack
and in the CloudFormation template for AWS: neither is a hand copy of the other."""

from __future__ import annotations

import contextlib
import json

import pytest

from pipeline.aws.clients import aws_client
from pipeline.config import Settings, load_settings
from pipeline.deploy import render
from pipeline.orchestration.names import state_machine_arn
from pipeline.stack.manager import provision_stack

pytestmark = pytest.mark.integration

CHANGED = {"SHOPLAKE_LAKE_BRONZE_BUCKET": "acme-raw",
           "SHOPLAKE_GLUE_DATABASE": "acme_bronze",
           # its own state machine, so the session's stays as it was
           "SHOPLAKE_ORCHESTRATION_STATE_MACHINE": "acme-pipeline"}


def _cleanup(settings: Settings) -> None:
    s3, sfn = aws_client(settings, "s3"), aws_client(settings, "stepfunctions")
    with contextlib.suppress(Exception):
        s3.delete_bucket(Bucket=CHANGED["SHOPLAKE_LAKE_BRONZE_BUCKET"])
    with contextlib.suppress(Exception):
        sfn.delete_state_machine(stateMachineArn=state_machine_arn(settings))


def test_a_changed_bucket_and_job_argument_reach_stack_up_and_the_template(
        stack_settings: Settings, stack_env: dict[str, str]) -> None:
    changed = load_settings(environ={**stack_env, **CHANGED})
    try:
        provision_stack(changed)
        buckets = {b["Name"] for b in aws_client(changed, "s3").list_buckets()["Buckets"]}
        assert "acme-raw" in buckets
        definition = json.loads(aws_client(changed, "stepfunctions").describe_state_machine(
            stateMachineArn=state_machine_arn(changed))["definition"])
        provisioned = definition["States"]["Transform"]["ItemProcessor"]["States"][
            "BronzeToSilver"]["Parameters"]["Arguments"]
        assert provisioned["--bronze_path"] == "s3a://acme-raw/shop"
        assert provisioned["--catalog_database"] == "acme_bronze"

        template = render(changed)["Resources"]
        assert template["BucketBronze"]["Properties"]["BucketName"] == "acme-raw"
        for machine in ("StateMachineLocal", "StateMachineAws"):
            rendered = json.loads(template[machine]["Properties"]["DefinitionString"])
            arguments = rendered["States"]["Transform"]["ItemProcessor"]["States"][
                "BronzeToSilver"]["Parameters"]["Arguments"]
            assert arguments == provisioned, machine
        assert template["BronzeDatabase"]["Properties"]["DatabaseInput"]["Name"] == "acme_bronze"
    finally:
        _cleanup(changed)
        provision_stack(stack_settings)  # the session's resources as they were


def test_what_stack_up_provisioned_is_the_templates_local_part(
        stack_settings: Settings) -> None:
    """`stack up` provisions with per-service calls (README: why not a CloudFormation stack
    on LocalStack yet); resource by resource, it holds what the template's local part
    declares."""
    import re

    settings = stack_settings
    resources = render(settings)["Resources"]
    local = {n: r for n, r in resources.items() if r.get("Condition") != "IsAws"}
    of = lambda kind: [r["Properties"] for r in local.values() if r["Type"] == kind]  # noqa: E731
    s3, sm = aws_client(settings, "s3"), aws_client(settings, "secretsmanager")
    sqs, events = aws_client(settings, "sqs"), aws_client(settings, "events")
    sfn = aws_client(settings, "stepfunctions")

    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert {p["BucketName"] for p in of("AWS::S3::Bucket")} <= buckets
    for secret in of("AWS::SecretsManager::Secret"):
        sm.describe_secret(SecretId=secret["Name"])  # raises when it was not provisioned
    [queue] = of("AWS::SQS::Queue")
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=sqs.get_queue_url(QueueName=queue["QueueName"])["QueueUrl"],
        AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for rule in of("AWS::Events::Rule"):
        held = events.describe_rule(Name=rule["Name"])
        assert json.loads(held["EventPattern"]) == rule["EventPattern"]
        assert [t["Arn"] for t in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]] \
            == [queue_arn]
    activities = {a["name"]: a["activityArn"] for page in
                  sfn.get_paginator("list_activities").paginate() for a in page["activities"]}
    declared = {p["Name"] for p in of("AWS::StepFunctions::Activity")}
    assert declared <= set(activities) and len(declared) >= 10

    machine = local["StateMachineLocal"]["Properties"]
    arns = {key: activities[local[value["Ref"]]["Properties"]["Name"]]
            for key, value in machine["DefinitionSubstitutions"].items()}
    expected = re.sub(r"\$\{(\w+)\}", lambda m: arns[m.group(1)], machine["DefinitionString"])
    held = sfn.describe_state_machine(stateMachineArn=state_machine_arn(settings))
    assert json.loads(held["definition"]) == json.loads(expected)
    assert held["roleArn"].endswith(f":role/{local['StateMachineRole']['Properties']['RoleName']}")
