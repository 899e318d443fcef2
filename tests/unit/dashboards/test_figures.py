"""Rows become the same figures and words on both pages; a static page needs no network."""

from __future__ import annotations

import json
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from pipeline.dashboards.data import PanelResult
from pipeline.dashboards.figures import figure, fmt, render
from pipeline.dashboards.spec import Dashboard, Filter, Panel
from pipeline.dashboards.static import render_page

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("value", "kind", "text"), [
    (Decimal("36873789.6"), "money", "36,873,789.60"),
    (Decimal("99999999999999999999999999999999999.99"), "money",
     "99,999,999,999,999,999,999,999,999,999,999,999.99"),  # the largest numeric(38,2)
    (100552, "int", "100,552"),
    (Decimal("-94.8"), "pct_change", "-94.8%"),
    (Decimal("22.9"), "pct_change", "+22.9%"),
    (45, "seconds", "45 s"),
    (3725, "seconds", "62 min 5 s"),
    (None, "int", "–"),
    ("SUCCEEDED", "text", "SUCCEEDED"),
])
def test_numbers_are_written_exactly(value: object, kind: str, text: str) -> None:
    assert fmt(value, kind) == text


def _result(chart: dict, columns: list[str], rows: list[tuple], kind: str = "bar"
            ) -> PanelResult:
    return PanelResult(Panel("p", "P", "SELECT 1", {"type": kind, **chart}), columns, rows)


def test_a_coloured_bar_chart_has_one_trace_per_colour_in_first_seen_order() -> None:
    fig = figure(_result({"x": "t", "y": "n", "color": "layer"}, ["t", "layer", "n"],
                         [("orders", "source", 3), ("orders", "gold", 3),
                          ("items", "source", Decimal("7"))]))
    assert [t["name"] for t in fig["data"]] == ["source", "gold"]
    assert fig["data"][0]["x"] == ["orders", "items"] and fig["data"][0]["y"] == [3, 7.0]
    assert fig["layout"]["barmode"] == "group"


def test_nan_and_infinity_are_gaps_not_broken_json() -> None:
    fig = figure(_result({"x": "a", "y": "b"}, ["a", "b"],
                         [("x", Decimal("NaN")), ("y", float("inf")), ("z", 1)]))
    assert fig["data"][0]["y"] == [None, None, 1]
    json.dumps(fig, allow_nan=False)
    assert fmt(Decimal("NaN"), "money") == "NaN"


def test_dates_and_decimals_become_json() -> None:
    fig = figure(_result({"x": "day", "y": "v"}, ["day", "v"],
                         [(date(9999, 12, 31), Decimal("1.5"))], kind="line"))
    assert json.loads(json.dumps(fig))["data"][0] == {"type": "scatter", "x": ["9999-12-31"],
                                                      "y": [1.5], "mode": "lines"}


def test_an_empty_result_says_so_and_an_error_is_an_error_box() -> None:
    empty = render(_result({"x": "a", "y": "b"}, ["a", "b"], []))
    assert empty["figure"]["layout"]["annotations"][0]["text"] == "no data for these filters"
    bad = PanelResult(Panel("p", "P", "x", {"type": "bar"}), error="SQL error: boom")
    assert render(bad) == {"kind": "error", "error": "SQL error: boom"}


def test_a_static_page_has_plotly_once_and_fetches_nothing() -> None:
    d = Dashboard("d", Path("d.yaml"), "D </script>", "", (
        Filter("pm", "select", "payment_method", "Payment", "SELECT 1"),),
        (Panel("p", "P", "SELECT 1", {"type": "bar", "x": "a", "y": "b"}),))
    views = {"all": {"p": {"kind": "error", "error": "</script><script>alert(1)</script>"}},
             "v0": {"p": {"kind": "error", "error": "<!-- <script> & </script>"}}}
    page = render_page(d, {"pm": ["Cash"]}, views, "/*PLOTLY*/", (None, None),
                       __import__("datetime").datetime(2026, 1, 1))
    assert page.count("/*PLOTLY*/") == 1
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", page)
    data = page.split('id="shoplake-data">')[1].split("</script>")[0]
    assert "<" not in data and ">" not in data and "&" not in data  # nor end it, nor `<!--`
    assert json.loads(data)["views"]["v0"]["p"]["error"] == "<!-- <script> & </script>"
    assert "D &lt;/script&gt;" in page
    assert '<option value="all">All</option><option value="v0">Cash</option>' in page


def test_all_and_every_value_have_their_own_view_even_empty_or_all() -> None:
    from pipeline.dashboards.static import key_of

    d = Dashboard("d", Path("d.yaml"), "D", "", (
        Filter("pm", "select", "payment_method", "Payment", "SELECT 1"),), ())
    options = {"pm": ["", "all", "All", "a|b"]}
    keys = [key_of(d, {"pm": v}, options) for v in (None, "", "all", "All", "a|b")]
    assert keys == ["all", "v0", "v1", "v2", "v3"]
    assert d.params({"pm": ""}) == {"pm": ""}  # an empty string filters, like any value
