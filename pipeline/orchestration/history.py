"""A run's graph, rebuilt from its Step Functions execution history.

Every state of the definition is a node, in the definition's order (branches and the
Map's tables nested under their parent); the history tells each node's status (pending,
running, succeeded, failed, retried, caught), attempts, start, duration and result (rows,
files, the summary a task returned). Events are linked by previousEventId, so a state
inside a Map iteration is found by walking back to its MapIterationStarted event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PENDING, RUNNING, SUCCEEDED, FAILED, RETRIED, CAUGHT, SKIPPED = (
    "pending", "running", "succeeded", "failed", "retried", "caught", "skipped")


@dataclass
class Node:
    """One state (or one Map iteration's state) of a run."""

    path: str
    """`Transform/BronzeToSilver[orders]`, `LoadDims/LoadCustomer`, `Guard`."""
    name: str
    type: str
    depth: int = 0
    status: str = PENDING
    attempts: int = 0
    started: datetime | None = None
    ended: datetime | None = None
    output: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    cause: str = ""

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        end = self.ended or datetime.now(self.started.tzinfo)
        return max(0.0, (end - self.started).total_seconds())

    @property
    def summary(self) -> str:
        """What the step said it did, in a few words."""
        out = self.output
        if self.error:
            cause = self.cause.splitlines()[0] if self.cause else ""
            if not cause and self.error == "States.Timeout":  # Step Functions gives none
                cause = "no worker reported on the task in time (it died or hangs)"
            return (f"{self.error}: {cause}" if cause else self.error)[:160]
        for key in ("summary",):
            if out.get(key):
                return str(out[key])[:160]
        parts = []
        for key in ("changes", "files", "rows", "rows_out", "differences", "held", "tables"):
            if key in out and out[key] is not None:
                parts.append(f"{key.replace('_', ' ')} {out[key]}")
        return ", ".join(parts)[:160]


@dataclass
class Run:
    """A run: its execution, its nodes in graph order, and its outcome."""

    name: str
    arn: str
    status: str
    started: datetime | None
    stopped: datetime | None
    trigger: str
    nodes: list[Node]
    error: str = ""
    cause: str = ""

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        end = self.stopped or datetime.now(self.started.tzinfo)
        return (end - self.started).total_seconds()

    def failed_node(self) -> Node | None:
        """The state whose failure ended the run (the last failed or caught task)."""
        bad = [n for n in self.nodes if n.status in (FAILED, CAUGHT) and n.type != "Fail"]
        # The failure path's own states (a report that could not be written either) come
        # after the cause: name them only when nothing else failed.
        cause = [n for n in bad if n.name not in FAILURE_PATH] or bad
        inner = [n for n in cause if n.depth > 0]
        return (inner or cause or [None])[-1]

    def warnings(self) -> list[tuple[str, str]]:
        """(state, warning) for every warning a task's result carried (an SCD2 dimension
        rebuilt after a re-snapshot, an updated_at that went backwards), in graph order."""
        return [(n.path, str(w)) for n in self.nodes for w in n.output.get("warnings") or []]

    def task_seconds(self) -> float:
        """The time spent inside tasks (what the workers did), summed over every task."""
        return sum(n.seconds or 0.0 for n in self.nodes if n.type == "Task")


def graph_nodes(definition: dict[str, Any], items: list[str] | None = None) -> list[Node]:
    """Every state as a pending node, in definition order; the Map's states once per item."""
    nodes: list[Node] = []

    def walk(states: dict[str, Any], start: str, prefix: str, depth: int) -> None:
        for name in _order(states, start):
            state = states[name]
            nodes.append(Node(f"{prefix}{name}", name, state["Type"], depth))
            for branch in state.get("Branches", []):
                walk(branch["States"], branch["StartAt"], f"{prefix}{name}/", depth + 1)
            if "ItemProcessor" in state:
                proc = state["ItemProcessor"]
                for item in items or ["0"]:
                    walk(proc["States"], proc["StartAt"], f"{prefix}{name}/", depth + 1)
                    for node in nodes:
                        if node.path.startswith(f"{prefix}{name}/") and "[" not in node.path:
                            node.path += f"[{item}]"

    walk(definition["States"], definition["StartAt"], "", 0)
    return nodes


def _order(states: dict[str, Any], start: str) -> list[str]:
    """States in the order a run meets them: the path of a run that succeeds in topological
    order (reverse post-order from StartAt over Next, Choices and Default; loops back are
    ignored), so a Choice's way round (CdcFollower's ReplicateNow) comes before the state
    both ways lead to; then the failure path the Catches lead to; then the rest."""
    seen: set[str] = set()
    post: list[str] = []

    def visit(name: str) -> None:
        seen.add(name)
        s = states[name]
        for nxt in (([s["Next"]] if "Next" in s else []) +
                    [c["Next"] for c in s.get("Choices", [])] +
                    ([s["Default"]] if "Default" in s else [])):
            if nxt in states and nxt not in seen:
                visit(nxt)
        post.append(name)

    visit(start)
    order = post[::-1]
    catches = [c["Next"] for name in order for c in states[name].get("Catch", [])]
    for target in catches:
        if target in states and target not in seen:
            before = len(post)
            visit(target)
            order += post[before:][::-1]
    return order + [n for n in states if n not in seen]


def _details(event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if key.endswith("EventDetails"):
            return value
    return {}


def build(definition: dict[str, Any], execution: dict[str, Any],
          events: list[dict[str, Any]]) -> Run:
    """The run graph of `execution` from its history `events`."""
    raw_input = json.loads(execution.get("input") or "{}")
    items = list(raw_input.get("tables") or [])
    nodes = graph_nodes(definition, items)
    by_path = {n.path: n for n in nodes}
    by_id = {e["id"]: e for e in events}
    parents = _parents(definition)

    def iteration(event: dict[str, Any]) -> int | None:
        seen = 0
        while event is not None and seen < 10_000:
            if event["type"] == "MapIterationStarted":
                return int(_details(event).get("index", 0))
            event = by_id.get(event.get("previousEventId"))
            seen += 1
        return None

    def node_of(name: str, event: dict[str, Any]) -> Node | None:
        path = parents.get(name, "") + name
        if path in by_path:
            return by_path[path]
        index = iteration(event)
        if index is not None and index < len(items):
            return by_path.get(f"{path}[{items[index]}]")
        return None

    def top_of(node: Node) -> Node | None:
        """The top-level state (a Map or Parallel) a node is inside of."""
        return by_path.get(node.path.split("/")[0].split("[")[0])

    current: dict[int, Node] = {}  # event id -> node it belongs to
    for event in events:
        kind, det = event["type"], _details(event)
        parent = by_id.get(event.get("previousEventId"))
        if kind.endswith("StateEntered"):
            node = node_of(det.get("name", ""), event)
            if node is not None:
                node.status, node.started, node.ended = RUNNING, event["timestamp"], None
                current[event["id"]] = node
            continue
        if kind.endswith("StateExited") and det.get("name"):
            node = node_of(det["name"], event)  # a Map's or Parallel's own exit, too
        else:
            node = current.get(parent["id"]) if parent else None
        if node is not None:
            current[event["id"]] = node
        if node is None:
            continue
        if kind in ("ActivityScheduled", "TaskScheduled"):
            node.attempts += 1
            if node.attempts > 1:
                node.status = RETRIED
        elif kind in ("MapStateFailed", "ParallelStateFailed"):
            # Follows the failed inner task's events: it belongs to the Map / Parallel
            # itself, and must not overwrite the inner task's own error and cause.
            top = top_of(node) or node
            current[event["id"]] = top
            top.status, top.ended = FAILED, event["timestamp"]
            if not top.error:
                top.error, top.cause = det.get("error", kind), det.get("cause", "")
        elif kind in ("ActivityFailed", "ActivityTimedOut", "TaskFailed", "TaskTimedOut",
                      "ActivityScheduleFailed"):
            top = top_of(node)
            if node.depth > 0 and top is not None and top.status == FAILED:
                # A sibling failed the Map / Parallel first: this one was stopped with it.
                node.status, node.ended = SKIPPED, event["timestamp"]
                continue
            node.error = det.get("error", kind)
            node.cause = det.get("cause", "")
            node.status = FAILED
            node.ended = event["timestamp"]
        elif kind in ("ActivitySucceeded", "TaskSucceeded"):
            node.error, node.cause = "", ""
        elif kind.endswith("StateExited"):
            node.ended = event["timestamp"]
            if node.status != FAILED:  # a failed Map / Parallel exits too, to its Catch
                node.status = SUCCEEDED
            try:
                out = json.loads(det.get("output") or "{}")
            except ValueError:
                out = {}
            node.output = _result_of(node, out)
        elif kind == "FailStateEntered":
            node.status = FAILED
    for node in nodes:  # a failed task followed by its Catch<name> state was caught
        catch = by_path.get(f"Catch{node.name}")
        if node.status == FAILED and catch is not None and catch.status != PENDING:
            node.status = CAUGHT
    status = execution.get("status", "RUNNING")
    if status != "RUNNING":
        for node in nodes:
            if node.status == RUNNING:
                top = top_of(node)
                if node.depth > 0 and top is not None and top.status in (FAILED, CAUGHT):
                    node.status = SKIPPED  # stopped when a sibling failed
                else:
                    node.status = FAILED if status != "SUCCEEDED" else SUCCEEDED
    return Run(name=execution.get("name", ""), arn=execution.get("executionArn", ""),
               status=status, started=execution.get("startDate"),
               stopped=execution.get("stopDate"), trigger=str(raw_input.get("trigger", "")),
               nodes=nodes, error=execution.get("error", ""), cause=execution.get("cause", ""))


def _parents(definition: dict[str, Any]) -> dict[str, str]:
    """State name -> the path prefix of its parent (`LoadDims/`, `Transform/`)."""
    out: dict[str, str] = {}

    def walk(states: dict[str, Any], prefix: str) -> None:
        for name, state in states.items():
            out.setdefault(name, prefix)
            for branch in state.get("Branches", []):
                walk(branch["States"], f"{prefix}{name}/")
            if "ItemProcessor" in state:
                walk(state["ItemProcessor"]["States"], f"{prefix}{name}/")

    walk(definition["States"], "")
    return out


FAILURE_PATH = ("NotifyFailure", "WriteFailureReport")
"""States a run goes through once something failed."""

RESULT_PATHS = {"WaitForCdcSync": "cdc", "ReplicateNow": "replicated", "StartCrawler": "crawl",
                "GetCrawler": "crawler", "QualityAndReconcile": "quality",
                "CheckArrivals": "arrivals", "BronzeToSilver": "job", "Guard": "guard"}
"""Where a task's result sits in its state's output (its ResultPath)."""


def _result_of(node: Node, output: dict[str, Any]) -> dict[str, Any]:
    key = RESULT_PATHS.get(node.name) or ("job" if node.name.startswith("Load")
                                          and node.type == "Task" else None)
    if key and isinstance(output.get(key), dict):
        return output[key]
    if node.name.startswith("Merge"):
        return output.get("statement") or {}
    if node.name.startswith("Describe"):
        return output.get("described") or {}
    return {k: v for k, v in output.items() if not isinstance(v, dict | list)}
