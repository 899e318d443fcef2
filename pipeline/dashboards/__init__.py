"""Dashboards as code on the gold warehouse: the QuickSight stand-in.

dashboards/*.yaml (one file per dashboard: title, filters, panels of SQL plus a chart)
read by `spec`; `data` runs the panels' queries as the warehouse's read-only role;
`figures` turns rows into Plotly figures and KPI tiles; `static` writes self-contained
HTML files, `live` serves the same dashboards with Dash.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Settings

PROJECT_DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"
"""The project's dashboard files (dashboards/ at the repository root)."""


def definitions_dir(settings: Settings) -> Path:
    return Path(settings.dashboards.definitions_dir or PROJECT_DASHBOARDS)


def out_dir(settings: Settings) -> Path:
    return Path(settings.dashboards.out_dir or settings.state_dir / "dashboards")


def public_url(settings: Settings) -> str:
    """Where a browser on this machine finds the live dashboards."""
    d = settings.dashboards
    if d.public_url:
        return d.public_url.rstrip("/")
    host = "127.0.0.1" if d.host in ("0.0.0.0", "::", "") else d.host
    return f"http://{host}:{d.port}"
