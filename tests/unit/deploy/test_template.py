"""The CloudFormation template: rendered from the local definitions, and cfn-lint clean."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from pipeline.cli.main import main
from pipeline.config import load_settings
from pipeline.deploy import render, to_yaml
from pipeline.deploy.lint import check_substitutions, lint
from pipeline.deploy.plan import (
    plan,
    run_statement,
    split_sql,
    uploads,
    user_statements,
    warehouse_statements,
)
from pipeline.deploy.template import (
    AWS_ONLY,
    dms_s3_settings,
    state_machine_jobs,
)
from pipeline.errors import TerminalError
from pipeline.glue.iceberg import catalog_binding
from pipeline.glue.jobs import JOBS
from pipeline.orchestration import asl

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def template() -> dict:
    return render(load_settings(environ={}))


def _write(tmp_path: Path, template: dict) -> Path:
    path = tmp_path / "shoplake.yaml"
    path.write_text(to_yaml(template))
    return path


def test_the_rendered_template_passes_cfn_lint(template, tmp_path) -> None:
    result = lint(_write(tmp_path, template))
    assert result.ok, result.output
    assert yaml.safe_load(to_yaml(template)) == template, "YAML round-trips, no tags"


BREAKAGES = (
    ("PrivateSubnet1", "CidrBlock", "192.168.0.0/24", "E3"),       # outside the VPC
    ("SourceDb", "EngineVersion", "8.0.39", "W3691"),               # a retired RDS version
    ("ReplicationTask", "MigrationType", "full-load-and-cdcx", "E3"),
    ("StateMachineRole", "RoleName", {"Ref": "NoSuchParameter"}, "E1"),
)
"""Mistakes cfn-lint catches (one lint run for all: it takes seconds)."""


def test_a_broken_template_fails_the_lint(template, tmp_path) -> None:
    broken = json.loads(json.dumps(template))
    for resource, key, value, _ in BREAKAGES:
        broken["Resources"][resource]["Properties"][key] = value
    result = lint(_write(tmp_path, broken))
    assert not result.ok
    findings = [ln for ln in result.output.splitlines() if ln.strip()]
    for *_, rule in BREAKAGES:
        assert any(f":{rule}" in ln for ln in findings), (rule, result.output)
    assert len(findings) >= len(BREAKAGES)


def test_deploy_lint_refuses_a_broken_file_and_names_it(template, tmp_path, capsys) -> None:
    broken = json.loads(json.dumps(template))
    broken["Resources"]["FailureRule"]["Properties"]["ScheduleExpression"] = "rate(1 minutes)"
    path = _write(tmp_path, broken)
    assert main(["deploy", "lint", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"cfn-lint rejects `{path}`" in err and "unexpected" not in err


def test_a_missing_or_unused_substitution_is_caught(template) -> None:
    broken = json.loads(json.dumps(template))
    props = broken["Resources"]["StateMachineAws"]["Properties"]
    props["DefinitionSubstitutions"]["Extra"] = "x"
    del props["DefinitionSubstitutions"]["Crawler"]
    problems = check_substitutions(broken)
    assert any("no substitution for Crawler" in p for p in problems), problems
    assert any("Extra not used" in p for p in problems), problems
    assert check_substitutions(template) == []


def test_the_aws_state_machine_is_the_aws_binding_once_substituted(template) -> None:
    settings = load_settings(environ={})
    props = template["Resources"]["StateMachineAws"]["Properties"]
    values = {"DmsTaskArn": f"arn:aws:dms:{settings.localstack.region}:"
                            f"{settings.orchestration.account_id}:task:{settings.cdc.task_name}",
              "Crawler": settings.glue.crawler, "Workgroup": settings.postgres.workgroup}
    for key, value in props["DefinitionSubstitutions"].items():
        if key.startswith("Job"):
            values[key] = template["Resources"][value["Ref"]]["Properties"]["Name"]
    filled = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], props["DefinitionString"])
    assert json.loads(filled) == asl.render(settings, "aws")
    local = template["Resources"]["StateMachineLocal"]["Properties"]
    arns = {k: (f"arn:aws:states:{settings.localstack.region}:"
                f"{settings.orchestration.account_id}:activity:"
                f"{template['Resources'][v['Ref']]['Properties']['Name']}")
            for k, v in local["DefinitionSubstitutions"].items()}
    filled = re.sub(r"\$\{(\w+)\}", lambda m: arns[m.group(1)], local["DefinitionString"])
    assert json.loads(filled) == asl.render(settings, "local")


def test_every_job_the_state_machine_starts_is_a_glue_job_with_its_script(template) -> None:
    jobs = {r["Properties"]["Name"]: r for r in template["Resources"].values()
            if r["Type"] == "AWS::Glue::Job"}
    assert set(jobs) == set(state_machine_jobs(load_settings(environ={})))
    assert {"bronze_to_silver", "load_dim_customer", "maintain_silver",
            "shoplake_quality_and_reconcile"} <= set(jobs)
    for name, job in jobs.items():
        props = job["Properties"]
        assert job["Condition"] == AWS_ONLY
        assert isinstance(props["GlueVersion"], str), "a YAML number is not a GlueVersion"
        # Python shell stops at Python 3.9; the shoplake wheel needs Glue 5.0's 3.11.
        assert props["Command"]["Name"] == "glueetl" and props["GlueVersion"] == "5.0", name
        assert props["Connections"] == {"Connections": [{"Ref": "GlueConnection"}]}, name
        if name in JOBS:
            assert props["DefaultArguments"]["--datalake-formats"] == "iceberg"
            assert "GlueCatalog" in props["DefaultArguments"]["--conf"]
        key = props["Command"]["ScriptLocation"].split("/", 3)[3]
        assert (REPO / key.removeprefix("scripts/")).is_file(), name
    assert [k for _, k in uploads(load_settings(environ={}))] == sorted(
        {j["Properties"]["Command"]["ScriptLocation"].split("/", 3)[3] for j in jobs.values()},
        key=[k for _, k in uploads(load_settings(environ={}))].index)


def test_the_crawler_finds_cdc_files_in_old_folders(template) -> None:
    crawler = template["Resources"]["Crawler"]["Properties"]
    assert crawler["RecrawlPolicy"] == {"RecrawlBehavior": "CRAWL_EVERYTHING"}


def test_the_glue_connection_sits_in_a_private_subnet_with_the_glue_group(template) -> None:
    conn = template["Resources"]["GlueConnection"]["Properties"]["ConnectionInput"]
    assert conn["ConnectionType"] == "NETWORK"
    needs = conn["PhysicalConnectionRequirements"]
    assert needs["SubnetId"] == {"Ref": "PrivateSubnet1"}
    assert needs["SecurityGroupIdList"] == [{"Ref": "GlueSecurityGroup"}]


def test_the_warehouse_admin_has_one_password_from_its_own_secret(template) -> None:
    """No ManageAdminPassword (a second secret for the login) and no dependency on the
    owner's secret, whose host is the workgroup's: that would be a circle."""
    namespace = template["Resources"]["Namespace"]["Properties"]
    assert "ManageAdminPassword" not in namespace
    assert "WarehouseAdminSecret" in namespace["AdminUserPassword"]["Fn::Sub"]
    assert "SecretWarehouse" not in json.dumps(namespace)


def _refs(node, skip_aws_branch: bool = True):
    """Names a node refers to (Ref, GetAtt, ${X} in Sub), leaving out Fn::If's IsAws arm."""
    if isinstance(node, dict):
        if "Fn::If" in node and skip_aws_branch:
            condition, when_true, when_false = node["Fn::If"]
            yield from _refs(when_false if condition == AWS_ONLY else [when_true, when_false])
            return
        for key, value in node.items():
            if key == "Ref":
                yield value
            elif key == "Fn::GetAtt":
                yield value[0]
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                yield from (m.split(".")[0] for m in re.findall(r"\$\{([\w.]+)\}", text))
                if not isinstance(value, str):
                    yield from _refs(value[1])
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_local_part_never_refers_to_an_aws_only_resource(template) -> None:
    """LocalStack stubs the AWS-only types and a Ref to one reads "unknown"."""
    aws_only = {n for n, r in template["Resources"].items() if r.get("Condition") == AWS_ONLY}
    assert {"Vpc", "SourceDb", "ReplicationTask", "Crawler", "Workgroup"} <= aws_only
    for name, resource in template["Resources"].items():
        if resource.get("Condition") == AWS_ONLY:
            continue
        leaked = set(_refs(resource)) & aws_only
        assert not leaked, f"{name} refers to {leaked}"


