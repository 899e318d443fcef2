"""The Replicator's transaction handling, fed fake binlog events (no database, no S3)."""

from __future__ import annotations

import copy
import io
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq
import pytest
from pymysqlreplication.constants import FIELD_TYPE
from pymysqlreplication.row_event import UpdateRowsEvent, WriteRowsEvent

from pipeline.cdc.bronze import Checkpoint
from pipeline.cdc.errors import CdcError
from pipeline.cdc.source import BinlogPosition
from pipeline.cdc.stream import Replicator
from pipeline.config import load_settings
from pipeline.progress import SilentProgress

pytestmark = pytest.mark.unit
FILE = "binlog.000007"


class FakeBronze:
    schema = "shop"

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], list[dict]] = {}
        self.checkpoints: list[Checkpoint] = []

    def put(self, table: str, name: str, body: bytes) -> None:
        self.files[(table, name)] = pq.read_table(io.BytesIO(body)).to_pylist()

    def save_checkpoint(self, cp: Checkpoint) -> None:
        self.checkpoints.append(copy.deepcopy(cp))

    def rows(self, table: str) -> list[dict]:
        return [r for (t, _), rows in sorted(self.files.items()) if t == table for r in rows]


def column(name: str, kind: int) -> SimpleNamespace:
    return SimpleNamespace(name=name, type=kind, character_set_name="utf8mb4")


COLUMNS = [column("id", FIELD_TYPE.LONG), column("city", FIELD_TYPE.VARCHAR)]


def row_event(cls: type, pos: int, rows: list[dict[str, Any]], table: str = "customers",
              columns: list[SimpleNamespace] = COLUMNS) -> Any:
    ev = object.__new__(cls)  # real event classes, so isinstance() dispatch is exercised
    ev.schema, ev.table, ev.columns, ev.primary_key = "shop", table, columns, "id"
    ev.packet = SimpleNamespace(log_pos=pos)
    ev._RowsEvent__rows = rows
    return ev


def query(pos: int, sql: str) -> SimpleNamespace:
    return SimpleNamespace(query=sql, schema=b"shop", timestamp=1_780_000_000,
                           packet=SimpleNamespace(log_pos=pos))


@pytest.fixture()
def rep() -> Replicator:
    settings = load_settings(environ={})
    return Replicator(creds=None, cdc=settings.cdc, bronze=FakeBronze(),  # type: ignore[arg-type]
                      cp=Checkpoint(FILE, 100), exclude=set(), progress=SilentProgress(),
                      tables={"customers"})


def positions(rep: Replicator) -> list[int]:
    return [cp.log_pos for cp in rep.bronze.checkpoints]


def test_a_savepoint_is_never_a_checkpoint(rep: Replicator) -> None:
    rep._rows(row_event(WriteRowsEvent, 200, [{"values": {"id": 1, "city": "Oslo"}}]), FILE)
    rep._query(query(250, "SAVEPOINT `s1`"), FILE)
    rep._query(query(260, "RELEASE SAVEPOINT `s1`"), FILE)
    rep._rows(row_event(WriteRowsEvent, 300, [{"values": {"id": 2, "city": "Rome"}}]), FILE)
    assert positions(rep) == []  # nothing may be checkpointed inside the transaction
    rep._commit(BinlogPosition(FILE, 320), 1_780_000_000)
    rep.flush()
    assert positions(rep) == [320]
    assert [(r["Op"], r["id"]) for r in rep.bronze.rows("customers")] == [("I", 1), ("I", 2)]


def test_ddl_closes_the_batch_and_checkpoints_past_itself(rep: Replicator) -> None:
    reloads: list[tuple[str, list[int]]] = []
    rep._reload = lambda table, sql: reloads.append((table, positions(rep)))  # type: ignore
    rep._rows(row_event(WriteRowsEvent, 200, [{"values": {"id": 1, "city": "Oslo"}}]), FILE)
    rep._commit(BinlogPosition(FILE, 220), 1_780_000_000)
    rep._query(query(400, "ALTER TABLE customers ADD COLUMN tier VARCHAR(5)"), FILE)
    assert positions(rep) == [220, 400]
    # The altered table is reloaded after the batch before the ALTER was checkpointed and
    # before the checkpoint passes the ALTER, so a crash in between replays the reload.
    assert reloads == [("customers", [220])]
    wider = COLUMNS + [column("tier", FIELD_TYPE.VARCHAR)]
    rep._rows(row_event(WriteRowsEvent, 500, [{"values": {"id": 3, "city": "Bonn",
                                                         "tier": "gold"}}], columns=wider), FILE)
    rep._commit(BinlogPosition(FILE, 520), 1_780_000_001)
    rep.flush()
    files = sorted(rep.bronze.files.items())
    assert len(files) == 2 and "tier" not in files[0][1][0] and files[1][1][0]["tier"] == "gold"


