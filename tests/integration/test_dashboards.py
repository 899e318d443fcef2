"""The dashboards on the real warehouse: each panel's numbers on a small gold built by hand
(through the real staging tables and load procedures), the read-only role, broken files,
and the two renderings in a real browser (Debian's Chromium under Playwright).

Every expected number below is worked out by hand from the rows in this file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from pipeline.aws.secrets import reader_credentials, warehouse_credentials
from pipeline.config import Settings
from pipeline.dashboards import PROJECT_DASHBOARDS
from pipeline.dashboards.data import Reader
from pipeline.dashboards.spec import load_all
from pipeline.warehouse import PROCEDURES, apply_ddl, call, load_staging
from pipeline.warehouse.load import session
from pipeline.warehouse.model import STAGING_COLUMNS
from pipeline.warehouse.reader import connect_reader

pytestmark = pytest.mark.integration

T = datetime
ARTIFACTS = Path(os.environ.get("SHOPLAKE_TEST_ARTIFACTS", "/tmp/shoplake-test-artifacts"))
CHROMIUM = "/usr/bin/chromium"

CUSTOMERS = [(1, "Ana", "a" * 64, None, "Lisbon", "Portugal", T(2025, 1, 1), T(2025, 1, 1)),
             (2, "Ben 🚀", "b" * 64, None, "Porto", "Portugal", T(2025, 1, 1), T(2025, 1, 1)),
             (3, "Cy", "c" * 64, None, "Madrid", "Spain", T(2025, 1, 1), T(2025, 1, 1))]
PRODUCTS = [(10, "Widget", "Tools", Decimal("5.00"), True, T(2025, 1, 1)),
            (11, "Gadget", "Toys", Decimal("20.00"), True, T(2025, 1, 1))]
ORDERS = [  # id, customer, status, platform, payment, order_ts, updated_at
    (100, 1, "delivered", "Website", "Card", T(2026, 1, 10, 9), None),
    (101, 2, "paid", "Mobile", "PayPal", T(2026, 1, 20, 12), None),
    (102, 1, "shipped", "Mobile", "Card", T(2026, 2, 5, 8), None),
    (103, 3, "cancelled", "In-store", "Cash", T(2026, 2, 6, 10), None),
    (104, 3, "placed", "In-store", "Card", T(2026, 2, 6, 23, 59, 59, 999999), None),
    (105, 2, "returned", "Website", "PayPal", T(2026, 3, 1, 0, 0), None),
]
ITEMS = [(1, 100, 10, 2, Decimal("5.00")), (2, 100, 11, 1, Decimal("20.00")),  # 30.00
         (3, 101, 11, 1, Decimal("20.00")),                                     # 20.00
         (4, 102, 10, 3, Decimal("5.00")),                                      # 15.00
         (5, 103, 11, 1, Decimal("20.00")),                                     # cancelled
         (6, 104, 10, 1, Decimal("5.00")),                                      # 5.00
         (7, 105, 11, 2, Decimal("20.00"))]                                     # returned
# Revenue leaves out cancelled (103) and returned (105) orders.
KPIS = {  # payment method -> total orders, revenue, average order value, active customers
    None: (6, Decimal("70.00"), Decimal("17.50"), 3),
    "Card": (3, Decimal("50.00"), Decimal("16.67"), 2),  # 100, 102, 104: 50 / 3
    "PayPal": (2, Decimal("20.00"), Decimal("20.00"), 1),  # 101 (105 returned)
    "Cash": (1, Decimal("0"), None, 1),  # only the cancelled 103
}
KPI_TEXT = {None: ["6", "70.00", "17.50", "3"], "Card": ["3", "50.00", "16.67", "2"],
            "PayPal": ["2", "20.00", "20.00", "1"]}
FRESH_S = 90


@pytest.fixture(scope="module")
def gold(stack_settings: Settings) -> Iterator[Settings]:
    """Schema `sales` afresh, loaded from the staging rows above by the real procedures,
    plus two recorded runs for the Pipeline Health dashboard."""
    s = stack_settings
    apply_ddl(s, reset=True)
    for table, rows in (("stg_customers", CUSTOMERS), ("stg_products", PRODUCTS),
                        ("stg_orders", ORDERS), ("stg_order_items", ITEMS)):
        load_staging(s, table, STAGING_COLUMNS[table][:len(rows[0])], rows)
    for proc in PROCEDURES:
        call(s, proc, "run-hand-made")
    now = datetime.utcnow().replace(microsecond=0)
    with session(s) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO sales.pipeline_runs VALUES "
                    "('run-a', 'SUCCEEDED', 'schedule', %s, %s, 65.0, NULL, NULL, %s, %s), "
                    "('run-b', 'FAILED', 'manual', %s, %s, 12.5, 'LoadFacts', "
                    "'Shoplake.Transient: postgres went away', NULL, %s)",
                    (now - timedelta(minutes=10), now - timedelta(minutes=9),
                     now - timedelta(seconds=FRESH_S), now,
                     now - timedelta(minutes=5), now - timedelta(minutes=4), now))
        for layer, n in (("source", 6), ("bronze", 9), ("silver", 6), ("gold", 5)):
            cur.execute("INSERT INTO sales.pipeline_layer_rows VALUES ('run-b', %s, 'orders', "
                        "%s, %s)", (now, layer, n))
        cur.execute("INSERT INTO sales.pipeline_held_rows VALUES "
                    "('run-b', %s, 'orders', 'unknown status ''lost''', 1), "
                    "('run-b', %s, 'order_items', 'non-positive `quantity`', 2), "
                    "('run-a', %s, 'orders', 'an older run: not shown', 7)", (now, now, now))
        conn.commit()
    yield s


@pytest.fixture(scope="module")
def dashboards() -> dict[str, Any]:
    found, broken = load_all(PROJECT_DASHBOARDS)
    assert not broken
    return {d.id: d for d in found}


def _rows(gold: Settings, dashboard: Any, values: dict[str, Any] | None = None
          ) -> dict[str, list[tuple]]:
    reader = Reader(gold)
    try:
        results = reader.run_all(dashboard, values or {})
    finally:
        reader.close()
    assert not [r.error for r in results if r.error]
    return {r.panel.id: r.rows for r in results}


# -- each panel's numbers ------------------------------------------------------------------------
def test_every_sales_panel_returns_the_numbers_worked_out_by_hand(gold: Settings,
                                                                  dashboards: dict) -> None:
    rows = _rows(gold, dashboards["sales_overview"])
    assert rows["kpis"] == [KPIS[None]]
    # Every day from the first order to the last, the days without orders as zeros.
    days = [(str(d), n) for d, n in rows["orders_by_date"]]
    assert len(days) == 51 and days[0] == ("2026-01-10", 1) and days[-1] == ("2026-03-01", 1)
    assert [d for d in days if d[1]] == [("2026-01-10", 1), ("2026-01-20", 1),
                                         ("2026-02-05", 1), ("2026-02-06", 2),
                                         ("2026-03-01", 1)]
    # January 30 + 20, February 15 + 5 (-60 %); March has only the returned order.
    assert rows["revenue_by_month"] == [("2026-01", Decimal("50.00"), None),
                                        ("2026-02", Decimal("20.00"), Decimal("-60.0"))]
    assert rows["sales_by_city"] == [("Lisbon", Decimal("45.00")), ("Porto", Decimal("20.00")),
                                     ("Madrid", Decimal("5.00"))]
    assert rows["sales_by_platform"] == [("Website", Decimal("30.00")),
                                         ("Mobile", Decimal("35.00")),
                                         ("In-store", Decimal("5.00"))]
    assert rows["top_products"] == [("Gadget #11", Decimal("40.00")),
                                    ("Widget #10", Decimal("30.00"))]
    # Reached paid: 100, 101, 102, 105; shipped: 100, 102, 105; delivered: 100, 105.
    assert rows["status_funnel"] == [("placed", 6), ("paid", 4), ("shipped", 3),
                                     ("delivered", 2)]


@pytest.mark.parametrize("method", ["Card", "PayPal", "Cash"])
def test_the_payment_method_filter_applies_to_every_panel(gold: Settings, dashboards: dict,
                                                          method: str) -> None:
    rows = _rows(gold, dashboards["sales_overview"], {"payment_method": method})
    assert rows["kpis"] == [KPIS[method]]
    mine = [o for o in ORDERS if o[4] == method]
    assert sum(n for _, n in rows["orders_by_date"]) == len(mine)
    assert rows["status_funnel"][0] == ("placed", len(mine))
    paying = {o[0] for o in mine if o[2] not in ("cancelled", "returned")}
    revenue = sum((i[3] * i[4] for i in ITEMS if i[1] in paying), Decimal(0))
    for panel in ("sales_by_city", "sales_by_platform", "top_products"):
        assert sum((r[-1] for r in rows[panel]), Decimal(0)) == revenue, panel


def test_the_date_range_includes_its_last_day_whole(gold: Settings, dashboards: dict) -> None:
    rows = _rows(gold, dashboards["sales_overview"],
                 {"order_date": ("2026-02-01", "2026-02-06")})
    # 102, 103 and 104 (placed at 23:59:59.999999 on the 6th); revenue 15 + 5.
    assert rows["kpis"] == [(3, Decimal("20.00"), Decimal("10.00"), 2)]


def test_the_pipeline_health_panels(gold: Settings, dashboards: dict) -> None:
    rows = _rows(gold, dashboards["pipeline_health"])
    (fresh, last, failed, held), = rows["health_kpis"]
    assert FRESH_S <= fresh < FRESH_S + 60 and last == "FAILED" and failed == 1 and held == 3
    assert rows["layer_rows"] == [("orders", "source", 6), ("orders", "bronze", 9),
                                  ("orders", "silver", 6), ("orders", "gold", 5)]
    assert [(r[0], r[1], r[4]) for r in rows["last_runs"]] == [
        ("run-b", "FAILED", Decimal("12.5")), ("run-a", "SUCCEEDED", Decimal("65.0"))]
    assert rows["last_runs"][0][5] == "LoadFacts: Shoplake.Transient: postgres went away"
    assert rows["held_by_reason"] == [("order_items: non-positive `quantity`", 2),
                                      ("orders: unknown status 'lost'", 1)]


# -- the read-only role ----------------------------------------------------------------------------
def test_the_dashboards_role_reads_but_cannot_write(gold: Settings) -> None:
    creds = reader_credentials(gold)
    assert creds.username == gold.dashboards.reader_user
    assert creds.password != warehouse_credentials(gold).password
    conn = connect_reader(gold)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM sales.fact_orders")
            assert cur.fetchone() == (len(ORDERS),)
        attempts = ["INSERT INTO sales.fact_orders SELECT * FROM sales.fact_orders LIMIT 1",
                    "DELETE FROM sales.pipeline_runs", "TRUNCATE sales.fact_order_items",
                    "CREATE TABLE sales.x (a int)", "CREATE TABLE public.x (a int)",
                    "CALL sales.sp_load_fact_orders('x')", "DROP VIEW sales.v_sales_mart"]
        for sql in attempts:
            # Its sessions are read-only (25006), or privileges refuse first (42501) ...
            with conn.cursor() as cur, pytest.raises(psycopg2.Error) as err:
                cur.execute(sql)
            assert err.value.pgcode in ("25006", "42501"), (sql, err.value.pgcode)
            # ... and a transaction it makes writable is refused by privileges (42501).
            with conn.cursor() as cur:
                with pytest.raises(psycopg2.Error) as err:
                    cur.execute("BEGIN READ WRITE; " + sql)
                assert err.value.pgcode == "42501", (sql, err.value.pgcode, str(err.value))
                cur.execute("ROLLBACK")
    finally:
        conn.close()
    with session(gold) as owner, owner.cursor() as cur:
        cur.execute("SELECT count(*) FROM sales.fact_orders")
        assert cur.fetchone() == (len(ORDERS),)


# -- broken dashboards -----------------------------------------------------------------------------
BROKEN = """title: Broken on purpose
panels:
  - id: fine
    title: Orders
    sql: SELECT count(*) AS n FROM sales.fact_orders
    chart: {type: kpi, values: [{column: n, label: Orders, format: int}]}
  - id: bad_sql
    title: Bad SQL
    sql: SELECT count(*) AS n FROM sales.no_such_table
    chart: {type: kpi, values: [{column: n}]}
  - id: bad_column
    title: Bad column
    sql: SELECT order_id FROM sales.fact_orders
    chart: {type: bar, x: order_id, y: order_totl}
  - id: bad_type
    title: Bad type
    sql: SELECT 1 AS n
    chart: {type: sparkline, x: n}
