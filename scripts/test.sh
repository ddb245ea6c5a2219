#!/usr/bin/env bash
# Sets up .venv (idempotent) and runs lint + the default test suite (slow training/bench tests excluded).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export RAY_USAGE_STATS_ENABLED=0 PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_HOME="${PREFECT_HOME:-$(mktemp -d -t progvc-prefect-XXXXXX)}"
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
