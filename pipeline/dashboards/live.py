"""`shoplake dashboard serve`: the same dashboards live from the warehouse, with Dash.

One Flask server; each dashboard is a Dash app under `/<id>/`, `/` lists them, and
`/_health` answers once the warehouse answers as the read-only role (the stack's probe).
A filter change runs every panel's parametrised query again and redraws the panels with
the same figure functions the static build uses. Dash serves its own scripts from the
installed package, so the live page needs no network either.
"""

from __future__ import annotations

import html as html_text
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

from pipeline.config import Settings
from pipeline.dashboards.data import Reader
from pipeline.dashboards.figures import CONFIG, render
from pipeline.dashboards.spec import Dashboard, DashboardFileError
from pipeline.dashboards.static import CSS

LOG = logging.getLogger(__name__)

PARALLEL_QUERIES = 4
ALL = -1
"""The `All` choice's value: a number, so no payment method (always text) can be it."""
"""Panels of one filter change queried at once (each on its own connection)."""


def _body(pid: str, view: dict[str, Any]) -> Any:
    from dash import dcc, html

    if view["kind"] == "figure":
        return dcc.Graph(id=f"chart-{pid}", className="chart", figure=view["figure"],
                         config=CONFIG)
    if view["kind"] == "kpi":
        return html.Div(className="kpis", children=[
            html.Div(className="kpi", **{"data-kpi": t["id"]}, children=[
                html.Div(t["label"], className="label"), html.Div(t["value"], className="value")])
            for t in view["tiles"]])
    return html.Div(view["error"], className="error")


def _values(dashboard: Dashboard, inputs: list[Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    it = iter(inputs)
    for f in dashboard.filters:
        if f.type == "select":
            v = next(it)
            values[f.id] = None if v == ALL or v is None else str(v)
        else:
            start, end = next(it), next(it)
            values[f.id] = (str(start)[:10] if start else None, str(end)[:10] if end else None)
    return values


def add_dashboard(server: Any, dashboard: Dashboard, reader: Reader,
                  pool: ThreadPoolExecutor) -> None:
    from dash import Dash, Input, Output, dcc, html

    app = Dash(dashboard.id, server=server, url_base_pathname=f"/{dashboard.id}/",
               title=f"{dashboard.title} · shoplake", serve_locally=True,
               update_title=None)
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + CSS + "</style>")
    # The page's location is an input too, so a dashboard without filters renders on load.
    inputs = [Input("shoplake-url", "pathname")]
    for f in dashboard.filters:
        if f.type == "select":
            inputs.append(Input(f"filter-{f.id}", "value"))
        else:
            inputs += [Input(f"filter-{f.id}", "start_date"), Input(f"filter-{f.id}", "end_date")]

    def controls() -> list[Any]:
        out = []
        for f in dashboard.filters:
            if f.type == "select":
                # Read on each page load (new values show), in a pool thread: those keep
                # their connections, where a request's thread would leave one behind.
                options, error = pool.submit(reader.options, f).result()
                if error:
                    LOG.warning("%s: %s", dashboard.path, error)
                out.append(html.Label([f.label, dcc.Dropdown(
                    id=f"filter-{f.id}", value=ALL, clearable=False, searchable=False,
                    options=[{"label": "All", "value": ALL},
                             *({"label": o, "value": o} for o in options)],
                    style={"minWidth": "200px"})]))
            else:
                out.append(html.Label([f.label, dcc.DatePickerRange(
                    id=f"filter-{f.id}", display_format="YYYY-MM-DD", clearable=True,
                    max_date_allowed=date(9999, 12, 31))]))
        return out

    panels = [html.Section(id=f"panel-{p.id}", className=f"panel w{p.width}",
                           **{"data-kind": p.type},
                           children=[html.H2(p.title), html.Div(id=f"body-{p.id}",
                                                                className="body"),
                                     *([html.Div(p.note, className="note")] if p.note else [])])
              for p in dashboard.panels]

    def layout() -> Any:
        shown = controls()
        return html.Div([
            dcc.Location(id="shoplake-url"),
            html.Header([html.H1(dashboard.title), html.Div(
                (f"{dashboard.description} · " if dashboard.description else "")
                + "live from the warehouse (schema sales)",
                className="meta")]),
            *([html.Div(shown, className="filters")] if shown else []),
            html.Main(panels, className="grid"),
            html.Div(id="shoplake-view", style={"display": "none"})])

    app.layout = layout
    outputs = [Output(f"body-{p.id}", "children") for p in dashboard.panels]

    @app.callback(*outputs, Output("shoplake-view", "children"), *inputs)
    def update(*inputs_now: Any) -> list[Any]:
        values = _values(dashboard, list(inputs_now)[1:])
        began = time.monotonic()
        results = list(pool.map(lambda p: reader.run_panel(dashboard, p, values),
                                dashboard.panels))
        LOG.info("%s: %d panel(s) for %s in %.0f ms", dashboard.id, len(results), values,
                 (time.monotonic() - began) * 1000)
        views = [render(r) for r in results]
        key = "|".join("(all)" if values.get(f.id) is None else str(values[f.id])
                       for f in dashboard.filters if f.type == "select")
        return [*(_body(p.id, v) for p, v in zip(dashboard.panels, views)), key]


def create_server(settings: Settings, dashboards: list[Dashboard],
                  broken: list[DashboardFileError]) -> Any:
    """The Flask server with every dashboard mounted."""
    from flask import Flask

    server = Flask("shoplake-dashboards")
    reader = Reader(settings)
    pool = ThreadPoolExecutor(PARALLEL_QUERIES, thread_name_prefix="panel")
    for d in dashboards:
        add_dashboard(server, d, reader, pool)

    @server.route("/")
    def index() -> str:
        e = html_text.escape
        items = "".join(f'<li><a href="/{d.id}/">{e(d.title)}</a> <small>{e(d.description)}'
                        f"</small></li>" for d in dashboards)
        bad = "".join(f'<li class="error">{e(str(b))}</li>' for b in broken)
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>shoplake dashboards"
                f"</title><style>{CSS} ul{{padding:16px 40px}} li{{margin:8px 0}}</style></head>"
                f"<body><header><h1>shoplake dashboards</h1></header><ul>{items}{bad}</ul>"
                "</body></html>")

    @server.route("/_health")
    def health() -> tuple[str, int]:
        try:
            pool.submit(reader.ping).result(timeout=10)
            return "ok", 200
        except Exception as exc:  # noqa: BLE001 - a probe answers, it does not raise
            return f"warehouse not answering: {exc}", 503

    return server


def serve(settings: Settings, dashboards: list[Dashboard], broken: list[DashboardFileError],
          host: str, port: int) -> None:
    """Serve until interrupted (werkzeug's threaded server: one thread per request)."""
    from werkzeug.serving import make_server

    server = create_server(settings, dashboards, broken)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    httpd = make_server(host, port, server, threaded=True)
    LOG.info("serving %d dashboard(s) on http://%s:%d/", len(dashboards), host, port)
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