"""


def _shoplake(env: dict[str, str], *args: str, timeout: float = 120
              ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_a_broken_file_or_panel_is_named_and_the_rest_still_renders(
        gold: Settings, cli_env: dict[str, str], tmp_path: Path) -> None:
    defs = tmp_path / "defs"
    defs.mkdir()
    (defs / "broken.yaml").write_text(BROKEN)
    (defs / "not_yaml.yaml").write_text("title: x\npanels: [\n")
    out = tmp_path / "out"
    env = {**cli_env, "SHOPLAKE_DASHBOARDS_DEFINITIONS_DIR": str(defs)}
    done = _shoplake(env, "dashboard", "build", "--out", str(out))
    err = done.stderr
    assert done.returncode == 1, done.stdout + err
    assert f"{defs / 'not_yaml.yaml'}`: is not valid YAML at line" in err, err
    f = defs / "broken.yaml"
    assert f"{f}, panel `bad_sql`: SQL error: relation \"sales.no_such_table\" does not " \
           "exist" in err, err
    assert f"{f}, panel `bad_column`: unknown column `order_totl` (chart field `y`)" in err
    assert f"{f}, panel `bad_type`: unknown chart type `sparkline`" in err, err
    assert "Traceback" not in err and "unexpected error" not in err
    page = (out / "broken.html").read_text()
    assert '"fine":{"kind":"kpi","tiles":[{"id":"n","label":"Orders","value":"6"}]}' in page
    assert page.count('"kind":"error"') == 3
    checked = _shoplake(env, "dashboard", "check")
    assert checked.returncode == 1 and "panel `bad_sql`" in checked.stderr


def test_a_panel_cannot_change_the_session_of_the_panels_after_it(
        gold: Settings, tmp_path: Path) -> None:
    from pipeline.dashboards.spec import load_dashboard

    path = tmp_path / "sessions.yaml"
    path.write_text("""title: Sessions
