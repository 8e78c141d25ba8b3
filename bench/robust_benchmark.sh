#!/usr/bin/env bash
# The out-of-distribution score against severe shifts, and test-time adaptation (brainmri benchmark --shift, --adapt).
# Usage: bash bench/robust_benchmark.sh [OUT]   (default OUT: bench-output/)
#
# brain-tumor-mri, official split, seed 0; every method re-tested on a stratified sample of 400 of the 1311 test
# images under the 11 shifts at severity 5 (severe). results.json has, per method, ood.shift.auc: the AUC with
# which the OOD distance tells the severely shifted test images from the same images clean, and ood.test_flagged.
# 1. ood-glcm: glcm-svm.
# 2. ood-cnn: a quick ayadi-cnn (64 px, width 16, 3 epochs: minutes on a CPU, not the accuracy recipe).
# 3. ood-cnn-adabn: the same network, test sets adapted by AdaBN (--adapt adabn).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output}
DATA=${DATA:-../shared/datasets}
B=${BRAINMRI:-.venv/bin/brainmri}
CNN=ayadi-cnn.size=64,ayadi-cnn.width=16,ayadi-cnn.epochs=3
mkdir -p "$OUT"
run() {  # name, args...
  local name=$1; shift
  /usr/bin/time -f "$name: %e s wall, %M KB peak" -a -o "$OUT/times.txt" \
    $B benchmark "$DATA/brain-tumor-mri" --split official --shift --shift-severities 5 --shift-max-items 400 "$@" \
    --out "$OUT/$name" --cache-dir "$OUT/cache-robust" --restart > "$OUT/$name.txt" 2> "$OUT/$name.err"
  grep -A3 "out-of-distribution" "$OUT/$name.txt"
  grep -A2 "acquisition shift" "$OUT/$name.txt"
}
run ood-glcm --methods glcm-svm
run ood-cnn --methods ayadi-cnn --params "$CNN"
run ood-cnn-adabn --methods ayadi-cnn --params "$CNN" --adapt adabn
cat "$OUT/times.txt"
