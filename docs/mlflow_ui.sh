#!/usr/bin/env bash
# Checks in a real browser that the MLflow UI opens bench's experiments in its
# model-training view, and saves what it shows to docs/mlflow_ui.png.
#
# Usage (from the repository root, inside the project's virtualenv; needs Debian's
# `chromium` package):   bash docs/mlflow_ui.sh [out.png]
#
# It records two short runs in a private store under a temporary folder, serves that store
# with `mlflow server` on 127.0.0.1 only, for at most two minutes, and takes a headless
# screenshot of the experiment's page at the address every run prints at its end. Nothing
# outside the temporary folder is written except the screenshot. The check fails when the
# experiment lacks its kind tag (mlflow.experimentKind = custom_model_development) or when
# the page opens in the GenAI view. MLflow 3.17's UI picks the view from a switch that
# defaults to GenAI, so the address carries workflowType=machine_learning.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/docs/mlflow_ui.png}
work=$(mktemp -d)
trap 'kill "${server:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
store="sqlite:///$work/mlflow.db"
port=${MLFLOW_UI_PORT:-5057}

cd "$work"
for seed in 1 2; do
  python -m bench dataset=synthetic model=gru trainer=smoke "seed=$seed" \
    "tracking.uri=$store" hydra.run.dir="$work/outputs/$seed" > /dev/null
done
exp_id=$(python - "$store" <<'EOF'
import sys
from mlflow.tracking import MlflowClient

exp = MlflowClient(sys.argv[1]).get_experiment_by_name("synthetic")
kind = exp.tags.get("mlflow.experimentKind")
assert kind == "custom_model_development", f"experiment kind is {kind!r}"
print(exp.experiment_id)
EOF
)

timeout 120 mlflow server --backend-store-uri "$store" --host 127.0.0.1 --port "$port" \
  --workers 1 > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 60); do
  curl -sf "http://127.0.0.1:$port/health" > /dev/null && break
  sleep 1
done

# the address the end of every run prints (bench.tracking.ui_url)
url=$(python -c "from bench.tracking import ui_url; print(ui_url('http://127.0.0.1:$port', '$exp_id'))")
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/chromium" --window-size=1400,900 --virtual-time-budget=20000 \
  --screenshot="$out" "$url" 2> "$work/chromium.log"
# the same page as text: the training view lists runs; the GenAI view offers traces
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/chromium" --window-size=1400,900 --virtual-time-budget=20000 \
  --dump-dom "$url" 2>> "$work/chromium.log" > "$work/page.html"
python - "$work/page.html" <<'EOF'
import sys

page = open(sys.argv[1], encoding="utf-8").read()
assert "synthetic-gru-single-seed1" in page, "the runs table did not load"
# the training view's side bar offers the model registry; the GenAI one, judges and
# evaluation runs
assert "Model registry" in page, "the page did not open in the model-training view"
assert "Judges" not in page and "Evaluation runs" not in page, "the GenAI view opened"
EOF
echo "MLflow UI shows the experiment in its training view; screenshot: $out"