panels:
  - {id: opens, sql: "BEGIN; SELECT 1 AS n", chart: {type: table}}
  - {id: sets, sql: "SET statement_timeout = 1; SET search_path = nowhere; SELECT 1 AS n",
     chart: {type: table}}
  - id: after
    sql: SELECT current_setting('statement_timeout') AS t, now() = statement_timestamp() AS own,
                current_setting('search_path') AS p, count(*) AS n FROM sales.fact_orders
    chart: {type: table}
""")
    reader = Reader(gold)
    try:
        *_, after = reader.run_all(load_dashboard(path), {})
    finally:
        reader.close()
    assert not after.error, after.error
    # The configured timeout, its own transaction (no BEGIN left open), the default path.
    assert after.rows == [("20s", True, '"$user", public', len(ORDERS))]


def test_a_session_the_server_dropped_is_replaced_for_probe_panels_and_filters(
        gold: Settings, dashboards: dict) -> None:
    """After postgres restarts every pooled session is dead: the health probe, a panel and a
    filter's choices each take a fresh one instead of reporting the warehouse down."""
    from pipeline.dashboards.spec import Filter

    reader = Reader(gold)
    try:
        reader.ping()
        pid = reader._conn().get_backend_pid()
        with session(gold) as owner, owner.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
            assert cur.fetchone() == (True,)
        reader.ping()  # raised "terminating connection due to administrator command"
        assert reader._conn().get_backend_pid() != pid

        pid = reader._conn().get_backend_pid()
        with session(gold) as owner, owner.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        choice = Filter(id="pm", type="select", column="payment_method", label="Payment",
                        options_sql="SELECT DISTINCT payment_method FROM sales.fact_orders "
                                    "ORDER BY 1")
        assert reader.options(choice) == (["Card", "Cash", "PayPal"], "")

        pid = reader._conn().get_backend_pid()
        with session(gold) as owner, owner.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        sales = dashboards["sales_overview"]
        first = reader.run_panel(sales, sales.panels[0], {})
        assert not first.error, first.error
    finally:
        reader.close()


