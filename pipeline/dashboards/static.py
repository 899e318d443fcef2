"""`shoplake dashboard build`: one self-contained HTML file per dashboard.

plotly.js is inlined once per file, the figures travel as JSON inside it, and nothing is
fetched when it is opened from disk: no CDN, no font, no map tiles. The page's select
filters work offline: every combination of their values (`All` included) is computed at
build time and the page swaps between them. A date range is fixed at build time
(`--from`/`--to`, all dates by default); the live server filters dates on demand.
"""

from __future__ import annotations

import html
import itertools
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.dashboards.data import Reader
from pipeline.dashboards.figures import CONFIG, render
from pipeline.dashboards.spec import Dashboard
from pipeline.progress import Progress, SilentProgress

LOG = logging.getLogger(__name__)

MAX_COMBINATIONS = 64
"""Select-filter combinations a static page may carry (each is every panel's data)."""

CSS = """
*{box-sizing:border-box} body{margin:0;background:#f4f5f7;color:#2b2f36;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header{background:#1f2a3a;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px;font-weight:600} header .meta{font-size:12px;opacity:.75}
.filters{display:flex;gap:20px;flex-wrap:wrap;align-items:center;padding:12px 24px;
background:#fff;border-bottom:1px solid #dde1e6;font-size:13px}
.filters label{display:flex;gap:8px;align-items:center}
.filters select,.filters input{font-size:13px;padding:3px 6px}
.filters .fixed{color:#5b6675}
.grid{display:grid;grid-template-columns:repeat(12,1fr);gap:16px;padding:16px 24px}
.panel{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:12px 14px;
min-width:0} .panel h2{margin:0 0 8px;font-size:14px;font-weight:600}
.panel .note{font-size:11px;color:#5b6675;margin-top:6px}
.kpis{display:flex;gap:12px;flex-wrap:wrap}
.kpi{flex:1 1 150px;border-left:4px solid #3b6fb6;padding:6px 12px;background:#f8f9fb}
.kpi .label{font-size:12px;color:#5b6675} .kpi .value{font-size:26px;font-weight:600}
.error{border:1px solid #c9483b;background:#fbeceb;color:#8c2a20;border-radius:4px;
padding:10px 12px;font-size:13px;white-space:pre-wrap}
""" + "".join(f".w{n}{{grid-column:span {n}}}" for n in range(1, 13)) + \
    "@media (max-width:900px){.panel{grid-column:span 12}}"
"""The pages' one stylesheet (the live server uses it too)."""


@dataclass
class Built:
    dashboard: Dashboard
    path: Path
    bytes: int
    problems: list[str] = field(default_factory=list)
    """`file, panel: message` for every panel shown as an error box."""
    seconds: float = 0.0


def combinations(dashboard: Dashboard, reader: Reader) -> tuple[list[dict[str, Any]],
                                                                 dict[str, list[str]],
                                                                 list[str]]:
    """Every combination of the select filters' values (None = All), their options, and
    the filters whose options could not be read."""
    options: dict[str, list[str]] = {}
    errors = []
    for f in dashboard.filters:
        if f.type == "select":
            options[f.id], err = reader.options(f)
            if err:
                errors.append(f"{dashboard.path}, {err}")
    ids = list(options)
    combos = [dict(zip(ids, c)) for c in itertools.product(*[[None, *options[i]] for i in ids])]
    if len(combos) > MAX_COMBINATIONS:
        raise ValueError(f"{dashboard.path}: its select filters have {len(combos)} "
                         f"combinations, more than the {MAX_COMBINATIONS} a static page "
                         "carries; use `shoplake dashboard serve` for it")
    return combos, options, errors


ALL = "all"
"""The `All` choice's token; a value's token is `v<its index>`, so no value (an empty
string, `all`, a `|`) can be mistaken for another."""


def key_of(dashboard: Dashboard, values: dict[str, Any], options: dict[str, list[str]]
           ) -> str:
    """The page's name for one combination: the select filters' tokens joined by `|`."""
    return "|".join(ALL if values.get(f.id) is None else f"v{options[f.id].index(values[f.id])}"
                    for f in dashboard.filters if f.type == "select")


def _json_for_script(data: Any) -> str:
    # Inside <script>, `</script` ends the element and `<!--` changes how the rest is read:
    # no `<`, `>` or `&` may appear raw. JSON's \u escapes keep the values as they were.
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def build_one(dashboard: Dashboard, reader: Reader, out_dir: Path, plotly_js: str,
              date_range: tuple[str | None, str | None] = (None, None)) -> Built:
    began = datetime.now(UTC)
    combos, options, problems = combinations(dashboard, reader)
    fixed = {f.id: date_range for f in dashboard.filters if f.type == "date_range"}
    views: dict[str, dict[str, Any]] = {}
    for combo in combos:
        results = reader.run_all(dashboard, {**combo, **fixed})
        views[key_of(dashboard, combo, options)] = {r.panel.id: render(r) for r in results}
    first = views[key_of(dashboard, combos[0], options)]
    problems += [f"{dashboard.path}, panel `{pid}`: {v['error']}" for pid, v in first.items()
                 if v["kind"] == "error"]
    page = render_page(dashboard, options, views, plotly_js, date_range, began)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dashboard.id}.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return Built(dashboard, path, path.stat().st_size, problems,
                 (datetime.now(UTC) - began).total_seconds())