def test_one_definition_changed_shows_up_in_the_template() -> None:
    env = {"SHOPLAKE_LAKE_BRONZE_BUCKET": "acme-raw", "SHOPLAKE_GLUE_DATABASE": "acme_bronze",
           "SHOPLAKE_GLUE_CRAWLER": "acme-crawler",
           "SHOPLAKE_CDC_BATCH_INTERVAL_S": "60", "SHOPLAKE_CDC_DATA_FORMAT": "csv"}
    settings = load_settings(environ=env)
    text = to_yaml(render(settings))
    resources = render(settings)["Resources"]
    assert resources["BucketBronze"]["Properties"]["BucketName"] == "acme-raw"
    s3 = resources["BronzeEndpoint"]["Properties"]["S3Settings"]
    assert s3 == dms_s3_settings(settings)
    assert (s3["BucketName"], s3["DataFormat"], s3["CdcMaxBatchInterval"]) == \
        ("acme-raw", "csv", 60)
    assert resources["Crawler"]["Properties"]["Targets"]["S3Targets"][0]["Path"] == \
        "s3://acme-raw/shop/"
    definition = json.loads(resources["StateMachineLocal"]["Properties"]["DefinitionString"])
    arguments = definition["States"]["Transform"]["ItemProcessor"]["States"][
        "BronzeToSilver"]["Parameters"]["Arguments"]
    assert arguments["--bronze_path"] == "s3a://acme-raw/shop"
    assert arguments["--catalog_database"] == "acme_bronze"
    assert "shoplake-bronze" not in text and "shop_bronze" not in text


