"""Glue jobs `shoplake_quality_and_reconcile`, `shoplake_check_arrivals` and
`shoplake_write_run_report`: the steps that need no Spark, as `shoplake deploy render` puts
them on AWS (Glue 5.0 jobs, not Python shell, which stops at Python 3.9 where the shoplake
wheel needs 3.11). Locally the workers run the same functions (pipeline.orchestration.steps).

    python spark_jobs/python_shell.py --JOB_NAME shoplake_check_arrivals --run_id ID
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import load_settings
    from pipeline.glue.jobs import parse_glue_args
    from pipeline.orchestration.steps import PYTHON_JOBS
    from pipeline.progress import SilentProgress

    args = parse_glue_args(list(sys.argv[1:] if argv is None else argv))
    name = args.pop("JOB_NAME", "")
    if name not in PYTHON_JOBS:
        print(f"unknown Python shell job `{name}`; jobs: {', '.join(PYTHON_JOBS)}",
              file=sys.stderr)
        return 2
    print(json.dumps(PYTHON_JOBS[name](load_settings(), args, SilentProgress()), default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
