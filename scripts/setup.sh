#!/usr/bin/env bash
# Creates .venv with everything the project needs. Idempotent: a second run only checks.
# CPU torch is installed first and pinned, so pip never pulls the multi-GB CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.progvc-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: .venv up to date"
  exit 0
fi
# pip's notes about unused local index folders of this machine's pip.conf are noise: filter them out.
pip_install() { .venv/bin/python -m pip install -q "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }
pip_install --upgrade pip
pip_install torch==2.13.0
pip_install -c constraints.txt -e ".[dev]"
echo "$want" > "$stamp"
echo "setup: .venv ready"
