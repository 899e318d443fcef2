"""Dashboards: how fast the Sales Overview answers on the gold warehouse, and how big its file is.

  queries     every panel's query once, one after another (the sum) and as the live
              server runs them (PARALLEL_QUERIES at once), for All and for each payment
              method, on warm connections: median of `--repeat` rounds.
  filter      in Chromium, on the live page the stack serves: choose a payment method and
              time until every panel shows its numbers (the click to the redrawn page).
              Goal: under 500 ms at scale 1.
  build       `dashboard build` of the Sales Overview: seconds and the file's size.

Needs a running stack (`shoplake stack up`) whose gold holds the data to measure (for scale
1: `shoplake seed --scale 1 --reset`, `shoplake cdc reset --yes`, `shoplake run`); it
only reads.

    .venv/bin/python bench/dashboards.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import load_settings  # noqa: E402
from pipeline.dashboards import definitions_dir, public_url  # noqa: E402
from pipeline.dashboards.data import Reader  # noqa: E402
from pipeline.dashboards.live import PARALLEL_QUERIES  # noqa: E402
from pipeline.dashboards.spec import load_all  # noqa: E402
from pipeline.dashboards.static import build_one  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def say(text: str) -> None:
    print(f"[bench] {text}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    settings = load_settings()
    dashboards, _ = load_all(definitions_dir(settings))
    sales = next(d for d in dashboards if d.id == "sales_overview")
    reader = Reader(settings)
    methods, _ = reader.options(next(f for f in sales.filters if f.id == "payment_method"))
    with reader.cursor() as cur:
        cur.execute("SELECT count(*) FROM sales.fact_orders")
        orders = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM sales.fact_order_items")
        items = cur.fetchone()[0]
    say(f"gold: {orders:,} orders, {items:,} order items; payment methods: {', '.join(methods)}")

    pool = ThreadPoolExecutor(PARALLEL_QUERIES)
    for p in sales.panels:  # warm every pool thread's connection
        pool.submit(reader.run_panel, sales, p, {}).result()
    for label, values in [("All", {}), *((m, {"payment_method": m}) for m in methods)]:
        seq, par, slowest = [], [], {}
        for _ in range(args.repeat):
            began = time.monotonic()
            results = reader.run_all(sales, values)
            seq.append(time.monotonic() - began)
            began = time.monotonic()
            list(pool.map(lambda p, v=values: reader.run_panel(sales, p, v), sales.panels))
            par.append(time.monotonic() - began)
            for r in results:
                slowest[r.panel.id] = max(slowest.get(r.panel.id, 0.0), r.seconds)
        top = max(slowest, key=slowest.get)
        say(f"queries {label:>13}: sum {statistics.median(seq) * 1000:6.0f} ms, "
            f"{PARALLEL_QUERIES} at once {statistics.median(par) * 1000:6.0f} ms "
            f"(slowest panel {top} {slowest[top] * 1000:.0f} ms)")

    from playwright.sync_api import sync_playwright

    url = f"{public_url(settings)}/sales_overview/"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        began = time.monotonic()
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#body-kpis .kpi').length > 0 && "
                               "document.querySelectorAll('.js-plotly-plot .main-svg').length"
                               " >= 12")
        say(f"live page {url}: first full render {time.monotonic() - began:.2f} s")
        changes = []
        for method in [*methods, "All"] * max(1, args.repeat // 2):
            page.click("#filter-payment_method")
            option = page.locator(".dash-options-list-option-text", has_text=method).first
            option.wait_for()
            want = "(all)" if method == "All" else method
            began = time.monotonic()
            option.click()
            page.wait_for_function(
                "w => document.getElementById('shoplake-view').textContent === w && "
                "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 12", arg=want)
            changes.append(time.monotonic() - began)
        browser.close()
    changes.sort()
    say(f"filter change (click to redrawn page), {len(changes)} changes: median "
        f"{statistics.median(changes) * 1000:.0f} ms, max {changes[-1] * 1000:.0f} ms "
        f"(goal under 500 ms)")

    from plotly.offline import get_plotlyjs

    with tempfile.TemporaryDirectory() as out:
        built = build_one(sales, reader, Path(out), get_plotlyjs())
    say(f"build: {built.seconds:.1f} s, {built.bytes / 1e6:.2f} MB "
        f"({len(methods) + 1} filter views inlined)")
    reader.close()


if __name__ == "__main__":
    main()
