"""One panel's result made into what both renderings show: a Plotly figure (plain JSON
that plotly.js draws, in the static page as in Dash) or KPI tiles. Both pages call these
functions, so the same rows give the same numbers, formatted the same way.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pipeline.dashboards.data import PanelResult

COLOURS = ("#3b6fb6", "#e08a2c", "#4aa05a", "#c9483b", "#8a62b8", "#7f8c8d", "#d4a72c",
           "#2a9d9b", "#c26da8", "#5b7083")
"""Trace colours, in order (a fixed palette: the two renderings must not differ)."""

LAYOUT = {"margin": {"l": 56, "r": 16, "t": 12, "b": 48}, "height": 320,
          "paper_bgcolor": "#ffffff", "plot_bgcolor": "#ffffff", "colorway": list(COLOURS),
          "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif",
                   "size": 12, "color": "#2b2f36"},
          "xaxis": {"gridcolor": "#eceef1", "zeroline": False, "automargin": True},
          "yaxis": {"gridcolor": "#eceef1", "zeroline": False, "automargin": True},
          "legend": {"orientation": "h", "y": -0.2}, "hovermode": "closest"}
"""Every figure's layout; no template, so a figure's JSON is its data and little else."""

CONFIG = {"displaylogo": False, "responsive": True,
          "modeBarButtonsToRemove": ["sendDataToCloud", "lasso2d", "select2d"]}
"""plotly.js config of every chart: nothing that reaches a network."""


def plain(value: Any) -> Any:
    """A JSON value for plotly.js: numbers as numbers, days and times as ISO text."""
    if isinstance(value, (Decimal, float)):
        number = float(value)
        return number if math.isfinite(number) else None  # JSON has no NaN or Infinity
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return value


def fmt(value: Any, kind: str = "number") -> str:
    """`value` written for people, the same on both pages."""
    if value is None:
        return "–"
    if kind == "text" or not isinstance(value, (int, float, Decimal)):
        return str(value)
    v = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    if not v.is_finite():
        return str(v)
    if kind == "int":
        return f"{v:,.0f}"
    if kind in ("number", "money"):
        return f"{v:,.2f}"
    if kind == "pct":
        return f"{v:.1f}%"
    if kind == "pct_change":
        return f"{v:+.1f}%"
    if kind == "seconds":
        s = int(v.to_integral_value())
        if abs(s) < 120:
            return f"{s} s"
        if abs(s) < 7200:
            return f"{s // 60} min {s % 60} s"
        if abs(s) < 172800:
            return f"{s // 3600} h {s % 3600 // 60} min"
        return f"{s // 86400} d {s % 86400 // 3600} h"
    return str(value)


def kpi_tiles(result: PanelResult) -> list[dict[str, str]]:
    """[{id, label, value}] from the first row of the result."""
    row = result.rows[0] if result.rows else None
    tiles = []
    for v in result.panel.chart["values"]:
        col = str(v["column"])
        raw = row[result.columns.index(col)] if row is not None else None
        # No format given: whole numbers (counts) without decimals, others with two.
        kind = v.get("format") or ("int" if isinstance(raw, int) else "number")
        tiles.append({"id": col, "label": str(v.get("label") or col),
                      "value": fmt(raw, str(kind))})
    return tiles


def _layout(**extra: Any) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in LAYOUT.items()}
    for k, v in extra.items():
        out[k] = {**out.get(k, {}), **v} if isinstance(v, dict) else v
    return out


def _series(result: PanelResult, x: str, y: str, color: str | None
            ) -> list[tuple[str | None, list[Any], list[Any], list[int]]]:
    """(name, xs, ys, row indexes) per colour value, in first-seen order."""
    xi, yi = result.columns.index(x), result.columns.index(y)
    if not color:
        return [(None, [plain(r[xi]) for r in result.rows], [plain(r[yi]) for r in result.rows],
                 list(range(len(result.rows))))]
    ci = result.columns.index(color)
    groups: dict[Any, tuple[list, list, list]] = {}
    for n, r in enumerate(result.rows):
        g = groups.setdefault(r[ci], ([], [], []))
        g[0].append(plain(r[xi]))
        g[1].append(plain(r[yi]))
        g[2].append(n)
    return [(str(k), xs, ys, ns) for k, (xs, ys, ns) in groups.items()]


def figure(result: PanelResult) -> dict[str, Any]:
    """The panel's Plotly figure (not for `kpi` panels)."""
    chart, kind = result.panel.chart, result.panel.type
    if not result.rows:
        return {"data": [], "layout": _layout(
            xaxis={"visible": False}, yaxis={"visible": False},
            annotations=[{"text": result.panel.empty, "showarrow": False,
                          "font": {"size": 14, "color": "#7f8c8d"}}])}
    if kind in ("line", "bar"):
        horizontal = chart.get("orientation") == "h"
        text_col = chart.get("text")
        traces = []
        for name, xs, ys, rows in _series(result, chart["x"], chart["y"], chart.get("color")):
            t: dict[str, Any] = {"type": "scatter" if kind == "line" else "bar", "x": xs,
                                 "y": ys}
            if name is not None:
                t["name"] = name
            if kind == "line":
                t["mode"] = "lines"
            if horizontal:
                t["orientation"] = "h"
            if text_col:
                ti = result.columns.index(text_col)
                t["text"] = [fmt(result.rows[n][ti], chart.get("text_format", "pct_change"))
                             if result.rows[n][ti] is not None else "" for n in rows]
                t["textposition"] = "outside"
                t["cliponaxis"] = False
            traces.append(t)
        extra: dict[str, Any] = {"showlegend": bool(chart.get("color"))}
        if horizontal:  # the largest on top, as a ranking reads
            extra["yaxis"] = {"autorange": "reversed", "type": "category"}
        if kind == "bar" and chart.get("color"):
            extra["barmode"] = "group"
        return {"data": traces, "layout": _layout(**extra)}
    if kind == "pie":
        return {"data": [{"type": "pie", "labels": [plain(v) for v in
                                                    result.column(chart["names"])],
                          "values": [plain(v) for v in result.column(chart["values"])],
                          "hole": 0.45, "sort": False, "textinfo": "label+percent",
                          "marker": {"colors": list(COLOURS)}}],
                "layout": _layout(showlegend=True)}
    if kind == "funnel":
        return {"data": [{"type": "funnel", "y": [plain(v) for v in
                                                  result.column(chart["stage"])],
                          "x": [plain(v) for v in result.column(chart["value"])],
                          "texttemplate": "%{x:,} (%{percentInitial:.0%})"}],
                "layout": _layout(showlegend=False, margin={"l": 96})}
    if kind == "table":
        cols = chart.get("columns") or [{"column": c} for c in result.columns]
        header = [str(c.get("label") or c["column"]) for c in cols]
        cells = [[fmt(v, str(c.get("format", "text"))) for v in result.column(str(c["column"]))]
                 for c in cols]
        return {"data": [{"type": "table",
                          "header": {"values": header, "fill": {"color": "#eef1f5"},
                                     "align": "left", "font": {"size": 12}},
                          "cells": {"values": cells, "align": "left", "height": 24}}],
                "layout": _layout(margin={"l": 4, "r": 4, "t": 4, "b": 4})}
    raise ValueError(f"no figure for chart type `{kind}`")


def render(result: PanelResult) -> dict[str, Any]:
    """What a page shows for one panel: {kind: error|kpi|figure, ...}."""
    if result.error:
        return {"kind": "error", "error": result.error}
    if result.panel.type == "kpi":
        return {"kind": "kpi", "tiles": kpi_tiles(result)}
    return {"kind": "figure", "figure": figure(result)}
