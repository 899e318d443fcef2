"""Orchestration: what Step Functions and the workers cost, and how fresh gold is.

  overhead    a full run, then an incremental run (`--changes` simulator transactions, 1% of
              the orders at scale 1), both through the state machine. For each: the
              execution's wall time, the sum of its task times, the time at least one task
              was running (tasks overlap in the Map and the Parallel states), and the
              overhead = wall time - that busy time (Step Functions' transitions, polls,
              the workers picking tasks up). Goal: under 10% of the incremental run.
  freshness   the CDC follower running (`shoplake cdc`), the simulator committing new
              orders, runs started by the schedule: for each sampled commit, the seconds
              until its order is in gold (`sales.fact_orders`). `rate(1 minute)` (goal p50
              under 60 s), then `on-arrival` (goal p50 under 20 s).

Needs a running stack (`shoplake stack up`, with its workers). It replaces the source,
bronze, silver and the `sales` schema.

    .venv/bin/python bench/orchestration.py --scale 1 [--changes 1000] [--samples 6]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import cdc  # noqa: E402
from pipeline.config import Settings, load_settings  # noqa: E402
from pipeline.orchestration import history, schedule  # noqa: E402
from pipeline.orchestration.runs import follow, recent_runs, start_run  # noqa: E402
from pipeline.source.db import connect_app  # noqa: E402
from pipeline.source.load import seed  # noqa: E402
from pipeline.source.simulate import simulate  # noqa: E402
from pipeline.warehouse import apply_ddl  # noqa: E402
from pipeline.warehouse.load import session  # noqa: E402

BEGAN = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - BEGAN:6.0f}s] {text}", flush=True)


def busy_seconds(run: history.Run) -> float:
    """Seconds during which at least one task of the run was running."""
    spans = sorted((n.started, n.ended) for n in run.nodes
                   if n.type == "Task" and n.started and n.ended)
    total, end = 0.0, None
    for start, stop in spans:
        if end is None or start > end:
            total += (stop - start).total_seconds()
            end = stop
        elif stop > end:
            total += (stop - end).total_seconds()
            end = stop
    return total


def timed_run(settings: Settings, label: str) -> dict[str, float]:
    arn = start_run(settings, "manual")
    run = follow(settings, arn, lambda _r: None, interval_s=1.0)
    if run.status != "SUCCEEDED":
        failed = run.failed_node()
        raise SystemExit(f"{label} run {run.name} {run.status}: "
                         f"{failed.path if failed else ''} {failed.cause if failed else ''}")
    wall, busy = run.seconds or 0.0, busy_seconds(run)
    out = {"wall_s": wall, "task_sum_s": run.task_seconds(), "busy_s": busy,
           "overhead_s": wall - busy, "overhead_pct": 100 * (wall - busy) / wall}
    say(f"{label} run {run.name}: wall {wall:.1f}s, tasks {out['task_sum_s']:.1f}s summed, "
        f"busy {busy:.1f}s, overhead {out['overhead_s']:.1f}s ({out['overhead_pct']:.1f}%)")
    # Per top-level step: from its first state's start to its last state's end.
    steps: dict[str, list] = {}
    for n in run.nodes:
        if n.started and n.ended:
            top = n.path.split("/")[0].split("[")[0]
            span = steps.setdefault(top, [n.started, n.ended])
            span[0], span[1] = min(span[0], n.started), max(span[1], n.ended)
    timed = [(k, (e - b).total_seconds()) for k, (b, e) in steps.items()]
    say("  steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in timed if v >= 0.05))
    staged = [f"{st['staging']} {st['rows']} ({st.get('mode', '?')})" for n in run.nodes
              for st in (n.output or {}).get("staged", []) if st.get("copied")]
    say("  staged: " + (", ".join(staged) or "nothing"))
    phases = [f"{n.output.get('table')} {n.output.get('mode')} {n.output.get('phases')}"
              for n in run.nodes if (n.output or {}).get("phases")]
    for line in phases:
        say(f"  bronze_to_silver: {line}")
    checks = [f"{n.output.get('reconcile')} ({n.output.get('why')})" for n in run.nodes
              if (n.output or {}).get("reconcile")]
    say("  reconcile: " + (", ".join(checks) or "?"))
    out["steps"] = dict(timed)
    return out


def _source_max_order(settings: Settings) -> int:
    with connect_app(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT COALESCE(max(id), 0) FROM orders")
        return int(cur.fetchone()[0])


def _gold_max_order(settings: Settings) -> int:
    with session(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT COALESCE(max(order_id), 0) FROM sales.fact_orders")
        return int(cur.fetchone()[0])


def freshness(settings: Settings, expression: str, samples: int, gap_s: float
              ) -> list[float]:
    """Seconds from a commit to its order in gold, for `samples` commits `gap_s` apart."""
    stop = threading.Event()
    traffic = threading.Thread(target=lambda: simulate(settings, rate=1.0, seed=7,
                                                       stop_event=stop), daemon=True)
    follower = subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "-q", "cdc"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    schedule.set_schedule(settings, expression)
    traffic.start()
    pending: list[tuple[int, float]] = []  # (order id, commit time)
    lags: list[float] = []
    next_sample = time.monotonic() + 5
    deadline = time.monotonic() + samples * gap_s + 600
    try:
        while (len(lags) < samples or pending) and time.monotonic() < deadline:
            now = time.monotonic()
            if len(lags) + len(pending) < samples and now >= next_sample:
                pending.append((_source_max_order(settings), time.monotonic()))
                next_sample = now + gap_s
            if pending:
                gold = _gold_max_order(settings)
                while pending and gold >= pending[0][0]:
                    order, at = pending.pop(0)
                    lags.append(time.monotonic() - at)
                    say(f"  {expression}: order {order} in gold after {lags[-1]:.1f}s")
            time.sleep(0.5)
    finally:
        stop.set()
        schedule.set_schedule(settings, None)
        follower.terminate()
        follower.wait(30)
        traffic.join(30)
    if len(lags) < samples:
        say(f"  {expression}: only {len(lags)} of {samples} commits reached gold in time")
    return lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args()
    settings = load_settings()
    schedule.set_schedule(settings, None)
    if any(r["status"] == "RUNNING" for r in recent_runs(settings)):
        raise SystemExit("a run is in progress; wait for it (`shoplake runs`)")
    say(f"seeding at scale {args.scale}, fresh bronze and warehouse")
    seed(settings, scale=args.scale, seed=11, reset=True)
    cdc.reset(settings)
    apply_ddl(settings, reset=True)
    results = {}
    if not args.skip_overhead:
        results["full"] = timed_run(settings, "full")
        simulate(settings, rate=200, duration=args.changes / 200, seed=12)
        results["incremental"] = timed_run(settings, "incremental")
    else:
        timed_run(settings, "full")
    for expression, gap in (("rate(1 minute)", 25.0), ("on-arrival", 10.0)):
        say(f"freshness with `{expression}`, the follower and the simulator running")
        lags = freshness(settings, expression, args.samples, gap)
        if lags:
            say(f"{expression}: p50 {statistics.median(lags):.1f}s, max {max(lags):.1f}s "
                f"over {len(lags)} commits")
    if "incremental" in results:
        inc = results["incremental"]
        verdict = "meets" if inc["overhead_pct"] < 10 else "misses"
        say(f"incremental overhead {inc['overhead_pct']:.1f}% of {inc['wall_s']:.1f}s: "
            f"{verdict} the 10% goal")


if __name__ == "__main__":
    main()
