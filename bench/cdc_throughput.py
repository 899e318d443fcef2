"""CDC throughput: insert N rows, then time `shoplake cdc --once` over them.

Prints, for the same binlog in the same run:
  decode-only   row events/s that pymysqlreplication decodes (no batching, no S3)
  cdc           row events/s decoded, batched, encoded and written to S3 bronze by the
                real `shoplake cdc --once` process, plus that process's peak memory

Needs a running stack (`shoplake stack up`). It creates and drops `shop.bench_rows`, and
resets the CDC before and after (bronze is rebuilt by the next `shoplake cdc`).

    .venv/bin/python bench/cdc_throughput.py --rows 200000 [--format csv]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import WriteRowsEvent

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import cdc  # noqa: E402
from pipeline.aws.secrets import cdc_credentials, mysql_credentials  # noqa: E402
from pipeline.cdc.source import current_position  # noqa: E402
from pipeline.config import load_settings  # noqa: E402

TARGET_ROWS_PER_S = 20_000
TARGET_MB = 300

DDL = """CREATE TABLE bench_rows (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    customer_id INT NOT NULL,
    amount DECIMAL(12,2) NOT NULL,
    status VARCHAR(16) NOT NULL,
    note VARCHAR(64) NULL,
    created_at DATETIME(6) NOT NULL
) DEFAULT CHARSET=utf8mb4"""


def insert_rows(conn: pymysql.connections.Connection, n: int) -> float:
    rng = random.Random(1)
    started = time.monotonic()
    with conn.cursor() as cur:
        batch = []
        for i in range(n):
            batch.append((rng.randint(1, 10_000), Decimal(rng.randint(100, 99_999)) / 100,
                          rng.choice(("placed", "paid", "shipped")),
                          None if i % 7 == 0 else f"note {i}", "2026-11-26 10:00:00.123456"))
            if len(batch) == 5000:
                cur.executemany("INSERT INTO bench_rows (customer_id, amount, status, note, "
                                "created_at) VALUES (%s,%s,%s,%s,%s)", batch)
                conn.commit()
                batch.clear()
        if batch:
            cur.executemany("INSERT INTO bench_rows (customer_id, amount, status, note, "
                            "created_at) VALUES (%s,%s,%s,%s,%s)", batch)
            conn.commit()
    return time.monotonic() - started


def decode_only(settings, log_file: str, log_pos: int) -> tuple[int, float]:  # noqa: ANN001
    c = cdc_credentials(settings)
    reader = BinLogStreamReader(
        connection_settings={"host": c.host, "port": c.port, "user": c.username,
                             "password": c.password.reveal()},
        server_id=settings.cdc.server_id + 1, resume_stream=True, blocking=False,
        log_file=log_file, log_pos=log_pos, only_events=[WriteRowsEvent], is_mariadb=False,
        enable_logging=False)
    rows = 0
    started = time.monotonic()
    for ev in reader:
        if ev.table == "bench_rows":
            rows += len(ev.rows)
    reader.close()
    return rows, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    args = parser.parse_args()
    settings = load_settings()
    app = mysql_credentials(settings)
    conn = pymysql.connect(host=app.host, port=app.port, user=app.username,
                           password=app.password.reveal(), database=app.dbname)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_rows")
        cur.execute(DDL)
    env = {**os.environ, "SHOPLAKE_CDC_DATA_FORMAT": args.format}
    cli = [sys.executable, "-m", "pipeline.cli.main", "-q", "cdc", "--once"]
    try:
        cdc.reset(settings)
        subprocess.run(cli, env=env, check=True, capture_output=True)  # full load, checkpoint
        repl = cdc_credentials(settings)
        with pymysql.connect(host=repl.host, port=repl.port, user=repl.username,
                             password=repl.password.reveal()) as probe:
            start = current_position(probe)
        took = insert_rows(conn, args.rows)
        print(f"inserted {args.rows} rows in {took:.1f}s ({args.rows / took:,.0f} rows/s)")

        decoded, decode_s = decode_only(settings, start.file, start.pos)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        began = time.monotonic()
        done = subprocess.run(cli, env=env, check=True, capture_output=True, text=True)
        cdc_s = time.monotonic() - began
        peak_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
        match = re.search(r"cdc: (\d+) changes", done.stdout)
        changes = int(match.group(1)) if match else -1
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS bench_rows")
        conn.close()
        # The CDC refuses to replay a DROP of a replicated table: start it afresh instead.
        cdc.reset(settings)

    print(f"decode-only : {decoded:>9,} row events in {decode_s:6.2f}s = "
          f"{decoded / decode_s:>9,.0f} rows/s")
    print(f"cdc ({args.format:<7}): {changes:>9,} row events in {cdc_s:6.2f}s = "
          f"{changes / cdc_s:>9,.0f} rows/s  (whole `shoplake cdc --once` process, "
          f"peak RSS {peak_mb:.0f} MB)")
    ok = changes == args.rows and changes / cdc_s >= TARGET_ROWS_PER_S and peak_mb < TARGET_MB
    print(f"target: >= {TARGET_ROWS_PER_S:,} rows/s and < {TARGET_MB} MB: "
          f"{'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
