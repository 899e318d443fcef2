"""One Amazon States Language template for a pipeline run, rendered in two bindings.

`render(settings, "aws")` gives the state machine as it would run on AWS, each task on the
real integration (glue:startJobRun.sync, aws-sdk:glue:startCrawler/getCrawler polling,
aws-sdk:redshiftdata:executeStatement/describeStatement polling, DMS task status through
aws-sdk:databasemigration, events:putEvents); `render(settings, "local")` gives the same
states, names and transitions, each task an activity with the same Parameters, served by
`shoplake worker` (LocalStack runs neither Glue nor Redshift). Only Resource ARNs, wait
times and two Choice rules (how DMS status reads) differ between the two.

The flow: Start -> Debounce -> Guard (the oldest running execution goes on, a later one
ends in AlreadyRunning) -> WaitForCdcSync (-> ReplicateNow when no follower runs) ->
StartCrawler/GetCrawler -> Transform (Map: bronze_to_silver per table) -> LoadDims
(Parallel: customer, product; each a Glue job staging, then a CALL) -> LoadFacts (orders,
then order items) -> QualityAndReconcile -> Maintain (Map: compaction and snapshot expiry
per silver table, when due) -> CheckArrivals (on arrival: round again while
files keep coming) -> WriteReport -> Succeeded. Every task retries Shoplake.Transient and
States.Timeout with backoff; a failure anywhere is caught, sent as a RunFailed event, and
ends in RunFailed.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.config import Settings
from pipeline.glue.arguments import as_glue, lake_arguments
from pipeline.orchestration.names import activity_name
from pipeline.warehouse.model import LOADS, SCHEMA

TARGETS = ("aws", "local")
TABLES = ("customers", "products", "orders", "order_items")

DIMS = tuple((x.step, x.job, x.procedure) for x in LOADS if x.kind == "dim")
FACTS = tuple((x.step, x.job, x.procedure) for x in LOADS if x.kind == "fact")


class _Binding:
    """Resources and the few values that differ between AWS and the local stand-ins."""

    def __init__(self, settings: Settings, target: str, placeholders: bool = False) -> None:
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got `{target}`")
        self.settings, self.target = settings, target
        o = settings.orchestration
        self.region, self.account = settings.localstack.region, o.account_id
        self.local = target == "local"
        self.placeholders = placeholders
        """CloudFormation's DefinitionSubstitutions fill `${Name}` in: the template's
        resources (activities, jobs, crawler, DMS task, workgroup) give the values."""

    def _sub(self, key: str, value: str) -> str:
        return f"${{{key}}}" if self.placeholders else value

    def activity(self, step: str) -> str:
        return self._sub(substitution("Activity", step),
                         f"arn:aws:states:{self.region}:{self.account}:activity:"
                         f"{activity_name(self.settings, step)}")

    def job(self, name: str) -> str:
        return name if self.local else self._sub(substitution("Job", name), name)

    @property
    def crawler(self) -> str:
        name = self.settings.glue.crawler
        return name if self.local else self._sub("Crawler", name)

    @property
    def dms_task(self) -> str:
        arn = f"arn:aws:dms:{self.region}:{self.account}:task:{self.settings.cdc.task_name}"
        return arn if self.local else self._sub("DmsTaskArn", arn)

    @property
    def workgroup(self) -> str:
        name = self.settings.postgres.workgroup
        return name if self.local else self._sub("Workgroup", name)

    def task_input(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """An aws-sdk task's Parameters, plus the run's id for the local worker (which holds
        the run lease by it); the real APIs reject a parameter they do not know."""
        return {**parameters, "run_id.$": "$.run_id"} if self.local else parameters

    @property
    def crawled_at(self) -> str:
        """When this run's crawl began: the local start_crawler says so in its answer; on
        AWS startCrawler answers nothing, and getCrawler's LastCrawl has the StartTime."""
        return "$.crawl.crawled_at" if self.local else "$.crawler.Crawler.LastCrawl.StartTime"

    def resource(self, step: str, aws: str) -> str:
        return self.activity(step) if self.local else aws

    @property
    def poll_wait_s(self) -> int:
        """How long a polling loop waits before asking again (locally the work is done
        when the start task returns, so the loop passes through without waiting)."""
        return 1 if self.local else 30


