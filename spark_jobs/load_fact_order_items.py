"""Glue job `load_fact_order_items`: silver -> staging (COPY)
-> `CALL sales.sp_load_fact_order_items()` -> fact_order_items.

    spark-submit spark_jobs/load_fact_order_items.py --JOB_NAME load_fact_order_items
    shoplake job run load_fact_order_items
"""

from __future__ import annotations

from typing import Any

from pipeline.glue.jobs import JobContext, submit_main
from spark_jobs.gold import load


def run(ctx: JobContext) -> dict[str, Any]:
    return load(ctx, ["stg_orders", "stg_order_items"], "sp_load_fact_order_items")


def main() -> int:
    return submit_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
