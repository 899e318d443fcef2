"""`shoplake worker`: serves the state machine's activities (the local binding's tasks).

Each worker polls every activity with a few threads (`orchestration.pollers`), runs the
task's step from the registry in this process (one warm SparkSession for all Glue jobs),
heartbeats while it runs, and reports the step's JSON result (send_task_success) or its
error name and cause (send_task_failure). A worker killed mid-task sends no heartbeat:
after HeartbeatSeconds the task times out (States.Timeout) and the state's Retry offers it
again, to another worker. SIGTERM finishes the tasks that are running, then exits; a task
received after it is handed back at once (Shoplake.Transient) so another worker takes it.

LocalStack's get_activity_task long-polls for 60 s server-side; a client that gave up
sooner would leave a ghost poll that swallows the next task, so the client's read timeout
is longer (see pipeline/aws/clients.py).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from pipeline.aws.clients import aws_client
from pipeline.config import Settings
from pipeline.errors import first_line
from pipeline.orchestration import asl, liveness
from pipeline.orchestration.steps import STEPS, TRANSIENT, error_name, run_step

LOG = logging.getLogger(__name__)

LEASED_STEPS = {"replicate_now", "start_crawler", "glue_job", "execute_statement"}
"""Steps that change the lake or the warehouse: they hold the run lease (shared)."""


class TaskProgress:
    """The progress interface for a task: log lines, and a heartbeat on every update."""

    def __init__(self, worker: Worker, token: str, step: str) -> None:
        self.worker, self.token, self.step = worker, token, step
        self._last = 0.0

    def _beat(self) -> None:
        if time.monotonic() - self._last >= 2.0:
            self._last = time.monotonic()
            self.worker.heartbeat(self.token)

    def start(self, key: str, description: str, total: float | None = None) -> None:
        LOG.info("[%s] %s", key, description)
        self._beat()

    def update(self, key: str, advance: float = 0, description: str | None = None) -> None:
        if description:
            LOG.info("[%s] %s", key, description)
        self._beat()

    def finish(self, key: str, ok: bool = True, message: str = "") -> None:
        LOG.info("[%s] %s %s", key, "done" if ok else "FAILED", message)
        self._beat()


class Worker:
    def __init__(self, settings: Settings, name: str | None = None) -> None:
        self.settings = settings
        self.name = name or f"worker-{socket.gethostname()}-{os.getpid()}"
        self.stopping = threading.Event()
        self.running: dict[str, str] = {}  # task token -> step
        self.served = 0
        self._lock = threading.Lock()
        self.status_file = liveness.status_file(settings, self.name)
        self._beat_at = float("-inf")

    # -- talking to Step Functions -------------------------------------------------------------
    def heartbeat(self, token: str) -> None:
        try:
            aws_client(self.settings, "stepfunctions").send_task_heartbeat(taskToken=token)
        except Exception as exc:  # noqa: BLE001 - a missed beat is retried by the next one
            LOG.debug("heartbeat failed: %s", first_line(exc))

    def _keepalive(self, token: str, done: threading.Event) -> None:
        interval = max(1.0, self.settings.orchestration.heartbeat_s / 3)
        while not done.wait(interval):
            self.heartbeat(token)

    # -- serving --------------------------------------------------------------------------------
    def serve(self, warm: bool = True) -> None:
        """Poll every activity until SIGTERM / `stopping`; run the tasks received."""
        if warm:
            threading.Thread(target=self._warm_spark, daemon=True).start()
        threads = []
        for step in STEPS:
            for i in range(self.settings.orchestration.pollers):
                t = threading.Thread(target=self._poll, args=(step, self.poll_phase(i)),
                                     daemon=True, name=f"poll-{step}-{i}")
                t.start()
                threads.append(t)
        LOG.info("%s serving %d activities with %d pollers each", self.name, len(STEPS),
                 self.settings.orchestration.pollers)
        self._write_status()
        while not self.stopping.wait(5.0):
            self._write_status()
        # SIGTERM: finish what runs (pollers return at their next poll; a task received
        # meanwhile is handed back), then exit.
        while True:
            with self._lock:
                busy = list(self.running.values())
            if not busy:
                break
            self._write_status()
            time.sleep(0.2)
        self._write_status(stopped=True)
        LOG.info("%s stopped after %d task(s)", self.name, self.served)

    def _warm_spark(self) -> None:
        try:
            from pipeline.glue.session import get_spark

            get_spark(self.settings)
            LOG.info("Spark session up")
            if self.settings.spark.warm_up:
                from pipeline.glue.jobs import job_session
                from spark_jobs.bronze_to_silver import warm_up

                seconds = warm_up(job_session(self.settings), self.settings)
                LOG.info("Spark warmed up in %.1fs (a small MERGE outside the lake)", seconds)
        except Exception as exc:  # noqa: BLE001 - the first Glue task will report it
            LOG.warning("could not start Spark ahead of the first job: %s", first_line(exc))

    def poll_phase(self, poller: int) -> float:
        """Where in each second poller `poller` of this worker sends its GetActivityTask.

        LocalStack holds a long poll open up to 60 s but looks for a task only once a second
        from when the request came (`time.sleep(1)` in its provider), so a task waits for
        the next look of any poller: 0.5 s on average when every poller started together,
        on every state of a run. Spread over the second (worker-1's pollers, then
        worker-2's, ...), N pollers of an activity look every 1/N s."""
        orchestration = self.settings.orchestration
        total = max(1, orchestration.workers) * orchestration.pollers
        index = self.name.rsplit("-", 1)[-1]
        worker = (int(index) - 1) if index.isdigit() else zlib.crc32(self.name.encode())
        return ((worker * orchestration.pollers + poller) % total) / total

    def _poll(self, step: str, phase: float = 0.0) -> None:
        sfn = aws_client(self.settings, "stepfunctions", long_poll=True)
        arn = asl._Binding(self.settings, "local").activity(step)
        while not self.stopping.is_set():
            # Send the poll at this poller's phase of the second (see poll_phase).
            if self.stopping.wait((phase - time.time()) % 1.0):
                break
            try:
                task = sfn.get_activity_task(activityArn=arn, workerName=self.name)
            except Exception as exc:  # noqa: BLE001 - LocalStack restarting, say: poll again
                LOG.warning("polling %s failed: %s", step, first_line(exc))
                self.stopping.wait(2.0)
                continue
            token = task.get("taskToken")
            if not token:
                continue
            if self.stopping.is_set():  # arrived after SIGTERM: let another worker run it
                self._fail(token, TRANSIENT, f"{self.name} is stopping; the task is retried")
                continue
            self._run(step, token, task.get("input") or "{}")

    def _run(self, step: str, token: str, raw: str) -> None:
        with self._lock:
            self.running[token] = step
        done = threading.Event()
        threading.Thread(target=self._keepalive, args=(token, done), daemon=True).start()
        began = time.monotonic()
        try:
            task = json.loads(raw)
            LOG.info("%s: %s", step, _describe(task))
            result = self._execute(step, task, token)
            aws_client(self.settings, "stepfunctions").send_task_success(
                taskToken=token, output=json.dumps(result, default=str))
            LOG.info("%s done in %.1fs", step, time.monotonic() - began)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to Step Functions
            error, cause = error_name(exc, self.settings)
            LOG.warning("%s failed (%s): %s", step, error, first_line(exc))
            self._fail(token, error, cause)
        finally:
            done.set()
            with self._lock:
                self.running.pop(token, None)
                self.served += 1

    def _execute(self, step: str, task: dict[str, Any], token: str) -> dict[str, Any]:
        progress = TaskProgress(self, token, step)
        seen_run = task.get("run_id") or (task.get("Arguments") or {}).get("--run_id")
        if seen_run:  # the ledger counts the run even if it never reaches its report
            from pipeline.orchestration import ledger

            ledger.seen(self.settings, seen_run, task.get("JobName") or step)
        if step not in LEASED_STEPS:
            return run_step(self.settings, step, task, progress)
        from pipeline.orchestration.lease import run_lease

        run_id = task.get("run_id") or (task.get("Arguments") or {}).get("--run_id") or "?"
        with run_lease(self.settings, f"shoplake run {run_id}", wait_s=5.0, shared=True):
            return run_step(self.settings, step, task, progress)

    def _fail(self, token: str, error: str, cause: str) -> None:
        try:
            aws_client(self.settings, "stepfunctions").send_task_failure(
                taskToken=token, error=error, cause=cause)
        except Exception as exc:  # noqa: BLE001 - the heartbeat timeout retries it anyway
            LOG.warning("could not report a failure: %s", first_line(exc))

    def _write_status(self, stopped: bool = False) -> None:
        with self._lock:
            status = {"name": self.name, "pid": os.getpid(), "at": time.time(),
                      "running": sorted(self.running.values()), "served": self.served,
                      "stopping": self.stopping.is_set(), "stopped": stopped}
        try:
            _atomic_write(self.status_file, json.dumps(status))
        except OSError:
            LOG.debug("could not write %s", self.status_file, exc_info=True)
        # In compose the runs read liveness from S3 (they share no folder with the workers).
        if self.settings.mode == "compose" and (
                stopped or time.monotonic() - self._beat_at >= liveness.HEARTBEAT_EVERY_S):
            self._beat_at = time.monotonic()
            try:
                liveness.heartbeat(self.settings, status)
            except Exception as exc:  # noqa: BLE001 - LocalStack restarting: next time
                LOG.debug("heartbeat object not written: %s", first_line(exc))


def _describe(task: dict[str, Any]) -> str:
    if "JobName" in task:
        args = task.get("Arguments") or {}
        return f"{task['JobName']}" + (f" --table {args['--table']}" if "--table" in args
                                       else "")
    return ", ".join(f"{k}={v}" for k, v in task.items() if k != "run_id")[:200]


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


