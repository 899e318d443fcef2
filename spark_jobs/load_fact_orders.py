"""Glue job `load_fact_orders`: silver -> staging (COPY) -> `CALL sales.sp_load_fact_orders()`
-> fact_orders.

    spark-submit spark_jobs/load_fact_orders.py --JOB_NAME load_fact_orders
    shoplake job run load_fact_orders
"""

from __future__ import annotations

from typing import Any

from pipeline.glue.jobs import JobContext, submit_main
from spark_jobs.gold import load


def run(ctx: JobContext) -> dict[str, Any]:
    return load(ctx, ["stg_orders", "stg_order_items"], "sp_load_fact_orders")


def main() -> int:
    return submit_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
