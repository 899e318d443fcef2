"""`stack up | down | status`: start, stop and inspect the native services, then provision."""

from __future__ import annotations

import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from pipeline.aws.provision import Provisioned, provision
from pipeline.aws.secrets import DbCredentials
from pipeline.config import Settings, env_name
from pipeline.errors import ConfigError, PortInUseError, ServiceStartError, first_line
from pipeline.progress import Progress, SilentProgress
from pipeline.stack.credentials import ensure_credentials
from pipeline.stack.localstack import LocalStackService
from pipeline.stack.mariadb import MariaDBService
from pipeline.stack.postgres import PostgresService
from pipeline.stack.process import ManagedProcess, port_in_use
from pipeline.stack.service import NativeService

LOG = logging.getLogger(__name__)

# Gives a service that is running but not answering a moment before `up` restarts it.
UNHEALTHY_GRACE_S = 5.0


@dataclass(frozen=True)
class UpResult:
    service: str
    action: str  # started | restarted | already running
    pid: int
    port: int
    seconds: float


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    pid: int | None
    port: int
    healthy: bool
    uptime_s: float | None
    state: str  # running | unhealthy | stopped | crashed
    log_file: str

    def as_dict(self) -> dict:
        return asdict(self)


def native_services(settings: Settings) -> list[NativeService]:
    """The stand-ins, in dependency order (databases first, then the AWS endpoints)."""
    from pipeline.stack.glue import GlueCatalogService

    return [MariaDBService(settings), PostgresService(settings), LocalStackService(settings),
            GlueCatalogService(settings)]


def all_services(settings: Settings) -> list[NativeService]:
    """The servers, then what needs them provisioned: the Step Functions workers and the
    live dashboards (started after provisioning, stopped before the servers)."""
    from pipeline.stack.dashboards import DashboardService
    from pipeline.stack.workers import worker_services

    return [*native_services(settings), *worker_services(settings), DashboardService(settings)]


def process_of(settings: Settings, service: NativeService) -> ManagedProcess:
    return ManagedProcess(service.name, settings.state_dir / "run", settings.state_dir / "logs")


def service_named(settings: Settings, name: str) -> NativeService:
    for svc in all_services(settings):
        if svc.name == name:
            return svc
    names = ", ".join(s.name for s in all_services(settings))
    raise ConfigError(f"unknown service `{name}`", hint=f"choose one of: {names}")


def check_ports(settings: Settings) -> None:
    """Refuse settings whose port differs from the one a running service listens on.

    Acting on them would restart a healthy service on the new port (LocalStack would lose
    every bucket and secret) or write secrets naming a port where nothing listens.
    """
    for svc in native_services(settings):
        rec = process_of(settings, svc).running()
        if rec is not None and svc.port and rec.port != svc.port:
            key = f"{svc.section}.port"
            raise ConfigError(
                f"`{svc.name}` runs on port {rec.port} (pid {rec.pid}), but `{key}` is "
                f"{svc.port} ({settings.sources.get(key, 'default')})", key=key,
                hint=f"to move it, `shoplake stack down` with the settings it was started "
                     f"with, then `stack up` with the new ones; otherwise unset "
                     f"`{env_name(svc.section, 'port')}`")


def up(settings: Settings, progress: Progress | None = None) -> list[UpResult]:
    """Start every service that is not running and healthy, wait for health, provision.

    Idempotent: services that are already up are left alone, provisioning reports
    "unchanged". A crashed service (pid gone, or alive but not answering) is restarted.
    """
    progress = progress or SilentProgress()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    settings.state_dir.chmod(0o755)  # the postgres OS user must traverse it
    ensure_credentials(settings)
    services = native_services(settings)
    check_ports(settings)
    for svc in services:  # fail before starting anything if a binary is missing
        svc.check_installed()
    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        futures = [pool.submit(_up_one, settings, svc, progress) for svc in services]
        results = []
        errors = []
        for fut in futures:
            try:
                results.append(fut.result())
            except Exception as exc:  # noqa: BLE001 - re-raised below, after all finished
                errors.append(exc)
    if errors:
        raise errors[0]
    provision_stack(settings, progress)
    # The workers serve the activities provisioning just created.
    from pipeline.stack.workers import changed_settings, record_settings, worker_services

    workers = worker_services(settings)
    _stop_extra_workers(settings, len(workers))
    _restart_for(settings, workers, changed_settings(settings), progress)
    record_settings(settings)
    from pipeline.stack.dashboards import DashboardService

    after = [*workers, DashboardService(settings)]
    with ThreadPoolExecutor(max_workers=len(after)) as pool:
        results += list(pool.map(lambda w: _up_one(settings, w, progress), after))
    return results


def _restart_for(settings: Settings, workers: list[NativeService], changed: list[str],
                 progress: Progress) -> None:
    """Stop running workers started with other settings, so they start again with these
    (recording the new settings without restarting them would make `run` trust workers
    that never got them)."""
    if not changed:
        return
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3
                                      else "")
    for svc in workers:
        proc = process_of(settings, svc)
        if proc.running() is None:
            continue
        progress.start(svc.name, f"stopping {svc.name}: its settings differ ({shown})")
        proc.stop(svc.stop_timeout or settings.stack.stop_timeout, svc.stop_signal,
                  routine_kill=svc.kill_is_routine)
        progress.finish(svc.name, message=f"stopped to restart with the new {shown}")


