#!/usr/bin/env bash
# The end-to-end demo on a fresh Debian machine: install, start the stack, seed the source,
# replicate it to bronze (full load), simulate live traffic, replicate the changes, show
# where the CDC stands, stop. It grows as the pipeline lands (jobs, warehouse, dashboards).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SL=.venv/bin/shoplake
trap '$SL stack down' EXIT   # leave no process behind, even when a step fails
$SL stack up
$SL stack status
$SL seed --scale 0.1 --seed 42 --reset    # 1k customers, 10k orders over 13 months
$SL cdc reset --yes                       # a re-seeded source gets a fresh full load
$SL cdc --once                            # full load into s3://shoplake-bronze/shop/...
$SL simulate --rate 25 --duration 10      # the Lambda: inserts, updates, deletes
$SL cdc --once                            # the changes, as DMS CDC files
$SL cdc status
