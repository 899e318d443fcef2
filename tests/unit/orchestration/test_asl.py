"""The state machine: one template, two bindings, checked without running it."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.orchestration import asl
from pipeline.orchestration.steps import STEPS
from tests.conftest import TOOLS

pytestmark = pytest.mark.unit

SETTINGS = load_settings(environ={})
RENDERED = {t: asl.render(SETTINGS, t) for t in asl.TARGETS}


def tasks(definition: dict) -> dict[str, dict]:
    return {path: state for path, _, state, _ in asl._walk(definition["States"])
            if state["Type"] == "Task"}


@pytest.mark.parametrize("target", asl.TARGETS)
def test_every_target_exists_and_every_state_is_reachable(target: str) -> None:
    assert asl.problems(RENDERED[target]) == []


def test_the_checks_catch_a_broken_definition() -> None:
    broken = copy.deepcopy(RENDERED["local"])
    broken["States"]["Guard"]["Next"] = "Nowhere"
    broken["States"]["Orphan"] = {"Type": "Pass", "End": True}
    found = asl.problems(broken)
    assert "Guard: target `Nowhere` is not a state" in found
    assert "Orphan is unreachable" in found


def test_both_bindings_have_the_same_states_and_shape() -> None:
    assert asl.shape(RENDERED["aws"]) == asl.shape(RENDERED["local"])
    assert set(RENDERED["aws"]["States"]) == set(RENDERED["local"]["States"])


def test_the_flow_in_order() -> None:
    d = RENDERED["local"]["States"]
    assert RENDERED["local"]["StartAt"] == "Defaults"
    assert d["Defaults"]["Choices"][0]["Next"] == "Start" and d["Defaults"]["Default"] == "NotFull"
    assert d["NotFull"]["ResultPath"] == "$.full" and d["NotFull"]["Next"] == "Start"
    assert d["Start"]["Next"] == "Debounce" and d["Debounce"]["Next"] == "Guard"
    assert d["IsOldestRun"]["Default"] == "AlreadyRunning"
    assert d["AlreadyRunning"]["Type"] == "Succeed"
    assert d["IsOldestRun"]["Choices"][0]["Next"] == "WaitForCdcSync"
    assert d["CdcFollower"]["Default"] == "ReplicateNow"
    assert d["Transform"]["Type"] == "Map" and d["Transform"]["Next"] == "LoadDims"
    assert [b["StartAt"] for b in d["LoadDims"]["Branches"]] == ["LoadCustomer",
                                                                 "LoadProduct"]
    assert d["LoadDims"]["Next"] == "LoadFacts"
    assert d["LoadFacts"]["Next"] == "QualityAndReconcile"
    assert d["QualityAndReconcile"]["Next"] == "Maintain"
    assert d["Maintain"]["Type"] == "Map" and d["Maintain"]["Next"] == "CheckArrivals"
    job = d["Maintain"]["ItemProcessor"]["States"]["MaintainSilver"]["Parameters"]
    assert job["JobName"] == "maintain_silver" and job["Arguments"]["--table.$"] == "$.table"
    assert d["WriteReport"]["Next"] == "Succeeded"


@pytest.mark.parametrize("target", asl.TARGETS)
def test_every_task_retries_transients_and_timeouts_with_backoff(target: str) -> None:
    for path, state in tasks(RENDERED[target]).items():
        retry = state.get("Retry") or []
        assert retry, path
        assert {"Shoplake.Transient", "States.Timeout"} <= set(retry[0]["ErrorEquals"]), path
        assert retry[0]["BackoffRate"] > 1, path
        if path != "Guard" and state["Resource"] != "arn:aws:states:::events:putEvents":
            assert state["HeartbeatSeconds"] and state["TimeoutSeconds"], path


def test_every_failure_is_caught_notified_and_ends_in_fail() -> None:
    d = RENDERED["local"]["States"]
    for name, state in d.items():
        if state["Type"] in ("Task", "Map", "Parallel") and name not in (
                "NotifyFailure", "WriteReport", "WriteFailureReport"):
            catch = state["Catch"][0]
            assert catch["ErrorEquals"] == ["States.ALL"] and catch["Next"] == f"Catch{name}"
            assert d[f"Catch{name}"]["Next"] == "NotifyFailure"
    notify = d["NotifyFailure"]
    assert notify["Resource"] == "arn:aws:states:::events:putEvents"
    entry = notify["Parameters"]["Entries"][0]
    assert (entry["Source"], entry["DetailType"]) == ("shoplake.pipeline", "RunFailed")
    assert {"state.$", "error.$", "cause.$"} <= set(entry["Detail"])
    assert d["WriteFailureReport"]["Next"] == "RunFailed" and d["RunFailed"]["Type"] == "Fail"


def test_the_aws_binding_uses_the_real_integrations_with_the_same_parameters() -> None:
    aws, local = tasks(RENDERED["aws"]), tasks(RENDERED["local"])
    resources = {state["Resource"] for state in aws.values()}
    assert {"arn:aws:states:::glue:startJobRun.sync",
            "arn:aws:states:::aws-sdk:glue:startCrawler",
            "arn:aws:states:::aws-sdk:glue:getCrawler",
            "arn:aws:states:::aws-sdk:redshiftdata:executeStatement",
            "arn:aws:states:::aws-sdk:redshiftdata:describeStatement",
            "arn:aws:states:::aws-sdk:databasemigration:describeReplicationTasks",
            "arn:aws:states:::events:putEvents"} <= resources
    b2s = aws["Transform/BronzeToSilver"]["Parameters"]
    assert b2s["JobName"] == "bronze_to_silver"
    assert {"--table.$", "--run_id.$", "--bronze_path", "--silver_path",
            "--catalog_database"} <= set(b2s["Arguments"])
    merge = aws["LoadDims[0]/MergeCustomer"]["Parameters"]
    assert merge["Sql"] == "CALL sales.sp_merge_dim_customer(:run_id)"
    assert merge["Parameters"] == [{"name": "run_id", "value.$": "$.run_id"}]
    assert set(merge) == {"WorkgroupName", "Database", "Sql", "Parameters"}  # the API's own
    for path, state in local.items():
        if aws[path]["Resource"].startswith("arn:aws:states:::aws-sdk:") \
                and ":activity:" in state["Resource"]:
            # The real API refuses a parameter it does not know: only the local worker
            # gets the run's id (it holds the run lease by it).
            assert "run_id.$" not in aws[path]["Parameters"], path
            extra = {k: v for k, v in state["Parameters"].items() if k == "run_id.$"}
            assert state["Parameters"] == {**aws[path]["Parameters"], **extra}, path
        elif path != "CheckArrivals":  # the crawl time's path: the test below
            assert state["Parameters"] == aws[path]["Parameters"], path
        if path not in ("Guard", "NotifyFailure"):
            assert ":activity:shoplake-" in state["Resource"], path
            step = state["Resource"].rsplit(":shoplake-", 1)[1]
            assert step in STEPS, path


def test_check_arrivals_reads_the_crawl_time_each_binding_has() -> None:
    """On AWS startCrawler answers {} and getCrawler's LastCrawl carries StartTime; the
    local start_crawler answers `crawled_at`."""
    aws, local = tasks(RENDERED["aws"]), tasks(RENDERED["local"])
    assert "$.crawler.Crawler.LastCrawl.StartTime" in \
        aws["CheckArrivals"]["Parameters"]["Arguments"]["--crawled_at.$"]
    assert "$.crawl.crawled_at" in local["CheckArrivals"]["Parameters"]["Arguments"][
        "--crawled_at.$"]


def test_check_arrivals_takes_an_epoch_or_glues_timestamp() -> None:
    from pipeline.orchestration.steps import _epoch

    assert _epoch(None) == 0.0 and _epoch("") == 0.0
    assert _epoch("1700000000.5") == 1700000000.5
    assert _epoch("2023-11-14T22:13:20.000Z") == 1700000000.0
    assert _epoch("2023-11-14T22:13:20") == 1700000000.0  # no zone: Glue's times are UTC


def test_run_full_reaches_every_load_job_and_only_them() -> None:
    """`shoplake run --full`: the input's flag goes through Start to each load job's
    `--full` (a Glue argument, so a string), and every trigger's input carries it."""
    for trigger in ("manual", "schedule", "arrival"):
        assert asl.execution_input(trigger)["full"] == "false"
    assert asl.execution_input("manual", full=True)["full"] == "true"
    for target in asl.TARGETS:
        definition = RENDERED[target]
        assert definition["States"]["Start"]["Parameters"]["full.$"] == "$.full"
        with_full = sorted(path for path, state in tasks(definition).items()
                           if "--full.$" in (state.get("Parameters") or {}).get("Arguments", {}))
        assert with_full == ["LoadDims[0]/LoadCustomer", "LoadDims[1]/LoadProduct",
                             "LoadFacts[0]/LoadFactOrderItems", "LoadFacts[0]/LoadFactOrders"]


def _validator() -> Path:
    path = TOOLS / "asl-validator" / "node_modules" / ".bin" / \
        "asl-validator"
    if not path.exists() and shutil.which("asl-validator") is None:
        pytest.fail("asl-validator is not installed: run `bash scripts/setup.sh`")
    return path if path.exists() else Path(shutil.which("asl-validator"))


@pytest.mark.parametrize("target", asl.TARGETS)
def test_asl_validator_passes_both_renderings(target: str, tmp_path: Path) -> None:
    file = tmp_path / f"{target}.json"
    file.write_text(json.dumps(RENDERED[target]))
    done = subprocess.run([str(_validator()), "--json-path", str(file)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_asl_validator_fails_a_broken_one(tmp_path: Path) -> None:
    broken = copy.deepcopy(RENDERED["local"])
    broken["States"]["Guard"]["Next"] = "Nowhere"
    file = tmp_path / "broken.json"
    file.write_text(json.dumps(broken))
    done = subprocess.run([str(_validator()), "--json-path", str(file)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, done.stdout
