"""Pollers spread their GetActivityTask over the second (LocalStack looks once a second)."""

from __future__ import annotations

import pytest

from pipeline.config import load_settings
from pipeline.orchestration.worker import Worker

pytestmark = pytest.mark.unit


def test_the_pollers_of_all_workers_take_evenly_spaced_phases() -> None:
    settings = load_settings(environ={"SHOPLAKE_ORCHESTRATION_WORKERS": "2",
                                      "SHOPLAKE_ORCHESTRATION_POLLERS": "2"})
    phases = [Worker(settings, f"worker-{w}").poll_phase(p) for w in (1, 2) for p in (0, 1)]
    assert phases == [0.0, 0.25, 0.5, 0.75]


def test_one_worker_with_one_poller_polls_at_the_top_of_the_second() -> None:
    settings = load_settings(environ={"SHOPLAKE_ORCHESTRATION_WORKERS": "1",
                                      "SHOPLAKE_ORCHESTRATION_POLLERS": "1"})
    assert Worker(settings, "worker-1").poll_phase(0) == 0.0


def test_a_worker_of_another_name_still_gets_a_phase_in_the_second() -> None:
    settings = load_settings(environ={})
    phase = Worker(settings, "worker-laptop-4242").poll_phase(1)
    assert 0.0 <= phase < 1.0
