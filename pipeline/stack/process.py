"""Background processes with a pid file and a log file in the state folder.

Each service runs in its own session (process group), so stopping it also stops the
children it forked, and a crashed leader's orphans are cleaned up before a restart. The
pid file records the process's start time, so a recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

LOG = logging.getLogger(__name__)

# Popen objects of processes this interpreter started, so their exit is reaped
# (a dead child that is never waited for stays a zombie and looks alive).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class PidRecord:
    """What a pid file holds."""

    pid: int
    create_time: float
    port: int
    command: list[str]


class ManagedProcess:
    """One service's process: start it detached, find it again later, stop it."""

    def __init__(self, name: str, run_dir: Path, log_dir: Path) -> None:
        self.name = name
        self.pid_file = run_dir / f"{name}.pid.json"
        self.log_file = log_dir / f"{name}.log"

    # -- finding ------------------------------------------------------------------------
    def record(self) -> PidRecord | None:
        try:
            data = json.loads(self.pid_file.read_text())
            return PidRecord(int(data["pid"]), float(data["create_time"]), int(data["port"]),
                             list(data["command"]))
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def running(self) -> PidRecord | None:
        """The pid record if its process is alive and is the one we started."""
        rec = self.record()
        if rec is None:
            return None
        return rec if _alive(rec.pid, rec.create_time) else None

    def uptime(self) -> float | None:
        rec = self.running()
        return None if rec is None else max(0.0, time.time() - rec.create_time)

    # -- starting -----------------------------------------------------------------------
    def start(self, command: Sequence[str], *, port: int, env: Mapping[str, str] | None = None,
              user: str | None = None, cwd: Path | None = None) -> PidRecord:
        self.cleanup_stale()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n=== shoplake: starting {self.name} at {time.ctime()}: "
                      f"{' '.join(command)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(command), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None, cwd=cwd, user=user,
                start_new_session=True, close_fds=True,
            )
        _CHILDREN[proc.pid] = proc
        rec = PidRecord(proc.pid, psutil.Process(proc.pid).create_time(), port, list(command))
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec.__dict__))
        tmp.replace(self.pid_file)
        LOG.debug("started %s pid=%s", self.name, proc.pid)
        return rec

    def exited(self) -> int | None:
        """The exit code if the process we started in this interpreter has ended."""
        rec = self.record()
        if rec is None:
            return None
        proc = _CHILDREN.get(rec.pid)
        if proc is not None:
            return proc.poll()
        return None if _alive(rec.pid, rec.create_time) else -1

    # -- stopping -----------------------------------------------------------------------
    def stop(self, timeout: float, sig: int = signal.SIGTERM, routine_kill: bool = False
             ) -> bool:
        """Stop the whole process group: `sig`, then SIGKILL after `timeout` (`routine_kill`:
        an expected step, logged at debug level). True if it ran."""
        rec = self.running()
        if rec is None:
            self.cleanup_stale()
            return False
        _signal_group(rec.pid, sig)
        if not _wait_gone(rec, timeout):
            (LOG.debug if routine_kill else LOG.warning)(
                "%s did not stop within %.0fs, sending SIGKILL", self.name, timeout)
            _signal_group(rec.pid, signal.SIGKILL)
            _wait_gone(rec, 5.0)
        self._kill_group_leftovers(rec.pid)
        _wait_port_closed(rec.port, 10.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def cleanup_stale(self) -> None:
        """After a crash: kill orphans left in the dead leader's group, drop the pid file."""
        rec = self.record()
        if rec is None or _alive(rec.pid, rec.create_time):
            return
        self._kill_group_leftovers(rec.pid)
        _wait_port_closed(rec.port, 10.0)
        self.pid_file.unlink(missing_ok=True)

    def _kill_group_leftovers(self, pgid: int) -> None:
        killed = []
        for proc in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(proc.pid) == pgid and proc.pid != os.getpid():
                    proc.kill()
                    killed.append(proc)
            except (ProcessLookupError, psutil.Error):
                continue
        # Until they are gone they may still hold the service's port: a restart right
        # after would find it taken.
        _, alive = psutil.wait_procs(killed, timeout=10)
        for proc in alive:
            LOG.warning("%s: pid %s survived SIGKILL", self.name, proc.pid)
        _reap(pgid)

    # -- logs ---------------------------------------------------------------------------
    def tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_file, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 64 * 1024))
                text = fh.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _reap(pid: int) -> None:
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        del _CHILDREN[pid]


def _alive(pid: int, create_time: float) -> bool:
    _reap(pid)
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(proc.create_time() - create_time) < 1.0
    except psutil.Error:
        return False


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(rec: PidRecord, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(rec.pid, rec.create_time):
            return True
        time.sleep(0.05)
    return not _alive(rec.pid, rec.create_time)


def _wait_port_closed(port: int, timeout: float) -> None:
    """A killed server's threads take a moment to exit; until the last one has, its
    listening socket still accepts connections, and a restart would find the port taken."""
    if not port:
        return
    deadline = time.monotonic() + timeout
    while port_in_use("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.1)


def port_in_use(host: str, port: int) -> bool:
    """True if something accepts connections on host:port."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0