def substitution(kind: str, name: str) -> str:
    """A DefinitionSubstitutions key (letters and digits): `Job` + `bronze_to_silver` ->
    `JobBronzeToSilver`; also the logical id of the template's resource."""
    return kind + "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


def _retry(settings: Settings) -> list[dict[str, Any]]:
    o = settings.orchestration
    return [{"ErrorEquals": ["Shoplake.Transient", "States.Timeout"],
             "IntervalSeconds": o.retry_interval_s, "BackoffRate": 2.0,
             "MaxAttempts": o.retry_attempts, "MaxDelaySeconds": 30,
             "JitterStrategy": "FULL"}]


def _catch(state: str) -> list[dict[str, Any]]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
             "Next": f"Catch{state}"}]


def _task(b: _Binding, step: str, aws: str, parameters: dict[str, Any], next_: str | None,
          result_path: str | None, timeout_s: int | None = None,
          catch: str | None = None) -> dict[str, Any]:
    o = b.settings.orchestration
    state: dict[str, Any] = {"Type": "Task", "Resource": b.resource(step, aws),
                             "Parameters": parameters, "ResultPath": result_path,
                             "TimeoutSeconds": timeout_s or o.task_timeout_s,
                             "HeartbeatSeconds": o.heartbeat_s, "Retry": _retry(b.settings)}
    if catch:
        state["Catch"] = _catch(catch)
    if next_ is None:
        state["End"] = True
    else:
        state["Next"] = next_
    return state


def _glue_job(b: _Binding, job: str, arguments: dict[str, Any], next_: str | None,
              result_path: str | None, catch: str | None = None) -> dict[str, Any]:
    return _task(b, "glue_job", "arn:aws:states:::glue:startJobRun.sync",
                 {"JobName": b.job(job), "Arguments": arguments}, next_, result_path,
                 catch=catch)


def glue_paths(settings: Settings) -> dict[str, str]:
    """The lake's Glue arguments every job gets (`arguments.lake_arguments`, with `--`)."""
    return as_glue(lake_arguments(settings))


def _table_map(b: _Binding, name: str, comment: str, task: str, job: str, next_: str
               ) -> dict[str, Any]:
    """A Map state running Glue job `job` once per table of the input (`$.tables`)."""
    return {
        "Type": "Map", "Comment": comment,
        "ItemsPath": "$.tables", "MaxConcurrency": len(TABLES),
        "ItemSelector": {"table.$": "$$.Map.Item.Value", "run_id.$": "$.run_id"},
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "INLINE"}, "StartAt": task,
            "States": {task: _glue_job(b, job, {"--table.$": "$.table", "--run_id.$": "$.run_id",
                                                **glue_paths(b.settings)},
                                     None, "$.job")}},
        "ResultPath": None, "Catch": _catch(name), "Next": next_}


def statement_sql(procedure: str) -> str:
    """The executeStatement SQL of a load procedure: the run id as a named parameter."""
    return f"CALL {SCHEMA}.{procedure}(:run_id)"


def _call(b: _Binding, name: str, job: str, procedure: str, next_: str) -> dict[str, Any]:
    """Stage with a Glue job, CALL the procedure, poll the statement until it is done."""
    sql = statement_sql(procedure)
    # The Redshift Data API's own named parameters carry the run id into the CALL.
    statement = {"WorkgroupName": b.workgroup, "Database": b.settings.postgres.database,
                 "Sql": sql, "Parameters": [{"name": "run_id", "value.$": "$.run_id"}]}
    return {
        f"Load{name}": _glue_job(b, job, {"--run_id.$": "$.run_id", "--call_procedure": "false",
                                          "--full.$": "$.full",
                                          **glue_paths(b.settings)},
                                 f"Merge{name}", "$.job"),
        f"Merge{name}": _task(b, "execute_statement",
                              "arn:aws:states:::aws-sdk:redshiftdata:executeStatement",
                              statement, f"Describe{name}", "$.statement"),
        f"Describe{name}": _task(b, "describe_statement",
                                 "arn:aws:states:::aws-sdk:redshiftdata:describeStatement",
                                 {"Id.$": "$.statement.Id"}, f"{name}Done", "$.described"),
        f"{name}Done": {"Type": "Choice", "Choices": [
            {"Variable": "$.described.Status", "StringEquals": "FINISHED", "Next": next_},
            {"Or": [{"Variable": "$.described.Status", "StringEquals": "FAILED"},
                    {"Variable": "$.described.Status", "StringEquals": "ABORTED"}],
             "Next": f"{name}Failed"}],
            "Default": f"WaitFor{name}"},
        f"WaitFor{name}": {"Type": "Wait", "Seconds": b.poll_wait_s, "Next": f"Describe{name}"},
        f"{name}Failed": {"Type": "Fail", "Error": "Shoplake.Terminal",
                          "Cause": f"{sql} failed"},
    }