def test_a_query_over_the_timeout_is_reported_as_cancelled_not_as_a_dropped_session(
        gold: Settings, tmp_path: Path) -> None:
    """The server's cancel (QueryCanceled) is an OperationalError too: it must not be taken
    for a dropped session and run once more."""
    from dataclasses import replace

    from pipeline.dashboards.spec import Filter, load_dashboard

    path = tmp_path / "slow.yaml"
    path.write_text("title: Slow\npanels:\n"
                    "  - {id: slow, sql: 'SELECT pg_sleep(5) AS n', chart: {type: table}}\n")
    quick = replace(gold, dashboards=replace(gold.dashboards, query_timeout_s=0.5))
    reader = Reader(quick)
    try:
        (slow,) = reader.run_all(load_dashboard(path), {})
        assert slow.error == ("the query ran longer than 0.5 s and was cancelled "
                              "(dashboards.query_timeout_s)")
        choice = Filter(id="slow", type="select", column="n", label="Slow",
                        options_sql="SELECT pg_sleep(5)::text")
        assert reader.options(choice) == (
            [], "filter `slow`: SQL error: canceling statement due to statement timeout")
        reader.ping()  # the session survived both cancels
    finally:
        reader.close()


# -- in a real browser ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `bash scripts/setup.sh` installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        yield b
        b.close()