def _stop_extra_workers(settings: Settings, keep: int) -> None:
    """Fewer workers configured than run: stop the ones past the count."""
    from pipeline.stack.workers import WorkerService

    index = keep + 1
    while True:
        svc = WorkerService(settings, index)
        proc = process_of(settings, svc)
        if proc.record() is None:
            return
        proc.stop(svc.stop_timeout or settings.stack.stop_timeout, svc.stop_signal,
                  routine_kill=svc.kill_is_routine)
        index += 1


def _up_one(settings: Settings, svc: NativeService, progress: Progress) -> UpResult:
    started = time.monotonic()
    proc = process_of(settings, svc)
    where = f" on port {svc.port}" if svc.port else ""
    progress.start(svc.name, f"checking {svc.name}{where}")
    rec = proc.running()
    action = "started"
    if rec is not None:
        if _wait_healthy(svc, proc, UNHEALTHY_GRACE_S, raise_on_exit=False):
            progress.finish(svc.name, message=f"already running (pid {rec.pid})")
            return UpResult(svc.name, "already running", rec.pid, svc.port,
                            time.monotonic() - started)
        LOG.warning("%s (pid %s) is running but not healthy; restarting it", svc.name, rec.pid)
        proc.stop(svc.stop_timeout or settings.stack.stop_timeout, svc.stop_signal,
                  routine_kill=svc.kill_is_routine)
        action = "restarted"
    elif proc.record() is not None:
        action = "restarted"  # its pid file outlived it: it crashed
    proc.cleanup_stale()
    if svc.port and port_in_use(svc.host, svc.port):
        raise PortInUseError(
            f"port {svc.port} of `{svc.name}` is taken by a process shoplake did not start",
            service=svc.name, port=svc.port,
            hint=f"stop that process, or pick another port with "
                 f"`{env_name(svc.section, 'port')}`")
    progress.update(svc.name, description=f"initialising {svc.name}")
    svc.prepare()
    progress.update(svc.name, description=f"starting {svc.name}{where}")
    rec = proc.start(svc.command(), port=svc.port, env=svc.env(), user=svc.run_as())
    try:
        if not _wait_healthy(svc, proc, settings.stack.startup_timeout, raise_on_exit=True):
            raise ServiceStartError(
                f"`{svc.name}` did not turn healthy within {settings.stack.startup_timeout:.0f}s",
                service=svc.name, port=svc.port, log_file=str(proc.log_file),
                log_tail=proc.tail(15))
        svc.bootstrap()
    except Exception as exc:
        progress.finish(svc.name, ok=False, message=first_line(exc))
        raise
    took = time.monotonic() - started
    progress.finish(svc.name, message=f"{action} (pid {rec.pid}) in {took:.1f}s")
    return UpResult(svc.name, action, rec.pid, svc.port, took)


def _wait_healthy(svc: NativeService, proc: ManagedProcess, timeout: float,
                  raise_on_exit: bool) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if svc.healthy():
            return True
        code = proc.exited()
        if code is not None:
            if raise_on_exit:
                raise ServiceStartError(f"`{svc.name}` exited with code {code} while starting",
                                        service=svc.name, port=svc.port,
                                        log_file=str(proc.log_file), log_tail=proc.tail(15))
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def provision_stack(settings: Settings, progress: Progress | None = None) -> list[Provisioned]:
    """Buckets plus the database secrets, built from the generated passwords."""
    progress = progress or SilentProgress()
    if settings.mode == "native":
        check_ports(settings)  # the secrets must name where the services really listen
    creds = ensure_credentials(settings)
    mysql, pg = settings.mysql, settings.postgres
    databases = {
        mysql.secret_name: DbCredentials("mysql", mysql.host, mysql.port, mysql.user,
                                         creds.mysql_app, mysql.database),
        settings.cdc.secret_name: DbCredentials("mysql", mysql.host, mysql.port,
                                                settings.cdc.user, creds.mysql_cdc,
                                                mysql.database),
        pg.secret_name: DbCredentials("postgres", pg.host, pg.port, pg.user, creds.postgres,
                                      pg.database),
        settings.dashboards.secret_name: DbCredentials(
            "postgres", pg.host, pg.port, settings.dashboards.reader_user, creds.dashboards,
            pg.database),
    }
    secrets = {name: db.to_secret_json() for name, db in databases.items()}
    secrets[settings.glue.pii_salt_secret] = {"salt": creds.pii_salt.reveal()}
    done = provision(settings, secrets, progress)
    # The lake LocalStack and moto forgot when they stopped, before anything reads or
    # writes it (and before the schedule's rules could start a run).
    if settings.stack.keep_lake and settings.mode == "native":
        from pipeline.stack import lake

        restored = lake.restore(settings, progress)
        if restored is not None:
            done.append(Provisioned("lake", str(lake.mirror_dir(settings)),
                                    f"restored {restored.describe()}"))
    # What a run needs beside them: the warehouse's schema (as a deployment would create
    # Redshift's), the activities, the state machine and its failure rule, the schedule.
    from pipeline.orchestration import schedule
    from pipeline.orchestration.cron import ScheduleError
    from pipeline.orchestration.provision import provision_orchestration
    from pipeline.warehouse import apply_ddl
    from pipeline.warehouse.reader import ensure_reader_role

    progress.start("provision:run", "warehouse schema, state machine, activities, schedule")
    try:
        apply_ddl(settings)
        ensure_reader_role(settings, creds.dashboards)
        done += provision_orchestration(settings)
        # Runs that ended with the stack (or that Step Functions forgot) are counted.
        from pipeline.orchestration import ledger

        settled = ledger.settle(settings)
        ledger.publish(settings)
        if settled:
            done.append(Provisioned("runs", f"{len(settled)} run(s)",
                                    "ended without a report: settled in the run ledger"))
        try:
            expression = schedule.apply(settings)
        except ScheduleError as exc:
            # A saved schedule that cannot be applied must not stop every `stack up`: it is
            # named (here and by `stack up`'s last line), and no schedule is active.
            LOG.warning("the saved schedule was not applied: %s", exc.message)
            done.append(Provisioned("schedule", exc.expression, f"NOT applied: {exc.message}"))
            progress.finish("provision:run", message=f"schedule `{exc.expression}` NOT "
                                                     "applied (see `shoplake schedule show`)")
            return done
    except Exception as exc:
        progress.finish("provision:run", ok=False, message=first_line(exc))
        raise
    done.append(Provisioned("schedule", expression or "none", "applied"))
    progress.finish("provision:run", message=f"schedule {expression or 'none'}")
    return done


