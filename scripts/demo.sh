#!/usr/bin/env bash
# The main job on embedded defaults, end to end on a fresh clone:
#   set up .venv -> start SeaweedFS on 127.0.0.1 (or use a local folder with --local) -> compress the
#   sample clips in samples/ (local Ray, ephemeral Prefect, the default latent model at --effort fast) ->
#   print the savings table -> re-serve one video at K < N scales to MP4 and print its path.
# Usage: bash scripts/demo.sh [--local]        Outputs land in out/demo/<UTC time>/.
# PROGVC_WEIGHTS=<model id or weights file> compresses with that model instead (e.g. models/progvc.pt).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=s3
for arg in "$@"; do
  case "$arg" in
    --local) MODE=local ;;
    -h|--help) sed -n 2,6p "$0"; exit 0 ;;
    *) echo "demo: unknown option $arg (use --local)" >&2; exit 2 ;;
  esac
done

bash scripts/setup.sh
PY="$PWD/.venv/bin/python"
export RAY_USAGE_STATS_ENABLED=0 PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_LOGGING_LEVEL=WARNING
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RUN="$PWD/out/demo/$STAMP"
mkdir -p "$RUN"
export PREFECT_HOME="${PREFECT_HOME:-$RUN/prefect}"   # one Prefect database per demo run

# The default model (latent-v1) at effort "fast": the default effort ("medium") fits each GOP longer and
# would take the demo past 5 minutes on a 2-core machine. Another model: PROGVC_WEIGHTS (its family's defaults).
if [ -n "${PROGVC_WEIGHTS:-}" ]; then
  ENCODE_ARGS=(--weights "$PROGVC_WEIGHTS")
  RESERVE_ARGS=(--weights "$PROGVC_WEIGHTS")   # e.g. random:tiny:<seed>: its model id is not in the registry
else
  ENCODE_ARGS=(--effort fast)
  RESERVE_ARGS=()                              # the model the archived header names
fi

SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$SERVER_PID" 2>/dev/null || return 0; sleep 0.25; done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true   # weed did not stop within 10 s
  fi
}
trap cleanup EXIT

if [ "$MODE" = s3 ]; then
  echo "demo: starting SeaweedFS (S3) on 127.0.0.1 ..."
  # SeaweedServer (pipeline/local_s3.py) picks free loopback ports and waits until S3 answers; the server
  # runs in its own session and is stopped by the EXIT trap above.
  eval "$("$PY" - "$RUN/seaweed" <<'EOF'
import shlex, sys
from pipeline.local_s3 import SeaweedServer
s = SeaweedServer(sys.argv[1] + "/data")
s.start(detach=True)  # outlives this launcher; the EXIT trap stops it
s.make_bucket("archive")
for k, v in (("SERVER_PID", s.proc.pid), ("AWS_ENDPOINT_URL", s.endpoint), ("AWS_ACCESS_KEY_ID", s.access_key),
             ("AWS_SECRET_ACCESS_KEY", s.secret_key), ("AWS_DEFAULT_REGION", "us-east-1")):
    print(f"{k}={shlex.quote(str(v))}")
EOF
)"
  export AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION
  DEST="s3://archive/demo"
  echo "demo: S3 endpoint $AWS_ENDPOINT_URL, archive $DEST"
else
  DEST="$RUN/archive"
  echo "demo: archive in local folder $DEST"
fi

progvc() { "$PY" -m flows "$@"; }

echo "demo: compressing samples/ ..."
progvc compress samples --dest "$DEST" --job "demo-$STAMP" "${ENCODE_ARGS[@]}"

echo
progvc savings "$DEST" --by video --csv "$RUN/savings.csv" --plot "$RUN/savings.png"

read -r VID K N < <("$PY" - "$DEST" <<'EOF'
import sys
import pyarrow.compute as pc
from pipeline import manifest
from pipeline.store import open_store
rows = manifest.read_manifest(open_store(sys.argv[1]))
vid = sorted(set(rows.column("video_id").to_pylist()))[0]
n = pc.max(rows.filter(pc.equal(rows.column("video_id"), vid)).column("scale")).as_py()
print(vid, max(1, n // 2), n)
EOF
)
OUT="$RUN/reserved_${VID}_K${K}.mp4"
echo
echo "demo: re-serving video $VID at $K of $N scales ..."
progvc reserve "$DEST" "$VID" --scales "$K" -o "$OUT" ${RESERVE_ARGS[@]+"${RESERVE_ARGS[@]}"}
echo
echo "demo: done. Playable MP4: $OUT"