def _branch(b: _Binding, name: str, job: str, procedure: str) -> dict[str, Any]:
    states = _call(b, name, job, procedure, f"{name}Loaded")
    states[f"{name}Loaded"] = {"Type": "Succeed"}
    return {"StartAt": f"Load{name}", "States": states}


def render(settings: Settings, target: str, placeholders: bool = False) -> dict[str, Any]:
    """The state machine definition for `target` (`aws` or `local`); `placeholders` leaves
    `${Name}` for CloudFormation's DefinitionSubstitutions (`shoplake deploy render`)."""
    b = _Binding(settings, target, placeholders)
    o = settings.orchestration
    crawler = {"Name": b.crawler}
    dms = b.dms_task
    states: dict[str, Any] = {
        "Defaults": {"Type": "Choice", "Comment": "An input without `full` (a rule or a "
                     "script of an older version) runs as it did: change-only.",
                     "Choices": [{"Variable": "$.full", "IsPresent": True, "Next": "Start"}],
                     "Default": "NotFull"},
        "NotFull": {"Type": "Pass", "Result": "false", "ResultPath": "$.full", "Next": "Start"},
        "Start": {"Type": "Pass", "Comment": "The run's id is the execution's name.",
                  "Parameters": {"run_id.$": "$$.Execution.Name", "trigger.$": "$.trigger",
                                 "debounce_s.$": "$.debounce_s", "tables.$": "$.tables",
                                 "full.$": "$.full"},
                  "Next": "Debounce"},
        "Debounce": {"Type": "Wait", "SecondsPath": "$.debounce_s", "Next": "Guard"},
        "Guard": {"Type": "Task", "Comment": "Runs never overlap: the oldest goes on.",
                  "Resource": "arn:aws:states:::aws-sdk:sfn:listExecutions",
                  "Parameters": {"StateMachineArn.$": "$$.StateMachine.Id",
                                 "StatusFilter": "RUNNING"},
                  "ResultSelector": {"oldest.$": "States.ArrayGetItem($.Executions, "
                                                 "States.MathAdd(States.ArrayLength("
                                                 "$.Executions), -1))"},
                  "ResultPath": "$.guard", "Retry": _retry(settings),
                  "Catch": _catch("Guard"), "Next": "IsOldestRun"},
        "IsOldestRun": {"Type": "Choice", "Choices": [
            {"Variable": "$.guard.oldest.Name", "StringEqualsPath": "$.run_id",
             "Next": "WaitForCdcSync"}], "Default": "AlreadyRunning"},
        "AlreadyRunning": {"Type": "Succeed", "Comment": "An older run is in progress."},
        "WaitForCdcSync": _task(
            b, "wait_for_cdc_sync",
            "arn:aws:states:::aws-sdk:databasemigration:describeReplicationTasks",
            b.task_input({"Filters": [{"Name": "replication-task-arn", "Values": [dms]}]}),
            "CdcFollower", "$.cdc", catch="WaitForCdcSync"),
        "CdcFollower": {"Type": "Choice", "Choices": [
            {"Variable": "$.cdc.follower", "BooleanEquals": True, "Next": "StartCrawler"}
            if b.local else
            {"Variable": "$.cdc.ReplicationTasks[0].Status", "StringEquals": "running",
             "Next": "StartCrawler"}], "Default": "ReplicateNow"},
        "ReplicateNow": _task(
            b, "replicate_now",
            "arn:aws:states:::aws-sdk:databasemigration:startReplicationTask",
            b.task_input({"ReplicationTaskArn": dms,
                          "StartReplicationTaskType": "resume-processing"}),
            "StartCrawler", "$.replicated", catch="ReplicateNow"),
        "StartCrawler": _task(b, "start_crawler", "arn:aws:states:::aws-sdk:glue:startCrawler",
                              b.task_input(crawler), "GetCrawler", "$.crawl",
                              catch="StartCrawler"),
        "GetCrawler": _task(b, "get_crawler", "arn:aws:states:::aws-sdk:glue:getCrawler",
                            crawler, "CrawlerReady", "$.crawler", catch="GetCrawler"),
        "CrawlerReady": {"Type": "Choice", "Choices": [
            {"Variable": "$.crawler.Crawler.State", "StringEquals": "READY",
             "Next": "Transform"}], "Default": "WaitForCrawler"},
        "WaitForCrawler": {"Type": "Wait", "Seconds": b.poll_wait_s, "Next": "GetCrawler"},
        "Transform": _table_map(b, "Transform", "bronze_to_silver, one task per table.",
                                "BronzeToSilver", "bronze_to_silver", "LoadDims"),
        "LoadDims": {"Type": "Parallel", "Comment": "The SCD2 dimensions, side by side.",
                     "Branches": [_branch(b, n, j, p) for n, j, p in DIMS],
                     "ResultPath": None, "Catch": _catch("LoadDims"), "Next": "LoadFacts"},
        "LoadFacts": {"Type": "Parallel", "Comment": "Orders, then their items.",
                      "Branches": [{"StartAt": f"Load{FACTS[0][0]}", "States": {
                          **_call(b, *FACTS[0], f"Load{FACTS[1][0]}"),
                          **_call(b, *FACTS[1], "FactsLoaded"),
                          "FactsLoaded": {"Type": "Succeed"}}}],
                      "ResultPath": None, "Catch": _catch("LoadFacts"),
                      "Next": "QualityAndReconcile"},
        "QualityAndReconcile": _glue_job(b, "shoplake_quality_and_reconcile",
                                         {"--run_id.$": "$.run_id"}, "Maintain",
                                         "$.quality", catch="QualityAndReconcile"),
        # After the loads and the check, inside the run (which holds the run lease): never
        # at the same time as a MERGE on the table. Each task works only when a threshold
        # is passed (spark_jobs/maintain_silver.py).
        "Maintain": _table_map(b, "Maintain", "Compaction and snapshot expiry, per silver "
                               "table.", "MaintainSilver", "maintain_silver", "CheckArrivals"),
        "CheckArrivals": _glue_job(b, "shoplake_check_arrivals",
                                   {"--run_id.$": "$.run_id",
                                    "--crawled_at.$": f"States.Format('{{}}', {b.crawled_at})"},
                                   "MoreArrived", "$.arrivals", catch="CheckArrivals"),
        "MoreArrived": {"Type": "Choice", "Choices": [
            {"And": [{"Variable": "$.trigger", "StringEquals": "arrival"},
                     {"Variable": "$.arrivals.more", "BooleanEquals": True}],
             "Next": "WaitForCdcSync"}], "Default": "WriteReport"},
        "WriteReport": {**_glue_job(b, "shoplake_write_run_report",
                                    {"--execution_arn.$": "$$.Execution.Id",
                                     "--outcome": "SUCCEEDED"}, "Succeeded", None),
                        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error",
                                   "Next": "Succeeded"}]},
        "Succeeded": {"Type": "Succeed"},
        "NotifyFailure": {
            "Type": "Task", "Resource": "arn:aws:states:::events:putEvents",
            "Parameters": {"Entries": [{
                "Source": "shoplake.pipeline", "DetailType": "RunFailed",
                "EventBusName": "default",
                "Detail": {"run_id.$": "$.run_id", "state.$": "$.failure.state",
                           "error.$": "$.failure.error", "cause.$": "$.failure.cause"}}]},
            "ResultPath": None, "Retry": _retry(settings),
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.notify_error",
                       "Next": "WriteFailureReport"}],
            "Next": "WriteFailureReport"},
        "WriteFailureReport": {**_glue_job(b, "shoplake_write_run_report",
                                           {"--execution_arn.$": "$$.Execution.Id",
                                            "--outcome": "FAILED"}, "RunFailed", None),
                               "Catch": [{"ErrorEquals": ["States.ALL"],
                                          "ResultPath": "$.report_error", "Next": "RunFailed"}]},
        "RunFailed": {"Type": "Fail", "Error": "Shoplake.RunFailed",
                      "Cause": "a step failed: see the RunFailed event or `shoplake runs show`"},
    }
    for name in [n for n, s in states.items() if "Catch" in s and n not in
                 ("NotifyFailure", "WriteReport", "WriteFailureReport")]:
        states[f"Catch{name}"] = {
            "Type": "Pass", "Parameters": {"state": name, "error.$": "$.error.Error",
                                           "cause.$": "$.error.Cause"},
            "ResultPath": "$.failure", "Next": "NotifyFailure"}
    return {"Comment": f"shoplake pipeline run ({target} binding): CDC sync, crawl, "
                       "bronze_to_silver per table, SCD2 dims, facts, quality.",
            "StartAt": "Defaults", "TimeoutSeconds": o.task_timeout_s * 4, "States": states}


