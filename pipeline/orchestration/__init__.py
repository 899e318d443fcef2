"""Orchestration: the order of a pipeline run (the Step Functions stand-in's steps).

For now `run_pipeline` runs the steps in order in this process; the state machine that
runs them with retries, catches and parallel branches builds on the same step functions.
"""

from __future__ import annotations

from pipeline.orchestration.local import STEPS, RunReport, run_pipeline

__all__ = ["STEPS", "RunReport", "run_pipeline"]