def test_silver_catalog_differs_between_bindings_only_in_the_catalog() -> None:
    from pipeline.aws.secrets import DbCredentials
    from pipeline.config import Secret

    settings = load_settings(environ={})
    creds = DbCredentials("postgres", "127.0.0.1", 15432, "u", Secret("p"), "warehouse")
    aws, local = catalog_binding(settings, "aws"), catalog_binding(settings, "local", creds)
    assert aws["spark.sql.catalog.silver.catalog-impl"].endswith("GlueCatalog")
    assert local["spark.sql.catalog.silver.catalog-impl"].endswith("JdbcCatalog")
    assert {k for k in aws if aws[k] == local.get(k)} == {
        "spark.sql.catalog.silver", "spark.sql.catalog.silver.cache-enabled"}


def test_split_sql_keeps_dollar_quoted_bodies_whole() -> None:
    text = ("-- a comment;\nCREATE TABLE a (x int);\n"
            "CREATE PROCEDURE p() AS $$\nBEGIN\n  SELECT 1;\nEND;\n$$ LANGUAGE plpgsql;\n")
    assert split_sql(text) == ["CREATE TABLE a (x int)",
                               "CREATE PROCEDURE p() AS $$\nBEGIN\n  SELECT 1;\nEND;\n"
                               "$$ LANGUAGE plpgsql"]
    for name, statements in warehouse_statements():
        assert statements, name
        for statement in statements:
            assert statement.count("$$") % 2 == 0, (name, statement[:80])


def test_deploy_aws_dry_run_prints_the_plan_and_touches_nothing(capsys, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "")  # no credentials: a real call would fail
    assert main(["deploy", "aws", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "CloudFormation stack `shoplake`" in out and "Redshift Data API" in out
    assert "spark_jobs/bronze_to_silver.py -> s3://shoplake-artifacts/scripts/" in out
    assert out.rstrip().endswith("dry run: nothing was changed")
    steps = plan(load_settings(environ={}))
    assert len(steps) == 6
    assert steps[0].what.startswith("create or update the CloudFormation stack"), \
        "the stack makes the artifacts bucket the uploads go to"


def test_deploy_render_writes_the_file(tmp_path, capsys) -> None:
    out = tmp_path / "t.yaml"
    assert main(["deploy", "render", "-o", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["Resources"]["BucketBronze"]
    assert main(["deploy", "render"]) == 0
    assert capsys.readouterr().out.count("AWSTemplateFormatVersion") == 1


class _DataApi:
    """The Redshift Data API's two calls as a script of answers (no account here): what
    `run_statement` does with each status is the unit under test."""

    def __init__(self, *answers: dict) -> None:
        self.answers, self.sent = list(answers), []

    def execute_statement(self, **kwargs):
        self.sent.append(kwargs)
        return {"Id": "s-1"}

    def describe_statement(self, Id):  # noqa: N803 - the API's own name
        return self.answers.pop(0)


def test_a_data_api_statement_is_waited_for_until_it_finishes() -> None:
    slept = []
    api = _DataApi({"Status": "SUBMITTED"}, {"Status": "STARTED"}, {"Status": "FINISHED"})
    run_statement(api, "x", sleep=slept.append, poll_s=2, Sql="SELECT 1")
    assert slept == [2, 2] and api.sent == [{"Sql": "SELECT 1"}] and not api.answers


def test_a_failed_data_api_statement_stops_the_deploy_and_is_named() -> None:
    api = _DataApi({"Status": "STARTED"}, {"Status": "FAILED", "Error": "syntax error at X"})
    with pytest.raises(TerminalError, match=r"procedures.sql #3 .* failed: syntax error at X"):
        run_statement(api, "procedures.sql #3 (`CREATE`)", sleep=lambda s: None, Sql="x")
    api = _DataApi(*[{"Status": "STARTED"}] * 5)
    with pytest.raises(TerminalError, match="still STARTED after 3 s"):
        run_statement(api, "y", sleep=lambda s: None, poll_s=1, timeout_s=3, Sql="x")


def test_the_admin_creates_the_owner_and_the_reader_with_quoted_passwords() -> None:
    settings = load_settings(environ={})
    out = user_statements(settings, {"shoplake": "it's", "shoplake_dashboards": "b"})
    assert out[0] == "CREATE USER shoplake PASSWORD 'it''s' CREATEUSER"
    assert out[1].startswith(f"CREATE USER {settings.dashboards.reader_user} PASSWORD '")
