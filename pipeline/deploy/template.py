"""The CloudFormation template of the whole pipeline, rendered from the local definitions.

Nothing in it is a hand copy: bucket, secret, queue, rule, role and state-machine names come
from Settings; the Glue jobs are the jobs the state machine names (their scripts are the
job registry's modules in spark_jobs/); their Glue arguments are the state machine's, from
`asl.glue_paths`; silver's Iceberg catalog on AWS is `iceberg.catalog_binding(.., "aws")`;
the DMS endpoint settings are the ones the local CDC writes with (`cdc.*`).

One template, two targets (parameter `Target`):
- the local part (no condition): buckets, secrets, the RunFailed queue and rule, the role,
  the schedule rule, and the state machine (its `local` binding, activities, when
  Target=local; its `aws` binding when Target=aws);
- AWS only (condition `IsAws`): VPC and private subnets, security groups as the compose
  networks split them, RDS MySQL with a binlog parameter group, DMS, Glue database, crawler
  and jobs, Redshift Serverless. LocalStack community stubs these types (a Ref reads
  "unknown"), so nothing of the local part refers to them.

Long-form intrinsics (`{"Ref": ...}`, `{"Fn::Sub": ...}`) keep the YAML plain: no tags.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import yaml

from pipeline.config import Settings
from pipeline.glue.iceberg import catalog_binding
from pipeline.glue.jobs import JOBS
from pipeline.orchestration import asl
from pipeline.orchestration.names import activity_name
from pipeline.orchestration.steps import PYTHON_JOBS, STEPS
from pipeline.source.generate import TABLES

AWS_ONLY = "IsAws"
LOCAL_ONLY = "IsLocal"

GLUE_VERSION = "5.0"
"""Spark 3.5.4, Python 3.11, Iceberg 1.7.1: what spark_jobs/ are written for."""

MYSQL_ENGINE_VERSION = "8.4.7"
"""RDS MySQL's 8.4 LTS line, as compose's mysql:8.4 image."""

SCRIPTS_PREFIX = "scripts"
"""Key prefix in the artifacts bucket of the job scripts and the shoplake wheel that
`deploy aws` uploads from spark_jobs/."""

VPC_CIDR = "10.42.0.0/16"
SUBNET_CIDRS = ("10.42.1.0/24", "10.42.2.0/24", "10.42.3.0/24")
"""Three private subnets in three zones (Redshift Serverless wants three)."""

Json = dict[str, Any]


def ref(name: str) -> Json:
    return {"Ref": name}


def sub(text: str) -> Json:
    return {"Fn::Sub": text}


def att(name: str, attribute: str) -> Json:
    return {"Fn::GetAtt": [name, attribute]}


def logical(kind: str, name: str) -> str:
    """A logical id from a name: `Job` + `load_dim_customer` -> `JobLoadDimCustomer`."""
    return asl.substitution(kind, name)


def _arn(service: str, resource: str) -> Json:
    return sub(f"arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:"
               f"{resource}")


def _bucket_arns(bucket: str) -> list[Json]:
    return [sub(f"arn:${{AWS::Partition}}:s3:::{bucket}"),
            sub(f"arn:${{AWS::Partition}}:s3:::{bucket}/*")]


def _policy(name: str, statements: Iterable[Json]) -> Json:
    return {"PolicyName": name, "PolicyDocument": {"Version": "2012-10-17",
                                                   "Statement": list(statements)}}


def _allow(actions: list[str], resources: list[Any] | Any) -> Json:
    return {"Effect": "Allow", "Action": sorted(actions),
            "Resource": resources if isinstance(resources, list) else [resources]}


def _trust(*services: str) -> Json:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": list(services)},
         "Action": "sts:AssumeRole"}]}


def state_machine_jobs(settings: Settings) -> list[str]:
    """The Glue jobs the state machine starts, in the order it names them."""
    names: list[str] = []

    def walk(states: dict[str, Any]) -> None:
        for state in states.values():
            params = state.get("Parameters") or {}
            if str(state.get("Resource", "")).endswith("glue:startJobRun.sync") \
                    and params.get("JobName") not in names:
                names.append(params["JobName"])
            for branch in state.get("Branches", []):
                walk(branch["States"])
            if "ItemProcessor" in state:
                walk(state["ItemProcessor"]["States"])

    walk(asl.render(settings, "aws")["States"])
    return names


def state_machine_activities(settings: Settings) -> list[str]:
    """The steps whose activity the local binding's tasks name (every step has an
    activity, as `stack up` provisions them; the Python shell jobs run through glue_job)."""
    text = asl.render_json(settings, "local")
    return [s for s in STEPS if f':activity:{activity_name(settings, s)}"' in text]


def job_script(name: str) -> str:
    """The script of Glue job `name` under the artifacts bucket's scripts/: its module in
    the registry, or the Python shell entry point of the steps that need no Spark."""
    if name in JOBS:
        return f"spark_jobs/{JOBS[name].rsplit('.', 1)[-1]}.py"
    if name in PYTHON_JOBS:
        return "spark_jobs/python_shell.py"
    raise KeyError(f"the state machine starts Glue job `{name}`, which is neither in the job "
                   "registry (pipeline/glue/jobs.py) nor a Python shell job (steps.PYTHON_JOBS)")


def render(settings: Settings) -> Json:
    """The template as a dict (see the module's docstring)."""
    jobs = state_machine_jobs(settings)
    resources: Json = {}
    resources |= _lake(settings)
    resources |= _secrets(settings)
    resources |= _orchestration(settings, jobs)
    resources |= _network(settings)
    resources |= _source(settings)
    resources |= _dms(settings)
    resources |= _glue(settings, jobs)
    resources |= _redshift(settings)
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "shoplake: the e-commerce medallion pipeline (RDS MySQL -> DMS -> S3 "
                       "bronze -> Glue -> Iceberg silver -> Redshift gold), rendered by "
                       "`shoplake deploy render` from the definitions the local stack uses.",
        "Parameters": {
            "Target": {"Type": "String", "AllowedValues": ["aws", "local"], "Default": "aws",
                       "Description": "aws: everything; local: the part LocalStack runs "
                                      "(`shoplake stack up`)."},
            "MysqlPassword": _password("the source's application user"),
            "CdcPassword": _password("the CDC (DMS) replication user"),
            "WarehousePassword": _password("the warehouse owner"),
            "DashboardsPassword": _password("the dashboards' read-only role"),
            "PiiSalt": _password("the salt PII is hashed with"),
        },
        "Conditions": {
            AWS_ONLY: {"Fn::Equals": [ref("Target"), "aws"]},
            LOCAL_ONLY: {"Fn::Equals": [ref("Target"), "local"]},
        },
        "Resources": resources,
        "Outputs": _outputs(settings),
    }


