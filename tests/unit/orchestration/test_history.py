"""Which state a failed run names as its failure."""

from __future__ import annotations

import pytest

from pipeline.orchestration.history import CAUGHT, FAILED, Node, Run

pytestmark = pytest.mark.unit


def _run(*nodes: Node) -> Run:
    return Run("run-1", "arn", "FAILED", None, None, "manual", list(nodes))


def test_the_cause_is_named_not_the_report_that_failed_after_it() -> None:
    cause = Node("ReplicateNow", "ReplicateNow", "Task", status=CAUGHT)
    report = Node("WriteFailureReport", "WriteFailureReport", "Task", status=FAILED)
    assert _run(cause, report).failed_node() is cause


def test_a_failure_path_state_is_named_when_nothing_else_failed() -> None:
    report = Node("WriteFailureReport", "WriteFailureReport", "Task", status=FAILED)
    assert _run(report).failed_node() is report


def test_a_branch_inside_a_parallel_state_is_named_before_its_parent() -> None:
    parent = Node("Transform", "Transform", "Map", status=CAUGHT)
    inner = Node("Transform/BronzeToSilver[orders]", "BronzeToSilver", "Task", depth=1,
                 status=FAILED)
    assert _run(parent, inner).failed_node() is inner
