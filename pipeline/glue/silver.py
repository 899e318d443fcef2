"""Silver tables as Apache Iceberg tables (format v2, merge-on-read) in the JDBC catalog of
`pipeline.glue.iceberg`: `silver.<schema>.<table>`, at s3a://<silver bucket>/<schema>/<table>.

A run of bronze_to_silver is one Iceberg commit of the table (a MERGE INTO of the run's
changes, or a replace on a rebuild), so readers see the previous snapshot or the new one,
never half a table, and the catalog's compare-and-swap refuses a second writer's commit
(`SilverConflictError`, transient: a retry merges into the winner's state).

Each table also carries, as table properties written right after its commit
(`shoplake.*`): the input run that wrote it, the pipeline run, the held-key count, the
newest change and the bronze generation. `shoplake.snapshot` names the commit they
describe; when it is not the current one (a crash between the two commits), they are
stale and the next run writes them again.

Each run also appends the keys it changed to `silver.<schema>_changes.<table>` (key, change
sequence, op, run), after its commit and before its properties: the load jobs read that log
incrementally (the data files its snapshots since their last batch added, with pyiceberg,
no JVM) and stage only those keys into the warehouse. A rebuild or a rewrite appends one
marker row (op `F`, no key): whoever reads past it copies the full state instead.

Keys held in quarantine live in `silver.<schema>_held.<table>` (replaced whole by each
run that has any). Quarantined rows themselves stay plain Parquet under
`quarantine/<schema>/<table>/run_id=<run>/`: append-only evidence of what was refused, read
by people and `shoplake quarantine`, never updated, so a table format buys nothing there.

Silver written before Iceberg (snapshots plus a `_current.json` pointer) is recognised by
`legacy_pointer`; bronze_to_silver rebuilds it from bronze, says so, and removes it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pipeline.aws.s3 import delete_keys, get_json, list_objects
from pipeline.config import Settings
from pipeline.errors import TransientError
from pipeline.glue import iceberg

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

LOG = logging.getLogger(__name__)

PROPERTY = "shoplake."
"""Prefix of the table properties shoplake keeps on each silver table."""


def table_prefix(settings: Settings, table: str) -> str:
    return f"{settings.mysql.database}/{table}"


def s3a(bucket: str, key: str) -> str:
    return f"s3a://{bucket}/{key}"


class SilverConflictError(TransientError):
    """Another writer committed the table while this attempt was writing."""

    def __init__(self, table: str, detail: str = "") -> None:
        super().__init__(f"silver table `{table}` was committed by another writer while this "
                         f"run was merging into it, and retries did not get through"
                         + (f" ({detail})" if detail else ""),
                         hint="retry: the job merges again into the committed state "
                              "(`shoplake run` serialises runs with the run lease)")
        self.table = table


class SilverFilesLostError(TransientError):
    """The catalog names a table whose metadata files are gone from S3."""

    def __init__(self, table: str, location: str, detail: str) -> None:
        super().__init__(f"silver table `{table}` is in the Iceberg catalog but its files are "
                         f"gone from S3 ({location}: {detail}); it is not read",
                         hint="LocalStack's S3 forgets objects on restart: the next "
                              "`shoplake run` rebuilds silver from a new bronze snapshot")
        self.table = table


def current_snapshot(settings: Settings, table: str) -> dict[str, Any] | None:
    """The table's current state: `snapshot` (Iceberg snapshot id, as text), `rows`,
    `held`, `generation`, `newest_change`, `run_id`, `pipeline_run`, `settled` (the
    properties describe this snapshot); None when the table does not exist (or has no
    commit yet). Read without Spark. Raises SilverFilesLostError when the catalog names a
    table whose files are gone."""
    tbl = load_table(settings, table)
    if tbl is None:
        return None
    snap = tbl.current_snapshot()
    if snap is None:
        return None
    props = {k[len(PROPERTY):]: v for k, v in tbl.properties.items() if k.startswith(PROPERTY)}
    summary = snap.summary.additional_properties if snap.summary else {}
    rows = int(summary.get("total-records", 0)) - int(summary.get("total-position-deletes", 0))
    return {"snapshot": str(snap.snapshot_id), "rows": rows,
            "held": int(props.get("held") or 0),
            "generation": props.get("generation") or None,
            "newest_change": props.get("newest_change") or None,
            "run_id": props.get("run_id") or None,
            "pipeline_run": props.get("pipeline_run") or None,
            "settled": props.get("snapshot") == str(snap.snapshot_id),
            "committed_at_ms": snap.timestamp_ms,
            "format": "iceberg"}


def load_table(settings: Settings, table: str, namespace: str | None = None):  # noqa: ANN201
    """pyiceberg's table, or None when the catalog has no such table."""
    from pyiceberg.exceptions import NoSuchTableError
    from sqlalchemy.exc import OperationalError

    namespace = namespace or settings.mysql.database
    catalog = iceberg.py_catalog(settings)
    try:
        return catalog.load_table((namespace, table))
    except NoSuchTableError:
        return None
    except OperationalError as exc:  # the catalog's PostgreSQL went away mid-session
        creds = iceberg.catalog_login(settings)
        raise iceberg.CatalogUnreachableError(creds, settings.lake.catalog_database,
                                              iceberg.describe_error(exc.orig or exc)) from exc
    except (FileNotFoundError, OSError) as exc:
        location = next((t["metadata_location"] for t in iceberg.catalog_tables(settings)
                         if t["namespace"] == namespace and t["table"] == table), "?")
        raise SilverFilesLostError(table, location, iceberg.describe_error(exc)) from exc