def _password(what: str) -> Json:
    return {"Type": "String", "NoEcho": True, "Default": "",
            "Description": f"Locally, the password of {what} (from the state folder); on "
                           "AWS leave empty: Secrets Manager generates it."}


def _outputs(settings: Settings) -> Json:
    return {
        "StateMachineArn": {"Value": {"Fn::If": [AWS_ONLY, ref("StateMachineAws"),
                                                 ref("StateMachineLocal")]}},
        "BronzeBucket": {"Value": ref("BucketBronze")},
        "FailureQueueUrl": {"Value": ref("FailureQueue")},
        "RedshiftWorkgroup": {"Condition": AWS_ONLY, "Value": ref("Workgroup")},
        "MysqlEndpoint": {"Condition": AWS_ONLY, "Value": att("SourceDb", "Endpoint.Address")},
    }


# -- the local part ---------------------------------------------------------------------------
def _lake(settings: Settings) -> Json:
    lake = settings.lake
    out: Json = {}
    for key, bucket in (("Bronze", lake.bronze_bucket), ("Silver", lake.silver_bucket),
                        ("Artifacts", lake.artifacts_bucket)):
        props: Json = {"BucketName": bucket}
        if key == "Bronze":
            # On-arrival runs: "Object Created" events reach EventBridge's default bus.
            props["NotificationConfiguration"] = {
                "EventBridgeConfiguration": {"EventBridgeEnabled": True}}
        out[f"Bucket{key}"] = {"Type": "AWS::S3::Bucket", "Properties": props}
    return out


