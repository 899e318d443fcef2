"""Orchestration: the Step Functions stand-in (state machine, workers, schedule).

A run is an execution of one state machine (asl.py renders it for AWS or for the local
stack); its tasks are the steps of a public registry (steps.py), served locally by
`shoplake worker` processes (worker.py); EventBridge rules start runs on a schedule or
when CDC files arrive (schedule.py). `run_pipeline` (local.py) is the documented in-process
fallback, `shoplake run --local`: the same steps in the same order.
"""

from __future__ import annotations

from pipeline.orchestration.local import STEPS, RunReport, run_pipeline

__all__ = ["STEPS", "RunReport", "run_pipeline"]