def render_json(settings: Settings, target: str, placeholders: bool = False) -> str:
    return json.dumps(render(settings, target, placeholders), indent=2, sort_keys=False)


def _flag(value: bool) -> str:
    """A Glue argument's boolean (arguments are strings)."""
    return "true" if value else "false"


def execution_input(trigger: str, debounce_s: int = 0,
                    tables: tuple[str, ...] = TABLES, full: bool = False) -> dict[str, Any]:
    """What a run is started with (by `shoplake run`, the schedule, an arrival). `full`:
    the load jobs copy the full state into staging (`shoplake run --full`)."""
    return {"trigger": trigger, "debounce_s": debounce_s, "tables": list(tables),
            "full": _flag(full)}


# -- structure checks (used by tests and by `statemachine render --check`) -------------------
def _walk(states: dict[str, Any], path: str = "") -> Any:
    for name, state in states.items():
        yield f"{path}{name}", name, state, states
        for i, branch in enumerate(state.get("Branches", [])):
            yield from _walk(branch["States"], f"{path}{name}[{i}]/")
        if "ItemProcessor" in state:
            yield from _walk(state["ItemProcessor"]["States"], f"{path}{name}/")


def _targets(state: dict[str, Any]) -> list[str]:
    out = [state["Next"]] if "Next" in state else []
    out += [c["Next"] for c in state.get("Choices", [])]
    out += [state["Default"]] if "Default" in state else []
    out += [c["Next"] for c in state.get("Catch", [])]
    return out


