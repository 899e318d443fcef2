"""What the Pipeline Health dashboard shows, recorded in the warehouse by each run's report.

The dashboards read the warehouse only (as QuickSight reads Redshift only), so at the end
of every run (succeeded or failed) the report step writes there what it sees elsewhere:
the recent Step Functions executions, rows per table in each layer (source, bronze, silver,
gold), the rows held in quarantine by reason, and the newest source change the run
brought to gold. Each part is measured on its own: a layer that cannot be read (its
service is down, which may be why the run failed) is recorded as unknown, not as zero.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from pipeline.config import Settings
from pipeline.errors import first_line
from pipeline.orchestration import history
from pipeline.orchestration.names import RECENT_RUNS

LOG = logging.getLogger(__name__)

LAYERS = ("source", "bronze", "silver", "gold")
"""The layers counted, in flow order (the dashboard keeps this order)."""



def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _naive(ts: datetime | None) -> datetime | None:
    return ts.astimezone(UTC).replace(tzinfo=None) if ts else None


def _measured(what: str, func: Any, *args: Any) -> Any:
    try:
        return func(*args)
    except Exception as exc:  # noqa: BLE001 - one unreadable layer must not hide the others
        LOG.warning("pipeline health: %s not measured: %s", what, first_line(exc))
        return None


# -- each layer ---------------------------------------------------------------------------------
def source_rows(settings: Settings) -> dict[str, int]:
    from pipeline.source.db import connect_app
    from pipeline.source.generate import TABLES

    with connect_app(settings) as conn, conn.cursor() as cur:
        out = {}
        for table in TABLES:
            cur.execute(f"SELECT COUNT(*) FROM `{table}`")
            out[table] = int(cur.fetchone()[0])
        return out


def bronze_rows(settings: Settings) -> dict[str, int]:
    """Change records in bronze (full load plus every CDC change), from the crawler's
    index of the files it read; rejected files are not counted."""
    from pipeline.catalog.files import FileIndex
    from pipeline.source.generate import TABLES

    return {t: FileIndex.load(settings, t).rows for t in TABLES}


def silver_pointers(settings: Settings) -> dict[str, dict[str, Any]]:
    from pipeline.glue import silver
    from pipeline.source.generate import TABLES

    return {t: p for t in TABLES if (p := silver.current_snapshot(settings, t))}


def gold_rows(settings: Settings) -> dict[str, int]:
    from pipeline.warehouse.load import session
    from pipeline.warehouse.rowdiff import ENTITIES

    with session(settings) as conn, conn.cursor() as cur:
        out = {}
        for e in ENTITIES:
            where = f" WHERE {e.gold_where}" if e.gold_where else ""
            cur.execute(f"SELECT COUNT(*) FROM sales.{e.gold_table}{where}")
            out[e.table] = int(cur.fetchone()[0])
        return out


def held_by_reason(settings: Settings) -> Counter[tuple[str, str]]:
    from pipeline.warehouse.reconcile import read_held

    return Counter((h["table"], str(h.get("reason") or "unknown")[:1000])
                   for h in read_held(settings))


def recent_executions(settings: Settings) -> list[dict[str, Any]]:
    """The latest executions as Step Functions reports them, as pipeline_runs rows."""
    from pipeline.orchestration.runs import executions

    return [{"run_id": ex["name"], "status": ex["status"], "trigger": ex["trigger"] or None,
             "started_at": _naive(ex["start"]), "stopped_at": _naive(ex["stop"]),
             "error": ex["error"]} for ex in executions(settings, RECENT_RUNS)
            # A run that found an older one in progress did nothing: it is not a run.
            if not ex["skipped"]]


# -- one record ---------------------------------------------------------------------------------
def record(settings: Settings, run: history.Run, outcome: str | None) -> dict[str, Any]:
    """Measure and write the health of the pipeline as `run` ends (`outcome` FAILED for
    the failure path, else it succeeded). Returns what was recorded, in a few numbers."""
    from psycopg2.extras import execute_values

    from pipeline.warehouse.load import session

    now = _now()
    status = outcome or "SUCCEEDED"
    pointers = _measured("silver", silver_pointers, settings)
    layers = {"source": _measured("source rows", source_rows, settings),
              "bronze": _measured("bronze rows", bronze_rows, settings),
              "silver": None if pointers is None else
              {t: int(p.get("rows") or 0) for t, p in pointers.items()},
              "gold": _measured("gold rows", gold_rows, settings)}
    held = _measured("quarantine", held_by_reason, settings)
    runs = _measured("Step Functions executions", recent_executions, settings) or []
    # Gold holds what silver held when the run loaded it only if the run got that far.
    newest = None
    if status == "SUCCEEDED" and pointers:
        newest = max((p["newest_change"] for p in pointers.values()
                      if p.get("newest_change")), default=None)
    failed = run.failed_node()
    this = {"run_id": run.name, "status": status, "trigger": run.trigger or None,
            "started_at": _naive(run.started) or now, "stopped_at": now,
            "error": (f"{failed.error}: {first_line(failed.cause)}"[:1000]
                      if status != "SUCCEEDED" and failed and failed.error else None),
            "failed_state": failed.path if status != "SUCCEEDED" and failed else None}
    rows = [r for r in runs if r["run_id"] != run.name] + [this]
    # The ledger first: this run's end, then the runs that ended without a report or
    # that Step Functions forgot; published below with the rest.
    from pipeline.orchestration import ledger

    ledger.end(settings, run.name, status, trigger=this["trigger"],
               started_at=this["started_at"], failed_state=this["failed_state"],
               error=this["error"])
    ledger.settle(settings, skip=run.name)

    this["newest_change_ts"] = newest
    with session(settings) as conn, conn.cursor() as cur:
        # Runs a later report saw end keep what Step Functions said; a run still RUNNING in
        # Step Functions (this one, as it writes its report) keeps the outcome it reported.
        ledger.write_pipeline_runs(cur, rows, now)
        cur.execute("DELETE FROM sales.pipeline_layer_rows WHERE run_id = %s", (run.name,))
        counts = [(run.name, now, table, layer, n) for layer in LAYERS
                  for table, n in sorted((layers[layer] or {}).items())]
        if counts:
            execute_values(cur, "INSERT INTO sales.pipeline_layer_rows (run_id, measured_at, "
                                "table_name, layer, rows) VALUES %s", counts)
        if held is not None:
            cur.execute("DELETE FROM sales.pipeline_held_rows WHERE run_id = %s", (run.name,))
            if held:
                execute_values(cur, "INSERT INTO sales.pipeline_held_rows (run_id, "
                                    "measured_at, table_name, reason, rows) VALUES %s",
                               [(run.name, now, t, reason, n)
                                for (t, reason), n in sorted(held.items())])
        conn.commit()
    published = ledger.publish(settings)
    return {"runs": max(len(rows), published),
            "layers": [k for k, v in layers.items() if v is not None],
            "held": sum((held or {}).values()), "newest_change": newest}
