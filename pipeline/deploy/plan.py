"""`shoplake deploy aws`: what a deploy to a real account does, in order, and doing it.

1. build the shoplake wheel and upload it with the job scripts to the artifacts bucket;
2. create or update the CloudFormation stack (Target=aws) and wait for it;
3. apply the warehouse DDL and procedures through the Redshift Data API.

`--dry-run` prints the plan and touches nothing; it is what the tests run (no account here).
The real path uses boto3's default credential chain, never LocalStack's endpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.deploy.template import SCRIPTS_PREFIX, job_script, render, state_machine_jobs, to_yaml
from pipeline.errors import TerminalError
from pipeline.warehouse.model import MERGES_FILE, PROCEDURES_FILE, REDSHIFT_FILE

PROJECT = Path(__file__).resolve().parents[2]
STACK_NAME = "shoplake"
"""The CloudFormation stack `deploy aws` creates (and `stack up` creates locally)."""


@dataclass
class Step:
    what: str
    detail: list[str] = field(default_factory=list)


def split_sql(text: str) -> list[str]:
    """Statements of a SQL file for the Data API (one per call): `--` comments dropped,
    split at `;` outside dollar-quoted bodies (`$$ ... $$`, `$body$ ... $body$`)."""
    statements, current, quote = [], [], None
    for line in text.splitlines():
        if quote is None and line.lstrip().startswith("--"):
            continue
        current.append(line)
        for tag in re.findall(r"\$\w*\$", line):
            if quote is None:
                quote = tag
            elif tag == quote:
                quote = None
        if quote is None and line.rstrip().endswith(";"):
            statement = "\n".join(current).strip().rstrip(";").strip()
            if statement:
                statements.append(statement)
            current = []
    rest = "\n".join(current).strip()
    if rest:
        statements.append(rest)
    return statements


def warehouse_statements() -> list[tuple[str, list[str]]]:
    """(file, its statements) in the order they are applied on Redshift."""
    return [(f.name, split_sql(f.read_text(encoding="utf-8")))
            for f in (REDSHIFT_FILE, PROCEDURES_FILE, MERGES_FILE)]


def uploads(settings: Settings) -> list[tuple[Path, str]]:
    """(local file, s3 key) of every job script the template's Glue jobs name."""
    out = []
    for job in state_machine_jobs(settings):
        script = job_script(job)
        item = (PROJECT / script, f"{SCRIPTS_PREFIX}/{script}")
        if item not in out:
            out.append(item)
    return out


def plan(settings: Settings) -> list[Step]:
    template = render(settings)
    artifacts = settings.lake.artifacts_bucket
    resources = template["Resources"]
    aws_only = sum(1 for r in resources.values() if r.get("Condition") != "IsLocal")
    steps = [
        Step(f"build the shoplake wheel and upload it to s3://{artifacts}/{SCRIPTS_PREFIX}/",
             ["pip wheel --no-deps . -> shoplake-0.1.0-py3-none-any.whl "
              "(`--additional-python-modules` of every Glue job)"]),
        Step(f"upload the job scripts to s3://{artifacts}/{SCRIPTS_PREFIX}/",
             [f"{path.relative_to(PROJECT)} -> s3://{artifacts}/{key}"
              for path, key in uploads(settings)]),
        Step(f"create or update the CloudFormation stack `{STACK_NAME}` (Target=aws, "
             f"{aws_only} resources, CAPABILITY_NAMED_IAM) and wait for it",
             [f"{name}: {r['Type']}" for name, r in resources.items()
              if r.get("Condition") != "IsLocal"]),
    ]
    sql = warehouse_statements()
    steps.append(Step(
        f"apply the warehouse through the Redshift Data API (workgroup "
        f"`{settings.postgres.workgroup}`, database `{settings.postgres.database}`)",
        [f"{name}: {len(statements)} statements" for name, statements in sql]))
    steps.append(Step("then, from a host inside the VPC: `shoplake seed` (seed/schema.sql) "
                      "and the CDC login (see the README's MySQL 8 notes); start the DMS "
                      f"task `{settings.cdc.task_name}`"))
    return steps


def deploy(settings: Settings, session: Any | None = None) -> list[str]:
    """Do the plan against the account of boto3's default credentials (untested here: no
    account; `--dry-run` is what runs in CI)."""
    import subprocess
    import tempfile

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    session = session or boto3.Session()
    done = []
    try:
        session.client("sts").get_caller_identity()
    except (NoCredentialsError, BotoCoreError, ClientError) as exc:
        raise TerminalError(f"no AWS credentials to deploy with: {exc}",
                            hint="configure an AWS profile (AWS_PROFILE) or run "
                                 "`shoplake deploy aws --dry-run` to see the plan") from exc
    s3 = session.client("s3")
    artifacts = settings.lake.artifacts_bucket
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["pip", "wheel", "--no-deps", "-q", "-w", out, str(PROJECT)], check=True)
        for wheel in Path(out).glob("*.whl"):
            s3.upload_file(str(wheel), artifacts, f"{SCRIPTS_PREFIX}/{wheel.name}")
            done.append(f"uploaded {wheel.name}")
    for path, key in uploads(settings):
        s3.upload_file(str(path), artifacts, key)
        done.append(f"uploaded {key}")
    cfn = session.client("cloudformation")
    body = to_yaml(render(settings))
    args = {"StackName": STACK_NAME, "TemplateBody": body,
            "Parameters": [{"ParameterKey": "Target", "ParameterValue": "aws"}],
            "Capabilities": ["CAPABILITY_NAMED_IAM"]}
    try:
        cfn.update_stack(**args)
        waiter = "stack_update_complete"
    except ClientError as exc:
        message = exc.response["Error"].get("Message", "")
        if "does not exist" in message:
            cfn.create_stack(**args)
            waiter = "stack_create_complete"
        elif "No updates are to be performed" in message:
            waiter = ""
        else:
            raise
    if waiter:
        cfn.get_waiter(waiter).wait(StackName=STACK_NAME)
    done.append(f"stack {STACK_NAME}: {waiter or 'unchanged'}")
    data = session.client("redshift-data")
    for name, statements in warehouse_statements():
        for statement in statements:
            data.execute_statement(WorkgroupName=settings.postgres.workgroup,
                                   Database=settings.postgres.database, Sql=statement)
        done.append(f"{name}: {len(statements)} statements sent")
    return done
