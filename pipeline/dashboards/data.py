"""Run a dashboard's queries on the warehouse, as its read-only role.

Every query is parametrised: filter values travel as psycopg2 parameters, never as SQL
text (so a `%` meant literally in a panel's SQL is written `%%`). A failing query is that
panel's problem, returned with the server's own words; the other panels still run.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors

from pipeline.config import Settings
from pipeline.dashboards.spec import Dashboard, Filter, Panel
from pipeline.errors import ShoplakeError, first_line

LOG = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class PanelResult:
    """What a panel's query returned, or why it did not."""

    panel: Panel
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]


MAX_OPTIONS = 1000
"""Choices a select filter offers."""
MAX_ROWS = 100_000
"""Rows a panel may return; more is a query that forgot to aggregate (and a page that
would not draw)."""


def _isolate(cur: Any) -> None:
    """Leave the session as the next panel expects it, whatever this panel's SQL did: no
    open transaction (`BEGIN` in a panel), no changed settings (`SET statement_timeout`)."""
    import psycopg2.extensions as ext

    conn = cur.connection
    if conn.closed:
        return
    with contextlib.suppress(psycopg2.Error):
        if conn.info.transaction_status != ext.TRANSACTION_STATUS_IDLE:
            cur.execute("ROLLBACK")
        cur.execute("RESET ALL")


def _server_words(exc: psycopg2.Error) -> str:
    """The server's message (`column "x" does not exist`), with its hint when it has one."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) or first_line(exc)
    hint = getattr(diag, "message_hint", None)
    return f"{primary} ({hint})" if hint else primary


class Reader:
    """Connections of the read-only role, one per thread (the live server's threads each
    get their own); a connection the server dropped is replaced on the next query."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            from pipeline.warehouse.reader import connect_reader

            conn = connect_reader(self.settings)
            self._local.conn = conn
            with self._lock:
                self._all = [c for c in self._all if not c.closed] + [conn]
        return conn

    @contextlib.contextmanager
    def cursor(self) -> Iterator[Any]:
        conn = self._conn()
        try:
            with conn.cursor() as cur:
                yield cur
        except psycopg2.errors.QueryCanceled:
            raise  # the session is fine
        except psycopg2.OperationalError:
            with contextlib.suppress(Exception):
                conn.close()
            raise

    def _query(self, work: Callable[[Any], T]) -> T:
        """`work(cursor)` on this thread's session, which is then left as it was found
        (`_isolate`). A session the server dropped (postgres restarted) is replaced and
        `work` runs once more; a query the server cancelled (the timeout) is not rerun."""
        for attempt in (1, 2):
            try:
                with self.cursor() as cur:
                    try:
                        return work(cur)
                    finally:
                        _isolate(cur)
            except psycopg2.errors.QueryCanceled:
                raise
            except psycopg2.OperationalError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(Exception):
                    conn.close()
            self._all.clear()

    def run_panel(self, dashboard: Dashboard, panel: Panel, values: dict[str, Any]
                  ) -> PanelResult:
        """The panel's rows for these filter values; a problem becomes `error`."""
        if panel.problem:
            return PanelResult(panel, error=panel.problem)
        began = time.monotonic()

        def fetch(cur: Any) -> tuple[list[str], list[tuple]] | None:
            cur.execute(dashboard.sql_of(panel), dashboard.params(values))
            if cur.description is None:
                return None
            return [d.name for d in cur.description], cur.fetchmany(MAX_ROWS + 1)

        try:
            fetched = self._query(fetch)
        except psycopg2.errors.QueryCanceled:
            limit = self.settings.dashboards.query_timeout_s
            return PanelResult(panel, error=f"the query ran longer than {limit:g} s and was "
                                            "cancelled (dashboards.query_timeout_s)",
                               seconds=time.monotonic() - began)
        except psycopg2.OperationalError as exc:
            return PanelResult(panel, error=f"the warehouse (`postgres`) did not "
                                            f"answer: {_server_words(exc)}",
                               seconds=time.monotonic() - began)
        except psycopg2.Error as exc:
            return PanelResult(panel, error=f"SQL error: {_server_words(exc)}",
                               seconds=time.monotonic() - began)
        except ShoplakeError as exc:  # no session at all: the warehouse or its secret
            return PanelResult(panel, error=str(exc), seconds=time.monotonic() - began)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            # psycopg2's own parameter errors: a `%` that should be `%%`, say
            return PanelResult(panel, error=f"the SQL cannot take the filters' parameters "
                                            f"({first_line(exc)}); write a literal % as %%",
                               seconds=time.monotonic() - began)
        if fetched is None:
            return PanelResult(panel, error="the SQL returned no rows (is it a SELECT?)")
        columns, rows = fetched
        if len(rows) > MAX_ROWS:
            return PanelResult(panel, error=f"the query returned more than {MAX_ROWS:,} "
                                            "rows; aggregate them in its SQL",
                               seconds=time.monotonic() - began)
        result = PanelResult(panel, columns, rows, seconds=time.monotonic() - began)
        missing = [(k, c) for k, c in panel.columns_used() if c not in columns]
        if missing:
            k, c = missing[0]
            result.error = (f"unknown column `{c}` (chart field `{k}`); the query returns: "
                            f"{', '.join(columns) or 'no columns'}")
        return result

    def run_all(self, dashboard: Dashboard, values: dict[str, Any]) -> list[PanelResult]:
        return [self.run_panel(dashboard, p, values) for p in dashboard.panels]

    def options(self, f: Filter) -> tuple[list[str], str]:
        """A select filter's choices (its query's first column), and the error if any."""
        def fetch(cur: Any) -> list[str]:
            cur.execute(f.options_sql)
            return [str(r[0]) for r in cur.fetchmany(MAX_OPTIONS) if r[0] is not None]

        try:
            return self._query(fetch), ""
        except psycopg2.errors.QueryCanceled as exc:
            return [], f"filter `{f.id}`: SQL error: {_server_words(exc)}"
        except psycopg2.OperationalError as exc:
            return [], (f"filter `{f.id}`: the warehouse (`postgres`) did not answer: "
                        f"{_server_words(exc)}")
        except psycopg2.Error as exc:
            return [], f"filter `{f.id}`: SQL error: {_server_words(exc)}"
        except ShoplakeError as exc:
            return [], f"filter `{f.id}`: {exc}"

    def ping(self) -> None:
        """Raise the typed error when the warehouse cannot be read as the dashboards' role.
        A session the server dropped (postgres restarted) is replaced, as for panels: the
        health probe must not report a warehouse that answers as down."""
        self._query(lambda cur: cur.execute("SELECT 1"))