def snapshot_id(pointer: dict[str, Any]) -> str:
    """The Iceberg snapshot a state names."""
    return str(pointer["snapshot"])


def read_current(spark: SparkSession, settings: Settings, table: str,
                 pointer: dict | None = None) -> DataFrame | None:
    """The table's current rows (or those of snapshot `pointer`), or None before its first
    run."""
    pointer = pointer or current_snapshot(settings, table)
    if pointer is None:
        return None
    iceberg.attach(spark, settings)
    return (spark.read.option("snapshot-id", snapshot_id(pointer))
            .table(iceberg.table_name(settings, table)))


def changes_snapshot(settings: Settings, table: str) -> str | None:
    """The current snapshot of `table`'s change log (None: no log yet). Read it *before*
    the table's own snapshot: every log entry it covers is then in that table snapshot."""
    tbl = load_table(settings, table, iceberg.changes_namespace(settings))
    snap = tbl.current_snapshot() if tbl is not None else None
    return str(snap.snapshot_id) if snap is not None else None


FULL_MARKER = "F"
"""The change log's `_op` for "the table was replaced whole" (a rebuild or a rewrite)."""


class ChangeLogGap(Exception):
    """The change log does not lead from one snapshot to the other (it was recreated or
    expired since): the caller copies the full state instead."""


def logged_keys(settings: Settings, table: str, after: str, upto: str
                ) -> tuple[list[int], bool]:
    """The keys the change log names in its snapshots after `after` up to `upto`, and
    whether a full-state marker is among them; read without Spark (pyiceberg), from the
    data files those snapshots added (the log is append-only). Raises ChangeLogGap when
    `after` is not an ancestor of `upto`."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from pyiceberg.manifest import ManifestEntryStatus

    tbl = load_table(settings, table, iceberg.changes_namespace(settings))
    if tbl is None:
        raise ChangeLogGap(f"the change log of `{table}` is gone")
    snapshots = {s.snapshot_id: s for s in tbl.metadata.snapshots}
    chain, sid = [], int(upto)
    while sid != int(after):
        snap = snapshots.get(sid)
        if snap is None or snap.parent_snapshot_id is None:
            raise ChangeLogGap(f"snapshot {after} of the change log of `{table}` is not an "
                               f"ancestor of {upto}")
        chain.append(snap)
        sid = snap.parent_snapshot_id
    keys: set[int] = set()
    full = False
    for snap in chain:
        for manifest in snap.manifests(tbl.io):
            if manifest.added_snapshot_id != snap.snapshot_id:
                continue  # written by an earlier snapshot: its files were read there
            for entry in manifest.fetch_manifest_entry(tbl.io, discard_deleted=True):
                if entry.status != ManifestEntryStatus.ADDED:
                    continue
                with tbl.io.new_input(entry.data_file.file_path).open() as f:
                    part = pq.read_table(f, columns=["key", "_op"])
                full = full or pc.any(pc.equal(part.column("_op"), FULL_MARKER)).as_py() is True
                keys.update(k for k in part.column("key").to_pylist() if k is not None)
    return sorted(keys), full


def rows_of_keys(settings: Settings, table: str, snapshot: str, key: str,
                 keys: list[int]):  # noqa: ANN201 - a pyarrow.Table
    """The rows of `keys` in snapshot `snapshot` of silver `table` (position deletes
    applied), read without Spark; files whose key range misses every key are skipped."""
    from pyiceberg.expressions import In

    tbl = load_table(settings, table)
    return tbl.scan(snapshot_id=int(snapshot), row_filter=In(key, keys)).to_arrow()


def read_held(spark: SparkSession, settings: Settings, table: str) -> DataFrame | None:
    iceberg.attach(spark, settings)
    name = iceberg.held_table_name(settings, table)
    if not spark.catalog.tableExists(name):
        return None
    return spark.table(name)


def held_rows(settings: Settings, table: str) -> list[dict[str, Any]]:
    """The keys held in quarantine for `table`, read without Spark (reconcile, the CLI)."""
    state = current_snapshot(settings, table)
    if not state or not state.get("held"):
        return []
    tbl = load_table(settings, table, f"{settings.mysql.database}_held")
    if tbl is None:
        return []
    return [r | {"table": table} for r in tbl.scan().to_arrow().to_pylist()]


def quarantine_path(settings: Settings, table: str, run_id: str) -> str:
    return s3a(settings.lake.silver_bucket,
               f"quarantine/{table_prefix(settings, table)}/run_id={run_id}")


# -- silver written before Iceberg -----------------------------------------------------------
def _legacy_key(settings: Settings, table: str) -> str:
    return f"{table_prefix(settings, table)}/_current.json"


def legacy_pointer(settings: Settings, table: str) -> dict[str, Any] | None:
    """The pointer of a silver table in the format before Iceberg (snapshots + pointer)."""
    return get_json(settings, settings.lake.silver_bucket, _legacy_key(settings, table))


def remove_legacy(settings: Settings, table: str) -> int:
    """Delete the old format's pointer, snapshots and held files (not Iceberg's data/ and
    metadata/ folders, which share the table's prefix)."""
    bucket = settings.lake.silver_bucket
    keys = [_legacy_key(settings, table)]
    for prefix in (f"{table_prefix(settings, table)}/snapshots/",
                   f"quarantine/{table_prefix(settings, table)}/held="):
        keys += list(list_objects(settings, bucket, prefix))
    delete_keys(settings, bucket, keys)
    return len(keys)
