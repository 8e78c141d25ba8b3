#!/usr/bin/env bash
# transfer-features on brain-tumor-mri, official split, offline weights: EfficientNet-Lite0 (the default, pooled from
# its last 3 stages + calibrated RBF SVM) and MobileNetV2 for comparison. Target (issue 8): >= 98.0 % official /
# 96.5 % deduplicated accuracy, the whole run (embedding extraction included) under 10 minutes on the 2-core CPU.
# Each run starts with an empty cache so that its time includes the embeddings.
# Usage: [DATA=folder] bash bench/transfer_benchmark.sh [OUT] [BRAINMRI]
#   (defaults: ../shared/datasets/brain-tumor-mri, bench-output/, .venv/bin/brainmri)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output}
B=${2:-.venv/bin/brainmri}
DATA=${DATA:-../shared/datasets/brain-tumor-mri}
mkdir -p "$OUT"
run() {  # name, args...
  local name=$1; shift
  rm -rf "$OUT/cache-$name"
  /usr/bin/time -f "$name: %e s wall, %M KB peak" -a -o "$OUT/transfer-times.txt" \
    $B benchmark "$DATA" --split official --methods transfer-features --out "$OUT/$name" \
    --cache-dir "$OUT/cache-$name" --restart "$@" > "$OUT/$name.txt" 2> "$OUT/$name.log"
}
run transfer-lite0
run transfer-mobilenet_v2 --params transfer-features.backbone=mobilenet_v2
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
for name in ("transfer-lite0", "transfer-mobilenet_v2"):
    m = json.loads((out / name / "results.json").read_text())["methods"]["transfer-features"]
    print(f"{name}: official accuracy {m['metrics']['accuracy']['value']:.4f}, deduplicated "
          f"{m['metrics_deduplicated']['accuracy']['value']:.4f}, ECE {m['metrics']['ece']['value']:.4f}, "
          f"fit {m['timing_s']['fit']:.0f} s")
PY
cat "$OUT/transfer-times.txt"
