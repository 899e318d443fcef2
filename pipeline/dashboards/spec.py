"""Dashboard files: one YAML per dashboard (title, filters, panels), read and checked.

A panel is a SQL query on the warehouse plus a chart spec. What can be checked without a
database is checked here (chart type, the fields each type needs, filter names); a panel
that fails a check keeps its problem and renders as an error box, so one broken panel
never takes its dashboard down. A file that is not a dashboard at all (bad YAML, no
panels) is a `DashboardFileError` naming the file.

    title: Sales Overview
    filters:
      - {id: payment_method, type: select, column: payment_method, label: Payment method,
         options_sql: "SELECT DISTINCT payment_method FROM sales.fact_orders"}
      - {id: order_date, type: date_range, column: order_ts, label: Order date}
    panels:
      - id: orders_by_date
        title: Orders by date
        sql: SELECT order_ts::date AS day, count(*) AS orders FROM sales.fact_orders
             WHERE {filters} GROUP BY 1 ORDER BY 1
        chart: {type: line, x: day, y: orders}
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import TerminalError

CHART_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "kpi": (("values",), ()),
    "line": (("x", "y"), ("color",)),
    "bar": (("x", "y"), ("color", "text", "text_format", "orientation")),
    "pie": (("names", "values"), ()),
    "funnel": (("stage", "value"), ()),
    "table": ((), ("columns",)),
}
"""Chart type -> (required fields, optional fields); every field but `values`,
`columns`, `text_format` and `orientation` names a column of the panel's query."""

FORMATS = ("int", "number", "money", "pct", "pct_change", "seconds", "text")
"""How a value is written (`format:` of a KPI value, a table column or bar text)."""

FILTER_TYPES = ("select", "date_range")
_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
FILTERS_MACRO = re.compile(r"\{filters(?:\.([A-Za-z_][A-Za-z0-9_]*))?\}")
"""`{filters}` in a panel's SQL is replaced by every filter's condition; `{filters.o}`
qualifies the columns with alias `o`."""
PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_.]*\}")
"""Anything shaped like a placeholder: one that is not `{filters...}` is a typo."""
PANEL_KEYS = frozenset({"id", "title", "sql", "chart", "width", "note", "empty"})
DASHBOARD_KEYS = frozenset({"title", "description", "order", "filters", "panels"})


class DashboardFileError(TerminalError):
    """A dashboard file that cannot be read as a dashboard."""

    def __init__(self, path: Path, message: str, *, panel: str = "") -> None:
        where = f"{path}" + (f", panel `{panel}`" if panel else "")
        super().__init__(f"dashboard `{where}`: {message}",
                         hint="fix the file; `shoplake dashboard check` checks them all")
        self.path, self.panel = path, panel


@dataclass(frozen=True)
class Filter:
    id: str
    type: str
    column: str
    label: str
    options_sql: str = ""
    """select: the query giving its options (first column); `All` is always offered."""

    def params(self, value: Any) -> dict[str, Any]:
        """The query parameters for `value` (None: no filtering; an empty string is a
        value like any other)."""
        if self.type == "date_range":
            start, end = value if value else (None, None)
            return {f"{self.id}_from": start or None, f"{self.id}_to": end or None}
        return {self.id: value}

    def condition(self, alias: str | None) -> str:
        """SQL that is true when the row passes; values come only from parameters."""
        col = f"{alias}.{self.column}" if alias else self.column
        if self.type == "date_range":
            lo, hi = f"%({self.id}_from)s::date", f"%({self.id}_to)s::date"
            return (f"({lo} IS NULL OR {col} >= {lo}) AND "
                    f"({hi} IS NULL OR {col} < {hi} + 1)")
        return f"(%({self.id})s::text IS NULL OR {col} = %({self.id})s)"


@dataclass(frozen=True)
class Panel:
    id: str
    title: str
    sql: str
    chart: dict[str, Any]
    width: int = 6
    """Of 12 columns."""
    note: str = ""
    empty: str = "no data for these filters"
    """What the chart says when the query returns no rows."""
    problem: str = ""
    """Why the panel cannot render (found before any query); empty when fine."""

    @property
    def type(self) -> str:
        return str(self.chart.get("type", ""))

    def columns_used(self) -> list[tuple[str, str]]:
        """(chart field, column) pairs the query's result must have."""
        used = [(k, str(self.chart[k])) for k in ("x", "y", "color", "text", "names",
                                                   "values", "stage", "value")
                if k in self.chart and isinstance(self.chart[k], str)]
        if self.type == "kpi":
            used += [("values", str(v.get("column"))) for v in self.chart.get("values", [])]
        if self.type == "table":
            used += [("columns", str(c.get("column"))) for c in self.chart.get("columns", [])]
        return used