def _kpis(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("#body-kpis .kpi .value").all_inner_texts()]


def _charts(page: Any, dashboard: Any) -> dict[str, Any]:
    """Each figure panel's plotted data, as plotly.js holds it (the same call on both pages)."""
    return {p.id: page.evaluate(
        """sel => { const el = document.querySelector(sel);
                    return el && el.data ? el.data.map(t => [t.x, t.y, t.labels, t.values,
                                                             t.text]) : null; }""",
        f"#body-{p.id} .js-plotly-plot") for p in dashboard.panels if p.type != "kpi"}


def _wait_for(page: Any, check: Any, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        page.wait_for_timeout(100)


@pytest.mark.browser
def test_the_live_and_static_pages_show_the_same_numbers_and_the_filter_works(
        gold: Settings, browser: Any, dashboards: dict, cli_env: dict[str, str],
        tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    sales = dashboards["sales_overview"]
    # The live page: served by the stack's own dashboards service.
    live = browser.new_page(viewport={"width": 1400, "height": 1600})
    live.goto(f"http://127.0.0.1:{gold.dashboards.port}/sales_overview/")
    _wait_for(live, lambda: _kpis(live) == KPI_TEXT[None], f"the live KPIs {KPI_TEXT[None]}")
    live.click("#filter-payment_method")
    live.locator(".dash-options-list-option-text", has_text="Card").first.click()
    _wait_for(live, lambda: _kpis(live) == KPI_TEXT["Card"],
              f"the live KPIs to become {KPI_TEXT['Card']} (now {_kpis(live)})")
    _wait_for(live, lambda: all(_charts(live, sales).values()), "every live chart")
    live.screenshot(path=str(ARTIFACTS / f"dashboard-live-card-{time.time_ns()}.png"),
                    full_page=True)
    live_card = _charts(live, sales)
    # The static file, opened from disk with the network off.
    out = tmp_path / "built"
    done = _shoplake(cli_env, "dashboard", "build", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    context = browser.new_context(viewport={"width": 1400, "height": 1600}, offline=True)
    requests: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    for d in dashboards.values():
        page = context.new_page()
        page.goto((out / f"{d.id}.html").as_uri())
        charts = [p for p in d.panels if p.type != "kpi"]
        _wait_for(page, lambda pg=page, c=charts: pg.locator(
            ".js-plotly-plot .main-svg").count() >= 2 * len(c), f"every chart of {d.id}")
        for p in charts:  # every chart drew its SVG
            assert page.locator(f"#body-{p.id} .js-plotly-plot .main-svg").count() >= 1, p.id
        assert page.locator(".error").count() == 0, page.locator(".error").all_inner_texts()
        if d.id == "sales_overview":
            assert _kpis(page) == KPI_TEXT[None]
            page.select_option("#filter-payment_method", "PayPal")
            _wait_for(page, lambda p=page: _kpis(p) == KPI_TEXT["PayPal"], "static PayPal KPIs")
            page.select_option("#filter-payment_method", "Card")
            _wait_for(page, lambda p=page: _kpis(p) == KPI_TEXT["Card"], "static Card KPIs")
            page.screenshot(path=str(ARTIFACTS / f"dashboard-static-card-{time.time_ns()}.png"),
                            full_page=True)
            # One panel definition, two renderings: the same numbers for the same filter.
            assert _charts(page, sales) == live_card
    assert all(u.startswith("file://") for u in requests), requests
