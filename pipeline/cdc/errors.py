"""Errors of the CDC service; each names the table or binlog position and what to do."""

from __future__ import annotations

from pipeline.errors import TerminalError, TransientError


class CdcError(TerminalError):
    """The CDC service cannot go on without losing data; it stops at its last checkpoint."""

    def __init__(self, message: str, *, table: str = "", position: str = "",
                 hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.table, self.position = table, position


class NoPrimaryKeyError(CdcError):
    def __init__(self, table: str) -> None:
        super().__init__(
            f"table `{table}` has no primary key, so its changes cannot be applied "
            "downstream (updates and deletes would be ambiguous)",
            table=table, hint="add a primary key, or exclude the table with "
                              "`SHOPLAKE_CDC_EXCLUDE_TABLES`")


class UnsupportedColumnError(CdcError):
    def __init__(self, table: str, column: str, column_type: str, position: str = "") -> None:
        where = f" at binlog position {position}" if position else ""
        super().__init__(
            f"column `{table}.{column}` has type `{column_type}`, which the CDC service does "
            f"not replicate{where}",
            table=table, position=position,
            hint="change the column to a supported type (numbers, decimals, strings, dates, "
                 "datetimes) or exclude the table with `SHOPLAKE_CDC_EXCLUDE_TABLES`")


class BinlogPositionLostError(CdcError):
    def __init__(self, position: str, oldest: str) -> None:
        super().__init__(
            f"the checkpoint's binlog position {position} no longer exists on the source "
            f"(oldest binlog: {oldest}); changes after it are gone from the binlog",
            position=position,
            hint="run `shoplake cdc reset` to re-run the full load from a new snapshot")


class CdcSyncTimeoutError(TransientError):
    """`--once` waited for a running follower that did not catch up in time."""

    def __init__(self, target: str, reached: str, timeout: float) -> None:
        super().__init__(
            f"the running CDC follower did not reach {target} within {timeout:.0f}s "
            f"(its checkpoint is at {reached})",
            hint="check it with `shoplake cdc status`; raise SHOPLAKE_CDC_SYNC_TIMEOUT_S if it "
                 "is just busy")
        self.position = reached
