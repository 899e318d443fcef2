"""`shoplake deploy aws`: what a deploy to a real account does, in order, and doing it.

1. create or update the CloudFormation stack (Target=aws) and wait for it: it makes the
   artifacts bucket the next step uploads to;
2. build the shoplake wheel and upload it with the job scripts to the artifacts bucket;
3. through the Redshift Data API, each statement waited for: as the namespace's admin,
   create the warehouse owner and the dashboards' reader with their secrets' passwords; as
   the owner, apply the warehouse DDL and procedures and grant the reader.

`--dry-run` prints the plan and touches nothing; it is what the tests run (no account here).
The real path uses boto3's default credential chain, never LocalStack's endpoint.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.deploy.template import (
    SCRIPTS_PREFIX,
    WAREHOUSE_ADMIN,
    job_script,
    render,
    state_machine_jobs,
    to_yaml,
)
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


def user_statements(settings: Settings, passwords: dict[str, str] | None = None
                    ) -> list[str]:
    """What the admin runs: the owner and the reader, created or given their secret's
    password again (a re-deploy after a rotation). `passwords` absent: placeholders."""
    out = []
    pg, reader = settings.postgres, settings.dashboards.reader_user
    for user, extra in ((pg.user, " CREATEUSER"), (reader, "")):
        secret = (passwords or {}).get(user, "<from its secret>").replace("'", "''")
        out.append(f"CREATE USER {user} PASSWORD '{secret}'{extra}")
    return out


def grant_statements(settings: Settings) -> list[str]:
    """What the owner runs after the DDL: the dashboards' reader may SELECT in `sales`."""
    from pipeline.warehouse.model import SCHEMA

    r = settings.dashboards.reader_user
    return [f"GRANT USAGE ON SCHEMA {SCHEMA} TO {r}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA {SCHEMA} TO {r}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SCHEMA} GRANT SELECT ON TABLES TO {r}"]


def plan(settings: Settings) -> list[Step]:
    template = render(settings)
    artifacts = settings.lake.artifacts_bucket
    resources = template["Resources"]
    aws_only = sum(1 for r in resources.values() if r.get("Condition") != "IsLocal")
    pg = settings.postgres
    steps = [
        Step(f"create or update the CloudFormation stack `{STACK_NAME}` (Target=aws, "
             f"{aws_only} resources, CAPABILITY_NAMED_IAM) and wait for it",
             [f"{name}: {r['Type']}" for name, r in resources.items()
              if r.get("Condition") != "IsLocal"]),
        Step(f"build the shoplake wheel and upload it to s3://{artifacts}/{SCRIPTS_PREFIX}/",
             ["pip wheel --no-deps . -> shoplake-0.1.0-py3-none-any.whl "
              "(`--additional-python-modules` of every Glue job)"]),
        Step(f"upload the job scripts to s3://{artifacts}/{SCRIPTS_PREFIX}/",
             [f"{path.relative_to(PROJECT)} -> s3://{artifacts}/{key}"
              for path, key in uploads(settings)]),
        Step(f"as the workgroup's admin `{WAREHOUSE_ADMIN}` (secret `{pg.secret_name}-admin`), "
             "through the Redshift Data API: the owner and the dashboards' reader",
             user_statements(settings)),
    ]
    sql = warehouse_statements()
    steps.append(Step(
        f"as the owner `{pg.user}` (secret `{pg.secret_name}`), through the Redshift Data "
        f"API (workgroup `{pg.workgroup}`, database `{pg.database}`), each statement waited "
        "for; a failed one stops the deploy and is named",
        [f"{name}: {len(statements)} statements" for name, statements in sql]
        + grant_statements(settings)))
    steps.append(Step("then, from a host inside the VPC: `shoplake seed` (seed/schema.sql) "
                      "and the CDC login (see the README's MySQL 8 notes); start the DMS "
                      f"task `{settings.cdc.task_name}`"))
    return steps


DATA_API_DONE = ("FINISHED", "FAILED", "ABORTED")