def _secrets(settings: Settings) -> Json:
    """The RDS-shaped secrets every component reads its login from. Locally their values
    are the state folder's credentials (parameters); on AWS Secrets Manager generates the
    password and the rest is known once the databases exist."""
    m, pg, c = settings.mysql, settings.postgres, settings.cdc
    db_host = att("SourceDb", "Endpoint.Address")
    wg_host = att("Workgroup", "Workgroup.Endpoint.Address")
    spec = (
        ("SecretMysql", m.secret_name, "MysqlPassword", "mysql", db_host, m.host, 3306,
         m.port, m.user, m.database),
        ("SecretCdc", c.secret_name, "CdcPassword", "mysql", db_host, m.host, 3306, m.port,
         c.user, m.database),
        ("SecretWarehouse", pg.secret_name, "WarehousePassword", "postgres", wg_host, pg.host,
         5439, pg.port, pg.user, pg.database),
        ("SecretDashboards", settings.dashboards.secret_name, "DashboardsPassword",
         "postgres", wg_host, pg.host, 5439, pg.port, settings.dashboards.reader_user,
         pg.database),
    )
    out: Json = {}
    for logical_id, name, param, engine, aws_host, host, aws_port, port, user, db in spec:
        shape = {"engine": engine, "port": "PORT", "username": user, "dbname": db,
                 "host": "HOST"}
        local = json.dumps(shape | {"password": "${Password}"}, sort_keys=True)
        local = local.replace('"PORT"', str(port)).replace('"HOST"', json.dumps(host))
        aws = json.dumps(shape, sort_keys=True).replace('"PORT"', str(aws_port)) \
            .replace('"HOST"', '"${Host}"')
        out[logical_id] = {"Type": "AWS::SecretsManager::Secret", "Properties": {
            "Name": name,
            "Description": "shoplake database credentials (RDS secret format)",
            "SecretString": {"Fn::If": [LOCAL_ONLY, {"Fn::Sub": [local, {
                "Password": ref(param)}]}, ref("AWS::NoValue")]},
            "GenerateSecretString": {"Fn::If": [AWS_ONLY, {
                "SecretStringTemplate": {"Fn::Sub": [aws, {"Host": aws_host}]},
                "GenerateStringKey": "password", "PasswordLength": 32,
                "ExcludePunctuation": True}, ref("AWS::NoValue")]},
        }}
    out["SecretPiiSalt"] = {"Type": "AWS::SecretsManager::Secret", "Properties": {
        "Name": settings.glue.pii_salt_secret,
        "Description": "shoplake: the salt PII columns are hashed with",
        "SecretString": {"Fn::If": [LOCAL_ONLY, {"Fn::Sub": ['{"salt": "${Salt}"}', {
            "Salt": ref("PiiSalt")}]}, ref("AWS::NoValue")]},
        "GenerateSecretString": {"Fn::If": [AWS_ONLY, {
            "SecretStringTemplate": "{}", "GenerateStringKey": "salt", "PasswordLength": 48,
            "ExcludePunctuation": True}, ref("AWS::NoValue")]},
    }}
    return out


def _state_machine(settings: Settings, target: str, substitutions: Json) -> Json:
    """The state machine in binding `target`, its `${...}` filled by `substitutions`."""
    return {"Type": "AWS::StepFunctions::StateMachine",
            "Condition": AWS_ONLY if target == "aws" else LOCAL_ONLY,
            "Properties": {
                "StateMachineName": settings.orchestration.state_machine,
                "StateMachineType": "STANDARD", "RoleArn": att("StateMachineRole", "Arn"),
                "DefinitionString": asl.render_json(settings, target, placeholders=True),
                "DefinitionSubstitutions": substitutions}}


