#!/usr/bin/env bash
# Regenerate docs/results/ (summary.md, results.json, rd_<metric>.png): rate-distortion of ProGVC
# (shipped weights models/progvc.pt, every scale count K) vs x264/x265 (medium, slow) and SVT-AV1 on
# the dev clips, first 16 frames each, GOP 16. Encodes are cached by content hash in
# ~/.cache/progvc-eval ($PROGVC_EVAL_CACHE), so a re-run only computes what changed.
# Both ProGVC modes (plain, keyframe) are evaluated; plain mode is decoded twice, with the context model's
# prediction of the untransmitted scales (argmax, curve "ProGVC") and without it ("ProGVC (none)").
# Extra arguments go to `progvc eval` (e.g. --weights runs/x.pt, --no-cache).
# Measured on the shared 2-core dev machine (load average 7-10 from other jobs), cold cache:
#   references only (177 points): 223-226 s; with the shipped models/progvc.pt (93d29d4227e6bce7,
#   10 scales, every K: 50 ProGVC + 193 reference points): 1068 s (17.8 min). Pass --frames 8 to go faster.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV="${PROGVC_DEV_CLIPS:-../shared/data/clips/dev}"
PY="${PYTHON:-.venv/bin/python}"
exec "$PY" -m flows.cli eval "$DEV" --out docs/results --frames 16 --gop 16 --plain-predict none \
  --regenerate "bench/eval_dev.sh" "$@"