def status(settings: Settings) -> list[ServiceStatus]:
    rows = []
    for svc in all_services(settings):
        proc = process_of(settings, svc)
        rec = proc.running()
        moved = rec is not None and rec.port != svc.port
        healthy = rec is not None and not moved and svc.healthy()
        if rec is None:
            state = ("crashed" if proc.record() is not None and not svc.stopped_cleanly()
                     else "stopped")
        elif moved:
            state = f"running on port {rec.port}, not {svc.port}"
        else:
            state = "running" if healthy else "unhealthy"
        rows.append(ServiceStatus(svc.name, rec.pid if rec else None, svc.port, healthy,
                                  proc.uptime(), state, str(proc.log_file)))
    return rows


def _save_lake(settings: Settings, progress: Progress) -> None:
    """The lake into the state folder before LocalStack stops and forgets it; a LocalStack
    that is not running has nothing to save (the last save stays)."""
    if not settings.stack.keep_lake or settings.mode != "native":
        return
    from pipeline.stack import lake

    if process_of(settings, LocalStackService(settings)).running() is None:
        return
    from pipeline.orchestration.lease import run_lease

    try:
        # Not under a run that is still writing (`run --local` outlives the workers).
        with run_lease(settings, "shoplake stack down", wait_s=0):
            lake.save(settings, progress)
    except Exception as exc:  # noqa: BLE001 - stopping must go on; the last save stays
        progress.finish("lake:save", ok=False, message=f"not saved: {first_line(exc)}")
        LOG.warning("the lake was not saved (%s): the next `stack up` puts back the save "
                    "of %s, and the next run rebuilds what is newer", first_line(exc),
                    lake.read_manifest(settings).get("saved_at", "never"))


def down(settings: Settings, purge: bool = False,
         progress: Progress | None = None) -> list[tuple[str, bool]]:
    """Stop every service (SIGTERM, then SIGKILL); with `purge`, delete data and credentials."""
    progress = progress or SilentProgress()
    services = list(reversed(native_services(settings)))
    from pipeline.stack.workers import WorkerService

    workers = []  # every worker that has a pid file, whatever the count is now
    index = 1
    while process_of(settings, WorkerService(settings, index)).record() is not None \
            or index <= settings.orchestration.workers:
        workers.append(WorkerService(settings, index))
        index += 1
        if index > 64:
            break

    def stop(svc: NativeService) -> tuple[str, bool]:
        progress.start(svc.name, f"stopping {svc.name}")
        stopped = process_of(settings, svc).stop(
            svc.stop_timeout or settings.stack.stop_timeout, svc.stop_signal,
            routine_kill=svc.kill_is_routine)
        progress.finish(svc.name, message="stopped" if stopped else "was not running")
        return svc.name, stopped

    from pipeline.stack.dashboards import DashboardService

    workers.append(DashboardService(settings))
    results = []
    # First: the workers finish their tasks while the servers still answer.
    with ThreadPoolExecutor(max_workers=len(workers)) as pool:
        results += list(pool.map(stop, workers))
    if not purge:
        _save_lake(settings, progress)
    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        results += list(pool.map(stop, services))
    if purge:
        for sub in ("data", "run", "logs", "credentials", "reports", "lake"):
            shutil.rmtree(settings.state_dir / sub, ignore_errors=True)
        # A fresh stack must not apply an old schedule again.
        (settings.state_dir / "schedule.json").unlink(missing_ok=True)
    return results