def _orchestration(settings: Settings, jobs: list[str]) -> Json:
    from pipeline.orchestration.names import FAILURE_RULE
    from pipeline.orchestration.schedule import ARRIVAL_RULE, ON_ARRIVAL, SCHEDULE_RULE, stored

    o = settings.orchestration
    machine_arn = _arn("states", f"stateMachine:{o.state_machine}")
    out: Json = {}
    for step in STEPS:
        out[logical("Activity", step)] = {
            "Type": "AWS::StepFunctions::Activity", "Condition": LOCAL_ONLY,
            "Properties": {"Name": activity_name(settings, step)}}
    out["StateMachineAws"] = _state_machine(settings, "aws", {
        "DmsTaskArn": ref("ReplicationTask"), "Crawler": ref("Crawler"),
        "Workgroup": {"Fn::GetAtt": ["Workgroup", "Workgroup.WorkgroupName"]},
        **{logical("Job", j): ref(logical("Job", j)) for j in jobs}})
    out["StateMachineLocal"] = _state_machine(
        settings, "local", {logical("Activity", s): ref(logical("Activity", s))
                            for s in state_machine_activities(settings)})
    lake = settings.lake
    out["StateMachineRole"] = {"Type": "AWS::IAM::Role", "Properties": {
        "RoleName": o.role_name,
        "AssumeRolePolicyDocument": _trust("states.amazonaws.com", "events.amazonaws.com"),
        "Policies": [_policy("run-the-pipeline", [
            # The Guard state lists the machine's own executions; rules start them.
            _allow(["states:ListExecutions"], machine_arn),
            _allow(["states:StartExecution"], machine_arn),
            _allow(["events:PutEvents"], _arn("events", "event-bus/default")),
            _allow(["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns",
                    "glue:BatchStopJobRun"],
                   [_arn("glue", f"job/{j}") for j in jobs]),
            _allow(["glue:StartCrawler", "glue:GetCrawler"],
                   _arn("glue", f"crawler/{settings.glue.crawler}")),
            _allow(["dms:DescribeReplicationTasks", "dms:StartReplicationTask"], "*"),
            _allow(["redshift-data:ExecuteStatement", "redshift-data:DescribeStatement"],
                   "*"),
            _allow(["redshift-serverless:GetCredentials"],
                   _arn("redshift-serverless", "workgroup/*")),
        ])]}}
    # RunFailed: the state machine's NotifyFailure event, delivered to a queue.
    out["FailureQueue"] = {"Type": "AWS::SQS::Queue",
                           "Properties": {"QueueName": o.failure_queue}}
    out["FailureRule"] = {"Type": "AWS::Events::Rule", "Properties": {
        "Name": FAILURE_RULE, "State": "ENABLED",
        "Description": "A pipeline run failed (sent by its NotifyFailure state)",
        "EventPattern": {"source": ["shoplake.pipeline"], "detail-type": ["RunFailed"]},
        "Targets": [{"Id": "failure-queue", "Arn": att("FailureQueue", "Arn")}]}}
    out["FailureQueuePolicy"] = {"Type": "AWS::SQS::QueuePolicy", "Properties": {
        "Queues": [ref("FailureQueue")],
        "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": att("FailureQueue", "Arn"),
            "Condition": {"ArnEquals": {"aws:SourceArn": att("FailureRule", "Arn")}}}]}}}
    schedule = stored(settings)
    if schedule:
        target = {"Id": "state-machine", "RoleArn": att("StateMachineRole", "Arn"),
                  "Arn": {"Fn::If": [AWS_ONLY, ref("StateMachineAws"),
                                     ref("StateMachineLocal")]}}
        if schedule == ON_ARRIVAL:
            rule = {"Name": ARRIVAL_RULE, "EventPattern": {
                "source": ["aws.s3"], "detail-type": ["Object Created"],
                "detail": {"bucket": {"name": [lake.bronze_bucket]},
                           "object": {"key": [{"prefix": f"{settings.mysql.database}/"}]}}},
                "Description": "A CDC file landed in bronze: start a run"}
            target["Input"] = json.dumps(asl.execution_input("arrival", o.arrival_debounce_s))
        else:
            rule = {"Name": SCHEDULE_RULE, "ScheduleExpression": schedule,
                    "Description": "Start a pipeline run"}
            target["Input"] = json.dumps(asl.execution_input("schedule"))
        out["ScheduleRule"] = {"Type": "AWS::Events::Rule", "Properties": {
            **rule, "State": "ENABLED", "Targets": [target]}}
    return out


# -- AWS only ---------------------------------------------------------------------------------
def _aws(resource_type: str, properties: Json, **extra: Any) -> Json:
    return {"Type": resource_type, "Condition": AWS_ONLY, "Properties": properties, **extra}


