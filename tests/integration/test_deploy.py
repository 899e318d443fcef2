"""One definition, changed once, shows up both in what `stack up` provisions on LocalStack
and in the CloudFormation template for AWS: neither is a hand copy of the other."""

from __future__ import annotations

import contextlib
import json

import pytest

from pipeline.aws.clients import aws_client
from pipeline.config import Settings, load_settings
from pipeline.deploy import render
from pipeline.orchestration.provision import state_machine_arn
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