@dataclass(frozen=True)
class Dashboard:
    id: str
    """The file's stem, made URL-safe: `sales_overview` for dashboards/sales_overview.yaml."""
    path: Path
    title: str
    description: str
    filters: tuple[Filter, ...]
    panels: tuple[Panel, ...]
    order: int = 100
    problems: tuple[str, ...] = field(default=())
    """Every panel's problem, as `file, panel: message` lines."""

    def params(self, values: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in self.filters:
            out |= f.params(values.get(f.id))
        return out

    def sql_of(self, panel: Panel) -> str:
        """The panel's SQL with `{filters}` made into the filters' conditions."""
        def conditions(match: re.Match[str]) -> str:
            return " AND ".join(f.condition(match.group(1)) for f in self.filters) or "TRUE"
        return FILTERS_MACRO.sub(conditions, panel.sql)


def _chart_problem(chart: Any) -> str:
    if not isinstance(chart, dict):
        return "`chart` must be a mapping with a `type`"
    kind = chart.get("type")
    if kind not in CHART_FIELDS:
        return f"unknown chart type `{kind}`; choose one of: {', '.join(CHART_FIELDS)}"
    required, optional = CHART_FIELDS[kind]
    missing = [f for f in required if f not in chart]
    if missing:
        return f"a `{kind}` chart needs {', '.join(f'`{m}`' for m in missing)}"
    unknown = sorted(set(chart) - {"type", *required, *optional})
    if unknown:
        return (f"a `{kind}` chart has no field {', '.join(f'`{u}`' for u in unknown)}; "
                f"its fields: {', '.join((*required, *optional))}")
    for key in ("values", "columns"):
        if key in chart and kind in ("kpi", "table"):
            items = chart[key]
            if not isinstance(items, list) or not all(isinstance(i, dict) and "column" in i
                                                      for i in items):
                return f"`{key}` must be a list of {{column, label, format}}"
            bad = [i.get("format") for i in items if i.get("format", "number") not in FORMATS]
            if bad:
                return f"unknown format `{bad[0]}`; choose one of: {', '.join(FORMATS)}"
    if chart.get("text_format", "pct_change") not in FORMATS:
        return f"unknown format `{chart['text_format']}`; choose one of: {', '.join(FORMATS)}"
    return ""


def _panel(raw: Any, index: int, filters: tuple[Filter, ...]) -> Panel:
    if not isinstance(raw, dict):
        return Panel(f"panel_{index + 1}", f"panel {index + 1}", "", {},
                     problem="a panel must be a mapping (id, title, sql, chart)")
    pid = str(raw.get("id") or f"panel_{index + 1}")
    title = str(raw.get("title") or pid)
    sql = raw.get("sql")
    chart = raw.get("chart")
    problem = ""
    if not _ID.match(pid):
        problem = f"panel id `{pid}` must be lower_case letters, digits and `_`"
    elif not isinstance(sql, str) or not sql.strip():
        problem = "`sql` is missing"
    else:
        problem = _chart_problem(chart)
    if not problem:
        unknown_macros = [m for m in PLACEHOLDER.findall(sql) if not FILTERS_MACRO.fullmatch(m)]
        if unknown_macros:
            problem = (f"unknown placeholder `{unknown_macros[0]}` in the SQL; write "
                       "`{filters}` or `{filters.alias}`")
    if not problem:
        extra_keys = sorted(set(raw) - PANEL_KEYS)
        if extra_keys:
            problem = (f"unknown key {', '.join(f'`{k}`' for k in extra_keys)}; a panel has: "
                       f"{', '.join(sorted(PANEL_KEYS))}")
    if not problem:
        extra = re.findall(r"%\(\s*(\w+)\s*\)s", sql)
        known = {k for f in filters for k in f.params(None)}
        unknown = [p for p in extra if p not in known]
        if unknown:
            problem = (f"the SQL names parameter `{unknown[0]}`, which no filter gives; "
                       f"filters give: {', '.join(sorted(known)) or 'none'}")
    width = raw.get("width", 6)
    if not problem and (not isinstance(width, int) or not 1 <= width <= 12):
        problem = "`width` must be a whole number from 1 to 12"
    return Panel(pid, title, sql if isinstance(sql, str) else "",
                 chart if isinstance(chart, dict) else {},
                 width if isinstance(width, int) and 1 <= width <= 12 else 6,
                 str(raw.get("note") or ""),
                 str(raw.get("empty") or "no data for these filters"), problem)


def _filters(path: Path, raw: Any) -> tuple[Filter, ...]:
    if raw in (None, []):
        return ()
    if not isinstance(raw, list):
        raise DashboardFileError(path, "`filters` must be a list")
    out = []
    for f in raw:
        if not isinstance(f, dict):
            raise DashboardFileError(path, "each filter must be a mapping (id, type, column)")
        fid, kind, column = str(f.get("id", "")), f.get("type", "select"), str(f.get("column", ""))
        if not _ID.match(fid):
            raise DashboardFileError(path, f"filter id `{fid}` must be lower_case letters, "
                                           "digits and `_`")
        if kind not in FILTER_TYPES:
            raise DashboardFileError(path, f"filter `{fid}` has unknown type `{kind}`; choose "
                                           f"one of: {', '.join(FILTER_TYPES)}")
        if not _COLUMN.match(column):
            raise DashboardFileError(path, f"filter `{fid}` needs a `column` (a column name)")
        if kind == "select" and not str(f.get("options_sql") or "").strip():
            raise DashboardFileError(path, f"select filter `{fid}` needs `options_sql`")
        # Two filters with one id would bind one query parameter twice (a date range's
        # value is a pair, so every panel would compare text with a record).
        names = {f"{fid}_from", f"{fid}_to"} if kind == "date_range" else {fid}
        if fid in {o.id for o in out}:
            raise DashboardFileError(path, f"filter id `{fid}` is used twice in the file")
        taken = names & {n for other in out for n in _param_names(other)}
        if taken:
            twin = next(o.id for o in out if taken & _param_names(o))
            raise DashboardFileError(path, f"filter `{fid}` and filter `{twin}` both bind "
                                           f"the query parameter `{sorted(taken)[0]}`")
        out.append(Filter(fid, kind, column, str(f.get("label") or fid),
                          str(f.get("options_sql") or "")))
    return tuple(out)


def _param_names(f: Filter) -> set[str]:
    return {f"{f.id}_from", f"{f.id}_to"} if f.type == "date_range" else {f.id}


def slug(stem: str) -> str:
    """A file name made fit for a URL path and an HTML file name: `Sales Overview 🚀` ->
    `sales-overview`."""
    return re.sub(r"[^a-z0-9_]+", "-", stem.lower()).strip("-") or "dashboard"


def load_dashboard(path: Path) -> Dashboard:
    """One dashboard file; DashboardFileError when it is not one."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DashboardFileError(path, f"cannot be read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise DashboardFileError(path, f"is not UTF-8 text (byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DashboardFileError(path, f"is not valid YAML{where}: {problem}") from exc
    if not isinstance(raw, dict):
        raise DashboardFileError(path, "must be a mapping with `title` and `panels`")
    extra = sorted(set(raw) - DASHBOARD_KEYS)
    if extra:
        raise DashboardFileError(path, f"unknown key {', '.join(f'`{k}`' for k in extra)}; "
                                       f"a dashboard has: {', '.join(sorted(DASHBOARD_KEYS))}")
    panels_raw = raw.get("panels")
    if not isinstance(panels_raw, list) or not panels_raw:
        raise DashboardFileError(path, "has no `panels` (a list of panels)")
    filters = _filters(path, raw.get("filters"))
    panels = tuple(_panel(p, i, filters) for i, p in enumerate(panels_raw))
    seen: set[str] = set()
    fixed = []
    for n, p in enumerate(panels):  # a duplicate id would make two panels share one element
        if p.id in seen:
            p = dataclasses.replace(p, id=f"{p.id}_{n + 1}",
                                    problem=f"panel id `{p.id}` is used twice in the file")
        seen.add(p.id)
        fixed.append(p)
    problems = tuple(f"{path}, panel `{p.id}`: {p.problem}" for p in fixed if p.problem)
    return Dashboard(slug(path.stem), path, str(raw.get("title") or path.stem),
                     str(raw.get("description") or ""), filters, tuple(fixed),
                     int(raw.get("order", 100)) if str(raw.get("order", 100)).isdigit()
                     else 100, problems)


def load_all(folder: Path) -> tuple[list[Dashboard], list[DashboardFileError]]:
    """Every `*.yaml` / `*.yml` under `folder`, in their `order`: the dashboards that read,
    and an error for each file that did not."""
    files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    if not files:
        raise TerminalError(f"no dashboard files (*.yaml, *.yml) in `{folder}`",
                            hint="set `SHOPLAKE_DASHBOARDS_DEFINITIONS_DIR` to the folder "
                                 "that holds them")
    dashboards, errors = [], []
    for path in files:
        try:
            dashboards.append(load_dashboard(path))
        except DashboardFileError as exc:
            errors.append(exc)
    dashboards.sort(key=lambda d: (d.order, d.id))
    seen: dict[str, Path] = {}
    unique = []
    for d in dashboards:  # two files, one URL: the second is refused, naming both
        if d.id in seen:
            errors.append(DashboardFileError(d.path, f"would be served and built as `{d.id}`, "
                                                     f"like {seen[d.id]}; rename one"))
            continue
        seen[d.id] = d.path
        unique.append(d)
    return unique, errors