def render_page(dashboard: Dashboard, options: dict[str, list[str]],
                views: dict[str, dict[str, Any]], plotly_js: str,
                date_range: tuple[str | None, str | None], built_at: datetime) -> str:
    e = html.escape
    controls = []
    for f in dashboard.filters:
        if f.type == "select":
            opts = "".join(f'<option value="v{i}">{e(o)}</option>'
                           for i, o in enumerate(options[f.id]))
            controls.append(f'<label>{e(f.label)} <select id="filter-{f.id}" '
                            f'data-filter="{f.id}"><option value="{ALL}">All</option>{opts}'
                            "</select></label>")
        else:
            lo, hi = date_range
            shown = f"{lo or 'first day'} to {hi or 'last day'}" if lo or hi else "all dates"
            controls.append(f'<span class="fixed" id="filter-{f.id}">{e(f.label)}: {e(shown)} '
                            "(fixed in this file; `shoplake dashboard serve` filters dates)"
                            "</span>")
    panels = []
    for p in dashboard.panels:
        note = f'<div class="note">{e(p.note)}</div>' if p.note else ""
        panels.append(f'<section class="panel w{p.width}" id="panel-{p.id}" '
                      f'data-kind="{e(p.type)}"><h2>{e(p.title)}</h2>'
                      f'<div class="body" id="body-{p.id}"></div>{note}</section>')
    data = {"views": views, "config": CONFIG,
            "selects": [f.id for f in dashboard.filters if f.type == "select"]}
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(dashboard.title)} · shoplake</title>
<style>{CSS}</style>
<script>{plotly_js}</script>
</head><body>
<header><h1>{e(dashboard.title)}</h1><div class="meta">{e(dashboard.description) + ' · '
 if dashboard.description else ''}built {built_at.strftime('%Y-%m-%d %H:%M:%S')} UTC from the
 warehouse (schema sales)</div>
</header>
{'<div class="filters">' + ''.join(controls) + '</div>' if controls else ''}
<main class="grid">{''.join(panels)}</main>
<script type="application/json" id="shoplake-data">{_json_for_script(data)}</script>
<script>
(function () {{
  var data = JSON.parse(document.getElementById("shoplake-data").textContent);
  function esc(s) {{ var d = document.createElement("div"); d.textContent = s;
                     return d.innerHTML; }}
  function show() {{
    var key = data.selects.map(function (id) {{
      return document.getElementById("filter-" + id).value; }}).join("|");
    var view = data.views[key];
    Object.keys(view).forEach(function (pid) {{
      var body = document.getElementById("body-" + pid), v = view[pid];
      if (v.kind === "figure") {{
        var div = body.querySelector(".chart");
        if (!div) {{ body.innerHTML = '<div class="chart" id="chart-' + pid + '"></div>';
                     div = body.querySelector(".chart"); }}
        Plotly.react(div, v.figure.data, v.figure.layout, data.config);
      }} else if (v.kind === "kpi") {{
        body.innerHTML = '<div class="kpis">' + v.tiles.map(function (t) {{
          return '<div class="kpi" data-kpi="' + esc(t.id) + '"><div class="label">' +
                 esc(t.label) + '</div><div class="value">' + esc(t.value) +
                 '</div></div>'; }}).join("") + '</div>';
      }} else {{
        body.innerHTML = '<div class="error">' + esc(v.error) + '</div>';
      }}
    }});
    document.body.setAttribute("data-view", key);
  }}
  data.selects.forEach(function (id) {{
    document.getElementById("filter-" + id).addEventListener("change", show); }});
  show();
}})();
</script>
</body></html>
"""


def build(dashboards: list[Dashboard], reader: Reader, out_dir: Path,
          date_range: tuple[str | None, str | None] = (None, None),
          progress: Progress | None = None) -> list[Built]:
    from plotly.offline import get_plotlyjs

    progress = progress or SilentProgress()
    plotly_js = get_plotlyjs()
    built = []
    for d in dashboards:
        progress.start(f"dashboard:{d.id}", f"building {d.title}")
        b = build_one(d, reader, out_dir, plotly_js, date_range)
        progress.finish(f"dashboard:{d.id}", ok=not b.problems,
                        message=f"{b.path} ({b.bytes / 1e6:.1f} MB"
                                + (f", {len(b.problems)} broken panel(s))" if b.problems
                                   else ")"))
        built.append(b)
    return built