def _network(settings: Settings) -> Json:
    """The compose networks on AWS: `private` (the databases, DMS, Glue) is the VPC's
    private subnets; `edge` (S3 and the AWS APIs) is reached through VPC endpoints."""
    out: Json = {"Vpc": _aws("AWS::EC2::VPC", {
        "CidrBlock": VPC_CIDR, "EnableDnsHostnames": True, "EnableDnsSupport": True,
        "Tags": [{"Key": "Name", "Value": "shoplake"}]})}
    out["PrivateRouteTable"] = _aws("AWS::EC2::RouteTable", {"VpcId": ref("Vpc")})
    for i, cidr in enumerate(SUBNET_CIDRS, start=1):
        out[f"PrivateSubnet{i}"] = _aws("AWS::EC2::Subnet", {
            "VpcId": ref("Vpc"), "CidrBlock": cidr, "MapPublicIpOnLaunch": False,
            "AvailabilityZone": {"Fn::Select": [i - 1, {"Fn::GetAZs": ""}]},
            "Tags": [{"Key": "Name", "Value": f"shoplake-private-{i}"}]})
        out[f"PrivateSubnet{i}Routes"] = _aws("AWS::EC2::SubnetRouteTableAssociation", {
            "SubnetId": ref(f"PrivateSubnet{i}"), "RouteTableId": ref("PrivateRouteTable")})
    out["S3Endpoint"] = _aws("AWS::EC2::VPCEndpoint", {
        "VpcId": ref("Vpc"), "VpcEndpointType": "Gateway",
        "ServiceName": sub("com.amazonaws.${AWS::Region}.s3"),
        "RouteTableIds": [ref("PrivateRouteTable")]})
    for service in ("secretsmanager", "glue", "redshift-data", "logs", "sts"):
        out[logical("Endpoint", service)] = _aws("AWS::EC2::VPCEndpoint", {
            "VpcId": ref("Vpc"), "VpcEndpointType": "Interface", "PrivateDnsEnabled": True,
            "ServiceName": sub(f"com.amazonaws.${{AWS::Region}}.{service}"),
            "SubnetIds": _subnets(), "SecurityGroupIds": [ref("EndpointSecurityGroup")]})
    groups = {
        "SourceDbSecurityGroup": "RDS MySQL: 3306 from DMS and Glue only",
        "ReplicationSecurityGroup": "DMS replication instance (egress only)",
        "GlueSecurityGroup": "Glue jobs (self-referencing, as Glue connections need)",
        "WarehouseSecurityGroup": "Redshift Serverless: 5439 from Glue only",
        "EndpointSecurityGroup": "Interface endpoints: 443 from inside the VPC",
    }
    for name, description in groups.items():
        out[name] = _aws("AWS::EC2::SecurityGroup", {
            "GroupDescription": f"shoplake {description}", "VpcId": ref("Vpc")})
    rules = (("SourceDbSecurityGroup", 3306, "ReplicationSecurityGroup"),
             ("SourceDbSecurityGroup", 3306, "GlueSecurityGroup"),
             ("WarehouseSecurityGroup", 5439, "GlueSecurityGroup"),
             ("GlueSecurityGroup", None, "GlueSecurityGroup"))
    for group, port, source in rules:
        name = f"{group.removesuffix('SecurityGroup')}From{source.removesuffix('SecurityGroup')}"
        out[f"{name}Ingress"] = _aws("AWS::EC2::SecurityGroupIngress", {
            "GroupId": ref(group), "SourceSecurityGroupId": ref(source),
            "IpProtocol": "tcp", "FromPort": port or 0, "ToPort": port or 65535})
    out["EndpointFromVpcIngress"] = _aws("AWS::EC2::SecurityGroupIngress", {
        "GroupId": ref("EndpointSecurityGroup"), "CidrIp": VPC_CIDR, "IpProtocol": "tcp",
        "FromPort": 443, "ToPort": 443})
    return out


def _subnets() -> list[Json]:
    return [ref(f"PrivateSubnet{i}") for i in range(1, len(SUBNET_CIDRS) + 1)]


def _source(settings: Settings) -> Json:
    """RDS MySQL with the binlog CDC needs: ROW format, full images and column metadata
    (what the local MariaDB/MySQL run with), UTC, utf8mb4."""
    return {
        "SourceDbSubnets": _aws("AWS::RDS::DBSubnetGroup", {
            "DBSubnetGroupDescription": "shoplake source (private subnets)",
            "SubnetIds": _subnets()}),
        "SourceDbParameters": _aws("AWS::RDS::DBParameterGroup", {
            "Family": "mysql8.4", "Description": "shoplake: binlog for DMS CDC",
            "Parameters": {"binlog_format": "ROW", "binlog_row_image": "FULL",
                           "binlog_row_metadata": "FULL", "time_zone": "UTC",
                           "character_set_server": "utf8mb4",
                           "collation_server": "utf8mb4_0900_ai_ci"}}),
        "SourceDbAdminSecret": _aws("AWS::SecretsManager::Secret", {
            "Name": f"{settings.mysql.secret_name}-admin",
            "Description": "shoplake: the RDS master login (used once, by `deploy aws`)",
            "GenerateSecretString": {"SecretStringTemplate": '{"username": "admin"}',
                                     "GenerateStringKey": "password", "PasswordLength": 32,
                                     "ExcludePunctuation": True}}),
        "SourceDb": _aws("AWS::RDS::DBInstance", {
            "DBInstanceIdentifier": "shoplake-source", "Engine": "mysql",
            "EngineVersion": MYSQL_ENGINE_VERSION, "DBInstanceClass": "db.t4g.micro",
            "AllocatedStorage": "20", "StorageEncrypted": True, "DBName": settings.mysql.database,
            "MasterUsername": sub("{{resolve:secretsmanager:${SourceDbAdminSecret}:"
                                  "SecretString:username}}"),
            "MasterUserPassword": sub("{{resolve:secretsmanager:${SourceDbAdminSecret}:"
                                      "SecretString:password}}"),
            "DBParameterGroupName": ref("SourceDbParameters"),
            "DBSubnetGroupName": ref("SourceDbSubnets"), "PubliclyAccessible": False,
            # DMS CDC needs automated backups (they turn the binlog on).
            "BackupRetentionPeriod": 1,
            "VPCSecurityGroups": [ref("SourceDbSecurityGroup")]},
            DeletionPolicy="Snapshot", UpdateReplacePolicy="Snapshot"),
    }