def test_a_rolled_back_transaction_leaves_nothing(rep: Replicator) -> None:
    rep._rows(row_event(WriteRowsEvent, 200, [{"values": {"id": 1, "city": "Oslo"}}]), FILE)
    rep._query(query(240, "ROLLBACK"), FILE)
    rep.flush()
    assert rep.bronze.files == {} and positions(rep) == []


@pytest.mark.parametrize("sql", ["DROP TABLE `customers`", "TRUNCATE TABLE customers",
                                 "DROP TABLE IF EXISTS `shop`.`customers` /* generated */",
                                 "truncate customers"])
def test_drop_or_truncate_of_a_replicated_table_stops_before_it(rep: Replicator,
                                                                 sql: str) -> None:
    rep._rows(row_event(WriteRowsEvent, 200, [{"values": {"id": 1, "city": "Oslo"}}]), FILE)
    rep._commit(BinlogPosition(FILE, 220), 1_780_000_000)
    with pytest.raises(CdcError, match="shoplake cdc reset"):
        rep._query(query(300, sql), FILE)
    assert positions(rep) == [220]  # committed work is kept; the checkpoint stays before it


@pytest.mark.parametrize("sql", ["RENAME TABLE customers TO customers_old",
                                 "rename table scratch to x, `shop`.`customers` to c2",
                                 "RENAME TABLE customers_new TO customers",
                                 "ALTER TABLE customers RENAME TO clients",
                                 "alter table `shop`.`customers` rename clients"])
def test_a_rename_of_a_replicated_table_stops_before_it(rep: Replicator, sql: str) -> None:
    rep._rows(row_event(WriteRowsEvent, 200, [{"values": {"id": 1, "city": "Oslo"}}]), FILE)
    rep._commit(BinlogPosition(FILE, 220), 1_780_000_000)
    with pytest.raises(CdcError, match="rename it back") as exc:
        rep._query(query(300, sql), FILE)
    assert "renames replicated table" in str(exc.value)
    assert positions(rep) == [220]


@pytest.mark.parametrize("sql", ["ALTER TABLE customers RENAME COLUMN city TO town",
                                 "ALTER TABLE customers RENAME INDEX a TO b",
                                 "RENAME TABLE scratch TO scratch_old"])
def test_renaming_a_column_or_another_table_is_not_a_table_rename(rep: Replicator,
                                                                  sql: str) -> None:
    rep._refuse_destructive(sql)  # no error


def test_dropping_some_other_table_is_just_ddl(rep: Replicator) -> None:
    rep._query(query(300, "DROP TABLE IF EXISTS scratch_import"), FILE)
    assert positions(rep) == [300]


def test_a_primary_key_change_is_a_delete_and_an_insert(rep: Replicator) -> None:
    rep._rows(row_event(UpdateRowsEvent, 200, [{
        "before_values": {"id": 1, "city": "Oslo"}, "after_values": {"id": 9, "city": "Oslo"}},
        {"before_values": {"id": 2, "city": "Oslo"}, "after_values": {"id": 2, "city": "Bod"}},
    ]), FILE)
    rep._commit(BinlogPosition(FILE, 220), 1_780_000_000)
    rep.flush()
    rows = rep.bronze.rows("customers")
    assert [(r["Op"], r["id"]) for r in rows] == [("D", 1), ("I", 9), ("U", 2)]
    seqs = [r["AR_H_CHANGE_SEQ"] for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


@pytest.mark.parametrize(("sql", "db", "table"), [
    ("ALTER TABLE customers RENAME COLUMN city TO town", "shop", "customers"),
    ("alter table `customers` modify city varchar(10)", "shop", "customers"),
    ("ALTER ONLINE TABLE shop.customers ADD COLUMN x INT", "other", "customers"),
    ("ALTER TABLE IF EXISTS `shop` . `customers` DROP COLUMN x", "shop", "customers"),
    ("ALTER TABLE other.customers ADD COLUMN x INT", "shop", None),  # another schema
    ("ALTER TABLE customers ADD COLUMN x INT", "other", None),
    ("ALTER TABLE scratch ADD COLUMN x INT", "shop", None),  # not replicated
    ("CREATE INDEX ix ON customers (city)", "shop", None),
])
def test_an_alter_of_a_replicated_table_is_what_reloads(rep: Replicator, sql: str, db: str,
                                                        table: str | None) -> None:
    assert rep._altered(sql, db) == table


def test_an_excluded_table_is_not_reloaded(rep: Replicator) -> None:
    rep.exclude = {"customers"}
    assert rep._altered("ALTER TABLE customers ADD COLUMN x INT", "shop") is None
