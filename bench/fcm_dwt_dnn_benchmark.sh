#!/usr/bin/env bash
# fcm-dwt-dnn (Mohsen et al. 2018) with its own protocol, 7-fold cross-validation (grouped by duplicate clusters),
# on the training part of brain-tumor-mri; the metrics the study reported (accuracy, sensitivity, specificity,
# precision, F-measure, AUC; 96.97 % accuracy on its own 66 images) are printed at the end.
# Usage: bash bench/fcm_dwt_dnn_benchmark.sh [OUT]   (default bench-output/)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output}
DATA=../shared/datasets/brain-tumor-mri/Training
mkdir -p "$OUT"
/usr/bin/time -f "fcm-dwt-dnn-cv7: %e s wall, %M KB peak" -a -o "$OUT/deep-times.txt" \
  .venv/bin/brainmri benchmark "$DATA" --methods fcm-dwt-dnn --seed 0 --out "$OUT/fcm-dwt-dnn-cv7" \
  --cache-dir "$OUT/cache-fcm" --restart > "$OUT/fcm-dwt-dnn-cv7.txt" 2> "$OUT/fcm-dwt-dnn-cv7.log"
.venv/bin/python - "$OUT/fcm-dwt-dnn-cv7/results.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["methods"]["fcm-dwt-dnn"]
for section in ("metrics", "metrics_deduplicated"):
    if section in m:
        print(section, ", ".join(f"{k} {m[section][k]['value']:.4f}" for k in
                                 ("accuracy", "sensitivity", "specificity", "precision", "macro_f1", "auc", "ece")))
PY
tail -1 "$OUT/deep-times.txt"
