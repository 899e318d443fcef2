"""Dashboard files are read and checked without a database: a broken file names itself,
a broken panel names its file and itself and keeps the rest of the dashboard."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.dashboards import PROJECT_DASHBOARDS
from pipeline.dashboards.spec import DashboardFileError, load_all, load_dashboard

pytestmark = pytest.mark.unit

GOOD_PANEL = """
  - id: ok
    title: Fine
    sql: SELECT 1 AS n WHERE {filters}
    chart: {type: kpi, values: [{column: n, label: N, format: int}]}
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_project_dashboards_read_without_problems() -> None:
    dashboards, broken = load_all(PROJECT_DASHBOARDS)
    assert not broken
    assert [d.id for d in dashboards] == ["sales_overview", "pipeline_health"]
    assert all(not d.problems for d in dashboards), [d.problems for d in dashboards]
    sales = dashboards[0]
    assert {f.id for f in sales.filters} == {"payment_method", "order_date"}
    assert {p.type for p in sales.panels} == {"kpi", "line", "bar", "pie", "funnel"}


def test_bad_yaml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.yaml", "title: x\npanels:\n  - id: a\n   sql: [\n")
    with pytest.raises(DashboardFileError) as err:
        load_dashboard(path)
    assert str(path) in str(err.value) and "not valid YAML at line" in str(err.value)


def test_a_broken_file_leaves_the_others_loaded(tmp_path: Path) -> None:
    _write(tmp_path, "a_bad.yaml", "title: [unclosed\n")
    _write(tmp_path, "b_good.yaml", f"title: Good\npanels:{GOOD_PANEL}")
    dashboards, broken = load_all(tmp_path)
    assert [d.id for d in dashboards] == ["b_good"]
    assert len(broken) == 1 and "a_bad.yaml" in str(broken[0])


@pytest.mark.parametrize(("chart", "words"), [
    ("{type: pie3d, names: a, values: b}", "unknown chart type `pie3d`; choose one of: kpi"),
    ("{type: line, x: day}", "a `line` chart needs `y`"),
    ("{type: bar, x: a, y: b, colour: c}", "a `bar` chart has no field `colour`"),
    ("{type: kpi, values: [{column: n, format: euros}]}", "unknown format `euros`"),
])
def test_a_bad_chart_is_that_panels_problem_only(tmp_path: Path, chart: str, words: str
                                                 ) -> None:
    path = _write(tmp_path, "d.yaml", f"title: D\npanels:{GOOD_PANEL}"
                                      f"  - id: broken\n    sql: SELECT 1\n    chart: {chart}\n")
    d = load_dashboard(path)
    ok, broken = d.panels
    assert not ok.problem
    assert words in broken.problem
    assert d.problems == (f"{path}, panel `broken`: {broken.problem}",)


def test_an_unknown_parameter_is_refused_before_any_query(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.yaml", "title: D\npanels:\n  - id: p\n"
                  "    sql: SELECT 1 AS n WHERE x = %(region)s\n"
                  "    chart: {type: table}\n")
    assert "parameter `region`, which no filter gives" in load_dashboard(path).panels[0].problem


def test_filters_become_parameters_never_sql_text(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.yaml", """title: D
filters:
  - {id: pm, type: select, column: payment_method, options_sql: SELECT 1}
  - {id: day, type: date_range, column: order_ts}
panels:
  - id: p
    sql: SELECT count(*) AS n FROM sales.fact_orders AS o WHERE {filters.o}
    chart: {type: table}
""")
    d = load_dashboard(path)
    sql = d.sql_of(d.panels[0])
    assert "o.payment_method = %(pm)s" in sql and "o.order_ts >= %(day_from)s::date" in sql
    assert "o.order_ts < %(day_to)s::date + 1" in sql  # the last day is included whole
    values = {"pm": "Cash'; DROP TABLE x; --", "day": ("2026-01-01", None)}
    assert d.params(values) == {"pm": "Cash'; DROP TABLE x; --", "day_from": "2026-01-01",
                                "day_to": None}
    assert "DROP" not in sql
    assert d.params({}) == {"pm": None, "day_from": None, "day_to": None}


def test_a_file_without_panels_is_not_a_dashboard(tmp_path: Path) -> None:
    with pytest.raises(DashboardFileError, match="has no `panels`"):
        load_dashboard(_write(tmp_path, "d.yaml", "title: D\n"))


def test_a_file_name_becomes_a_url_safe_id_and_two_files_cannot_share_one(tmp_path: Path
                                                                         ) -> None:
    _write(tmp_path, "Sales Overview 🚀.yaml", f"title: A\npanels:{GOOD_PANEL}")
    _write(tmp_path, "sales-overview.yml", f"title: B\npanels:{GOOD_PANEL}")
    dashboards, broken = load_all(tmp_path)
    assert [d.id for d in dashboards] == ["sales-overview"]
    assert len(broken) == 1 and "would be served and built as `sales-overview`" in str(broken[0])


@pytest.mark.parametrize(("filters", "said"), [
    ("  - {id: pm, type: select, column: payment_method, options_sql: SELECT 1}\n"
     "  - {id: pm, type: date_range, column: order_ts}\n", "filter id `pm` is used twice"),
    ("  - {id: day, type: date_range, column: order_ts}\n"
     "  - {id: day_from, type: select, column: status, options_sql: SELECT 1}\n",
     "filter `day_from` and filter `day` both bind the query parameter `day_from`"),
])
def test_two_filters_on_one_parameter_are_refused(tmp_path: Path, filters: str,
                                                  said: str) -> None:
    """They would bind one parameter twice: every panel broke with `text = record`."""
    path = _write(tmp_path, "d.yaml", f"title: D\nfilters:\n{filters}panels:{GOOD_PANEL}")
    with pytest.raises(DashboardFileError, match=said) as err:
        load_dashboard(path)
    assert str(path) in str(err.value)
