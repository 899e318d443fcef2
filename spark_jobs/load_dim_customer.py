"""Glue job `load_dim_customer`: silver -> staging (COPY) -> `CALL sales.sp_merge_dim_customer()`
-> dim_customer (SCD type 2).

    spark-submit spark_jobs/load_dim_customer.py --JOB_NAME load_dim_customer
    shoplake job run load_dim_customer
"""

from __future__ import annotations

from typing import Any

from pipeline.glue.jobs import JobContext, submit_main
from spark_jobs.gold import load


def run(ctx: JobContext) -> dict[str, Any]:
    return load(ctx, ["stg_customers"], "sp_merge_dim_customer")


def main() -> int:
    return submit_main(run)


if __name__ == "__main__":
    raise SystemExit(main())