def dms_s3_settings(settings: Settings) -> Json:
    """The DMS S3 target settings that match what the local CDC writes (`cdc.*`): the same
    format, commit-time column, Op in full-load files, batch interval and size."""
    c = settings.cdc
    out: Json = {
        "BucketName": settings.lake.bronze_bucket, "DataFormat": c.data_format,
        "TimestampColumnName": c.timestamp_column,
        "IncludeOpForFullLoad": c.include_op_for_full_load,
        "CdcMaxBatchInterval": max(1, round(c.batch_interval_s)),
        "CdcMinFileSize": c.min_file_size_kb,
        "DatePartitionEnabled": False,
        "ServiceAccessRoleArn": att("DmsS3Role", "Arn"),
    }
    if c.data_format == "parquet":
        out |= {"ParquetVersion": "parquet-2-0", "EnableStatistics": True}
    else:
        out |= {"CsvNullValue": c.csv_null_value, "AddColumnName": True}
    return out


def table_mappings(settings: Settings) -> Json:
    """Every table of the source schema, less `cdc.exclude_tables`."""
    schema = settings.mysql.database
    rules: list[Json] = [{"rule-type": "selection", "rule-id": "1", "rule-name": "shop",
                          "object-locator": {"schema-name": schema, "table-name": "%"},
                          "rule-action": "include"}]
    excluded = [t.strip() for t in settings.cdc.exclude_tables.split(",") if t.strip()]
    for i, table in enumerate(excluded, start=2):
        rules.append({"rule-type": "selection", "rule-id": str(i), "rule-name": f"not-{table}",
                      "object-locator": {"schema-name": schema, "table-name": table},
                      "rule-action": "exclude"})
    return {"rules": rules}


def _dms(settings: Settings) -> Json:
    bronze = settings.lake.bronze_bucket
    return {
        "ReplicationSubnets": _aws("AWS::DMS::ReplicationSubnetGroup", {
            "ReplicationSubnetGroupDescription": "shoplake DMS (private subnets)",
            "SubnetIds": _subnets()}),
        "ReplicationInstance": _aws("AWS::DMS::ReplicationInstance", {
            "ReplicationInstanceClass": "dms.t3.small", "AllocatedStorage": 50,
            "PubliclyAccessible": False,
            "ReplicationSubnetGroupIdentifier": ref("ReplicationSubnets"),
            "VpcSecurityGroupIds": [ref("ReplicationSecurityGroup")]}),
        "DmsS3Role": _aws("AWS::IAM::Role", {
            "AssumeRolePolicyDocument": _trust("dms.amazonaws.com"),
            "Policies": [_policy("write-bronze", [
                _allow(["s3:PutObject", "s3:DeleteObject", "s3:PutObjectTagging"],
                       sub(f"arn:${{AWS::Partition}}:s3:::{bronze}/*")),
                _allow(["s3:ListBucket"], sub(f"arn:${{AWS::Partition}}:s3:::{bronze}"))])]}),
        "DmsSecretsRole": _aws("AWS::IAM::Role", {
            "AssumeRolePolicyDocument": _trust(sub("dms.${AWS::Region}.amazonaws.com")),
            "Policies": [_policy("read-the-cdc-login", [
                _allow(["secretsmanager:GetSecretValue"], ref("SecretCdc"))])]}),
        "SourceEndpoint": _aws("AWS::DMS::Endpoint", {
            "EndpointType": "source", "EngineName": "mysql",
            "MySqlSettings": {"SecretsManagerSecretId": ref("SecretCdc"),
                              "SecretsManagerAccessRoleArn": att("DmsSecretsRole", "Arn")}}),
        "BronzeEndpoint": _aws("AWS::DMS::Endpoint", {
            "EndpointType": "target", "EngineName": "s3",
            "S3Settings": dms_s3_settings(settings)}),
        "ReplicationTask": _aws("AWS::DMS::ReplicationTask", {
            "ReplicationTaskIdentifier": settings.cdc.task_name,
            "MigrationType": "full-load-and-cdc",
            "ReplicationInstanceArn": ref("ReplicationInstance"),
            "SourceEndpointArn": ref("SourceEndpoint"),
            "TargetEndpointArn": ref("BronzeEndpoint"),
            "TableMappings": json.dumps(table_mappings(settings), sort_keys=True)}),
    }


