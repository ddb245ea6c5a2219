#!/usr/bin/env bash
# Regenerate docs/results/ (summary.md, results.json, rd_<metric>.png): rate-distortion of ProGVC with the
# default model (latent-v1: a sweep of fidelities 30,38,46,54,62,70 at the default effort, medium, one encode per clip and
# fidelity decoded at every K = 1..7) vs x264/x265 (medium, slow) and SVT-AV1 on the dev clips, first 16 frames
# each, GOP 16. Curve "ProGVC" = all 7 layers over the fidelities; summary.md also tables the layer ladder
# (bpp and PSNR-Y per K) of one fidelity. Keyframe mode is skipped (the latent family has none yet).
# Encodes are cached by content hash in ~/.cache/progvc-eval ($PROGVC_EVAL_CACHE; keys include fidelity,
# effort and a hash of the codec's sources), so a re-run only computes what changed.
# Extra arguments go to `progvc eval`: e.g. --effort fast|slow, --fidelities 20,40,60,80, --no-cache; the old
# VQ model: --weights models/progvc.pt --plain-predict none (plain and keyframe mode, every K).
# Timing of the last regeneration: the 'wall time' line of docs/results/summary.md. Effort medium fits two
# context models per GOP (600 steps each): on foreman ~24 % fewer bits than effort fast at ~2x its encode time.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV="${PROGVC_DEV_CLIPS:-../shared/data/clips/dev}"
PY="${PYTHON:-.venv/bin/python}"
exec "$PY" -m flows.cli eval "$DEV" --out docs/results --frames 16 --gop 16 --effort medium \
  --regenerate "bench/eval_dev.sh" "$@"
