#!/usr/bin/env bash
# Longer, randomised bitstream fuzzing than CI runs (CI: ~2 minutes, fixed seed).
#
#   scripts/fuzz_long.sh                 # 2000 examples per fuzz target (about an hour on 2 busy cores)
#   scripts/fuzz_long.sh 20000           # more
#
# Every target must end in success (only where the damage leaves a valid stream) or a ProGVCError; any
# other exception, an example slower than 20 s (hypothesis deadline; pytest-timeout is off for long runs), or peak RSS growth over 256 MB fails the run, and
# hypothesis prints the minimal failing input with a @reproduce_failure line.
# Iterations and outcomes per target are written to out/reliability/fuzz.json (see docs/reliability.md).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2000}"
export PROGVC_FUZZ_EXAMPLES="$N" PROGVC_RELIABILITY_OUT="${PROGVC_RELIABILITY_OUT:-$PWD/out/reliability}"
mkdir -p "$PROGVC_RELIABILITY_OUT"
exec .venv/bin/python -m pytest tests/test_reliability_fuzz.py -q -p no:cacheprovider -p no:timeout \
  tests/test_reliability_security.py::test_fuzz_keys_resolve_inside_root_or_are_refused