def run_statement(data: Any, what: str, *, poll_s: float = 1.0, timeout_s: float = 900.0,
                  sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> None:
    """One Data API statement, waited for: ExecuteStatement only queues it, and a statement
    that FAILED says so only to DescribeStatement."""
    statement_id = data.execute_statement(**kwargs)["Id"]
    waited = 0.0
    while True:
        answer = data.describe_statement(Id=statement_id)
        status = answer.get("Status", "")
        if status == "FINISHED":
            return
        if status in DATA_API_DONE:
            raise TerminalError(f"the Redshift Data API statement {what} {status.lower()}: "
                                f"{answer.get('Error') or 'no error given'}",
                                hint="fix the statement (or the warehouse) and run "
                                     "`shoplake deploy aws` again: the stack is kept")
        if waited >= timeout_s:
            raise TerminalError(f"the Redshift Data API statement {what} is still "
                                f"{status or 'queued'} after {timeout_s:.0f} s",
                                hint="look at the workgroup in the console (it may be "
                                     "paused or out of capacity), then deploy again")
        sleep(poll_s)
        waited += poll_s


def _physical_id(cfn: Any, logical_id: str) -> str:
    detail = cfn.describe_stack_resource(StackName=STACK_NAME, LogicalResourceId=logical_id)
    return detail["StackResourceDetail"]["PhysicalResourceId"]


def deploy(settings: Settings, session: Any | None = None) -> list[str]:
    """Do the plan against the account of boto3's default credentials (untested here: no
    account; `--dry-run` is what runs in CI)."""
    import json
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
            raise TerminalError(f"CloudFormation refused stack `{STACK_NAME}`: {message}",
                                hint="fix what it names; the previous stack is kept") from exc
    if waiter:
        try:
            cfn.get_waiter(waiter).wait(StackName=STACK_NAME,
                                        WaiterConfig={"Delay": 15, "MaxAttempts": 240})
        except Exception as exc:  # noqa: BLE001 - the waiter's error names no resource
            events = cfn.describe_stack_events(StackName=STACK_NAME)["StackEvents"]
            failed = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}"
                      for e in events if e.get("ResourceStatus", "").endswith("_FAILED")]
            raise TerminalError(f"stack `{STACK_NAME}` did not {waiter.split('_')[1]}: "
                                + ("; ".join(failed[:3]) or str(exc)),
                                hint="CloudFormation rolls back to the previous stack; fix "
                                     "the named resource and deploy again") from exc
    done.append(f"stack {STACK_NAME}: {waiter or 'unchanged'}")
    s3 = session.client("s3")
    artifacts = settings.lake.artifacts_bucket
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out,
                        str(PROJECT)], check=True)
        for wheel in Path(out).glob("*.whl"):
            s3.upload_file(str(wheel), artifacts, f"{SCRIPTS_PREFIX}/{wheel.name}")
            done.append(f"uploaded {wheel.name}")
    for path, key in uploads(settings):
        s3.upload_file(str(path), artifacts, key)
        done.append(f"uploaded {key}")
    secrets = session.client("secretsmanager")
    data = session.client("redshift-data")
    pg = settings.postgres
    where = {"WorkgroupName": pg.workgroup, "Database": pg.database}
    admin = _physical_id(cfn, "WarehouseAdminSecret")
    passwords = {}
    for user, logical_id in ((pg.user, "SecretWarehouse"),
                             (settings.dashboards.reader_user, "SecretDashboards")):
        value = secrets.get_secret_value(SecretId=_physical_id(cfn, logical_id))
        passwords[user] = json.loads(value["SecretString"])["password"]
    for user, statement in zip(passwords, user_statements(settings, passwords), strict=True):
        try:
            run_statement(data, f"creating user `{user}`", SecretArn=admin, Sql=statement,
                          **where)
        except TerminalError as exc:
            if "already exists" not in str(exc):
                raise
            again = statement.replace("CREATE USER", "ALTER USER", 1).removesuffix(
                " CREATEUSER")
            run_statement(data, f"resetting the password of `{user}`", SecretArn=admin,
                          Sql=again, **where)
        done.append(f"user {user}: ready")
    owner = _physical_id(cfn, "SecretWarehouse")
    for name, statements in [*warehouse_statements(), ("grants", grant_statements(settings))]:
        for i, statement in enumerate(statements, start=1):
            first = statement.strip().splitlines()[0][:60]
            run_statement(data, f"{name} #{i} (`{first}`)", SecretArn=owner, Sql=statement,
                          **where)
        done.append(f"{name}: {len(statements)} statements applied")
    return done