def glue_default_arguments(settings: Settings, name: str) -> Json:
    """What every run of Glue job `name` gets besides the state machine's Arguments: Iceberg
    on, silver's catalog binding for AWS, the shoplake wheel, our own bookmarks."""
    artifacts = settings.lake.artifacts_bucket
    args: Json = {
        "--job-bookmark-option": "job-bookmark-disable",
        "--TempDir": f"s3://{artifacts}/glue-temp/",
        "--additional-python-modules": f"s3://{artifacts}/{SCRIPTS_PREFIX}/"
                                       "shoplake-0.1.0-py3-none-any.whl",
    }
    if name in JOBS:
        conf = catalog_binding(settings, "aws")
        first, *rest = [f"{k}={v}" for k, v in conf.items()]
        args |= {"--datalake-formats": "iceberg", "--enable-glue-datacatalog": "true",
                 "--conf": " --conf ".join([first, *rest])}
    return args


def _glue(settings: Settings, jobs: list[str]) -> Json:
    lake, schema = settings.lake, settings.mysql.database
    artifacts = lake.artifacts_bucket
    out: Json = {
        "BronzeDatabase": _aws("AWS::Glue::Database", {
            "CatalogId": ref("AWS::AccountId"),
            "DatabaseInput": {"Name": settings.glue.database,
                              "Description": "bronze: the DMS files, as the crawler finds them"}}),
        "SilverDatabase": _aws("AWS::Glue::Database", {
            "CatalogId": ref("AWS::AccountId"),
            "DatabaseInput": {"Name": schema, "Description": "silver: Iceberg tables",
                              "LocationUri": f"s3://{lake.silver_bucket}/{schema}"}}),
        "CrawlerRole": _aws("AWS::IAM::Role", {
            "AssumeRolePolicyDocument": _trust("glue.amazonaws.com"),
            "ManagedPolicyArns": [sub("arn:${AWS::Partition}:iam::aws:policy/service-role/"
                                      "AWSGlueServiceRole")],
            "Policies": [_policy("read-bronze", [
                _allow(["s3:GetObject", "s3:ListBucket"], _bucket_arns(lake.bronze_bucket))])]}),
        "Crawler": _aws("AWS::Glue::Crawler", {
            "Name": settings.glue.crawler, "Role": att("CrawlerRole", "Arn"),
            "DatabaseName": ref("BronzeDatabase"),
            "Targets": {"S3Targets": [{"Path": f"s3://{lake.bronze_bucket}/{schema}/",
                                       "Exclusions": ["_shoplake_cdc/**"]}]},
            "SchemaChangePolicy": {"UpdateBehavior": "UPDATE_IN_DATABASE",
                                   "DeleteBehavior": "LOG"},
            # CDC files land in folders crawled before: a new-folders-only crawl would miss
            # them (and Glue allows it only with a LOG-only schema change policy).
            "RecrawlPolicy": {"RecrawlBehavior": "CRAWL_EVERYTHING"}}),
        "GlueJobRole": _aws("AWS::IAM::Role", {
            "AssumeRolePolicyDocument": _trust("glue.amazonaws.com"),
            "ManagedPolicyArns": [sub("arn:${AWS::Partition}:iam::aws:policy/service-role/"
                                      "AWSGlueServiceRole")],
            "Policies": [_policy("the-lake", [
                _allow(["s3:GetObject", "s3:ListBucket"], _bucket_arns(lake.bronze_bucket)),
                _allow(["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"],
                       _bucket_arns(lake.silver_bucket) + _bucket_arns(artifacts)),
                _allow(["secretsmanager:GetSecretValue"],
                       [ref("SecretWarehouse"), ref("SecretPiiSalt"), ref("SecretMysql")]),
                _allow(["redshift-data:ExecuteStatement", "redshift-data:DescribeStatement",
                        "redshift-data:GetStatementResult"], "*"),
                _allow(["redshift-serverless:GetCredentials"],
                       _arn("redshift-serverless", "workgroup/*")),
            ])]}),
    }
    # Glue jobs reach RDS (reconcile reads the source) and the workgroup inside the VPC.
    out["GlueConnection"] = _aws("AWS::Glue::Connection", {
        "CatalogId": ref("AWS::AccountId"),
        "ConnectionInput": {
            "Name": "shoplake-private", "ConnectionType": "NETWORK",
            "Description": "shoplake: Glue jobs in the private subnets",
            "PhysicalConnectionRequirements": {
                "SubnetId": ref("PrivateSubnet1"),
                "AvailabilityZone": att("PrivateSubnet1", "AvailabilityZone"),
                "SecurityGroupIdList": [ref("GlueSecurityGroup")]}}})
    for name in jobs:
        # The steps that need no Spark run as Glue 5.0 jobs too: Python shell stops at
        # Python 3.9 and the shoplake wheel needs 3.11. Two G.1X workers is Glue's least.
        props: Json = {
            "Name": name, "Role": att("GlueJobRole", "Arn"),
            "Command": {"Name": "glueetl", "PythonVersion": "3", "ScriptLocation":
                        f"s3://{artifacts}/{SCRIPTS_PREFIX}/{job_script(name)}"},
            "DefaultArguments": glue_default_arguments(settings, name),
            "Connections": {"Connections": [ref("GlueConnection")]},
            "ExecutionProperty": {"MaxConcurrentRuns": len(TABLES)},
            "Timeout": max(1, settings.orchestration.task_timeout_s // 60),
            "MaxRetries": 0,  # the state machine retries
            "GlueVersion": GLUE_VERSION, "WorkerType": "G.1X", "NumberOfWorkers": 2,
        }
        out[logical("Job", name)] = _aws("AWS::Glue::Job", props)
    return out


WAREHOUSE_ADMIN = "admin"
"""The Redshift Serverless admin: `deploy aws` logs in as it once, through the Data API,
to create the warehouse owner and the dashboards' reader with their secrets' passwords."""


def _redshift(settings: Settings) -> Json:
    """The namespace's admin password comes from its own generated secret: the owner's
    secret (SecretWarehouse) names the workgroup's host, so the namespace cannot depend on
    it, and a ManageAdminPassword secret would hold a second password for the same login."""
    pg = settings.postgres
    secret = "{{resolve:secretsmanager:${WarehouseAdminSecret}:SecretString:%s}}"
    return {
        "WarehouseAdminSecret": _aws("AWS::SecretsManager::Secret", {
            "Name": f"{pg.secret_name}-admin",
            "Description": "shoplake: the Redshift Serverless admin (used once, by "
                           "`deploy aws`)",
            "GenerateSecretString": {
                "SecretStringTemplate": json.dumps({"username": WAREHOUSE_ADMIN}),
                "GenerateStringKey": "password", "PasswordLength": 32,
                "ExcludePunctuation": True, "RequireEachIncludedType": True}}),
        "Namespace": _aws("AWS::RedshiftServerless::Namespace", {
            "NamespaceName": pg.workgroup, "DbName": pg.database,
            "AdminUsername": sub(secret % "username"),
            "AdminUserPassword": sub(secret % "password")}),
        "Workgroup": _aws("AWS::RedshiftServerless::Workgroup", {
            "WorkgroupName": pg.workgroup, "NamespaceName": ref("Namespace"),
            "BaseCapacity": 8, "PubliclyAccessible": False,
            "SubnetIds": _subnets(), "SecurityGroupIds": [ref("WarehouseSecurityGroup")]}),
    }


class _Dumper(yaml.SafeDumper):
    """Block style, keys in insertion order, multi-line strings as literal blocks, and no
    anchors or aliases (CloudFormation rejects YAML aliases)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(template: Json) -> str:
    return yaml.dump(template, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)