def problems(definition: dict[str, Any]) -> list[str]:
    """Every Next / Default / Catch target that does not exist and every state no path
    reaches, in each scope (the machine, each branch, the Map's processor)."""
    found = []

    def scope(states: dict[str, Any], start: str, where: str) -> None:
        if start not in states:
            found.append(f"{where}StartAt `{start}` is not a state")
        seen, todo = set(), [start]
        while todo:
            name = todo.pop()
            if name in seen or name not in states:
                continue
            seen.add(name)
            for target in _targets(states[name]):
                if target not in states:
                    found.append(f"{where}{name}: target `{target}` is not a state")
                todo.append(target)
        for name, state in states.items():
            if name not in seen:
                found.append(f"{where}{name} is unreachable")
            for i, branch in enumerate(state.get("Branches", [])):
                scope(branch["States"], branch["StartAt"], f"{where}{name}[{i}]/")
            if "ItemProcessor" in state:
                proc = state["ItemProcessor"]
                scope(proc["States"], proc["StartAt"], f"{where}{name}/")

    scope(definition["States"], definition["StartAt"], "")
    return found


def shape(definition: dict[str, Any]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(path, type, transitions) of every state: equal for both bindings."""
    return sorted((path, s["Type"], tuple(_targets(s)))
                  for path, _, s, _ in _walk(definition["States"]))
