#!/usr/bin/env bash
# ayadi-cnn on brain-tumor-mri, official split, with the recipe of its defaults (3 seeds), then one CUDA run
# when a GPU is visible. Targets (issue 7): >= 99.0 % official / 98.5 % deduplicated accuracy, ECE beside them,
# under 30 minutes and 4 GB peak memory per run on the 2-core CPU machine.
# Usage: [SEEDS="0 1 2"] bash bench/deep_benchmark.sh [OUT] [EPOCHS]   (defaults: bench-output/, the method's
# default epochs). Each run's name carries its epochs when EPOCHS is given.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output}
EPOCHS=${2:-}
SEEDS=${SEEDS:-0 1 2}
TAG=${EPOCHS:+-${EPOCHS}ep}
DATA=../shared/datasets/brain-tumor-mri
B=.venv/bin/brainmri
PARAMS=${EPOCHS:+--params ayadi-cnn.epochs=$EPOCHS}
mkdir -p "$OUT"
run() {  # name, args...
  local name=$1; shift
  /usr/bin/time -f "$name: %e s wall, %M KB peak" -a -o "$OUT/deep-times.txt" \
    $B benchmark "$DATA" --split official --methods ayadi-cnn $PARAMS --out "$OUT/$name" \
    --cache-dir "$OUT/cache-deep" --restart "$@" > "$OUT/$name.txt" 2> "$OUT/$name.log"
}
for seed in $SEEDS; do
  run "ayadi-official$TAG-seed$seed" --seed "$seed" --device cpu
done
if .venv/bin/python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  run "ayadi-official$TAG-cuda" --seed 0 --device cuda
fi
.venv/bin/python - "$OUT" "$TAG" $SEEDS <<'PY'
import json, pathlib, statistics, sys
out, tag = pathlib.Path(sys.argv[1]), sys.argv[2]
rows = []
for seed in sys.argv[3:]:
    m = json.loads((out / f"ayadi-official{tag}-seed{seed}" / "results.json").read_text())["methods"]["ayadi-cnn"]
    rows.append((m["metrics"]["accuracy"]["value"], m["metrics_deduplicated"]["accuracy"]["value"],
                 m["metrics"]["ece"]["value"], m["timing_s"]["fit"]))
for name, k in (("official accuracy", 0), ("deduplicated accuracy", 1), ("ECE", 2), ("fit s", 3)):
    v = [r[k] for r in rows]
    sd = f", sd {statistics.stdev(v):.4f}" if len(v) > 1 else ""
    print(f"{name}: mean {statistics.mean(v):.4f}{sd}, runs {', '.join(f'{x:.4f}' for x in v)}")
PY
cat "$OUT/deep-times.txt"
