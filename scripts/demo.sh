#!/usr/bin/env bash
# The end-to-end demo on a fresh Debian machine: install, start the stack, seed the source,
# replicate it to bronze (DMS), crawl it (Glue crawler), run the Glue jobs into silver and
# the warehouse (Redshift), reconcile gold with the source; then live traffic and an
# incremental run, reconciled again; last, the dashboards (QuickSight): built into HTML files
# and served live. The stack keeps running at the end so the live URL answers; a failing
# step stops everything. Stop it with `.venv/bin/shoplake stack down`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SL=.venv/bin/shoplake
# Leave no process behind when a step fails; on success the dashboards stay up.
trap 'rc=$?; if [ "$rc" -ne 0 ]; then $SL stack down; fi; exit "$rc"' EXIT
$SL stack up
$SL stack status
$SL seed --scale 0.1 --seed 42 --reset    # 1k customers, 10k orders over 13 months
$SL cdc reset --yes                       # a re-seeded source gets a fresh full load
$SL warehouse init --reset                # schema `sales`: staging, SCD2 dims, facts, mart
$SL cdc --once                            # full load into s3://shoplake-bronze/shop/...
$SL crawl                                 # bronze schemas into the catalog
$SL job run all --reset-bookmark          # bronze -> silver -> staging -> gold
$SL reconcile                             # gold equals the source, day by day
$SL simulate --rate 25 --duration 10      # the Lambda: inserts, updates, deletes
$SL cdc status                            # the changes wait in the binlog: lag
$SL run                                   # incremental run: sync, crawl, jobs, reconcile
$SL cdc status
$SL runs -n 3                             # the runs so far: status, trigger, duration
$SL dashboard build                       # Sales Overview, Pipeline Health: one HTML file each
echo "The stack keeps running for the live dashboards; stop it with: $SL stack down"
