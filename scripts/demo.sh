#!/usr/bin/env bash
# The end-to-end demo on a fresh Debian machine: install, start the stack, show its health,
# stop it. It grows as the pipeline lands (seed, CDC, jobs, warehouse, dashboards).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SL=.venv/bin/shoplake
trap '$SL stack down' EXIT   # leave no process behind, even when a step fails
$SL stack up
$SL stack status
$SL provision    # idempotent: a second run reports every resource unchanged
