#!/usr/bin/env bash
# Accuracy and wall time of the classical methods on the real datasets.
# Usage: bash bench/classical_benchmark.sh [OUT]   (default OUT: bench-output/)
# Each run starts with an empty feature cache so that its time includes feature extraction.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output}
DATA=../shared/datasets
B=.venv/bin/brainmri
METHODS=glcm-svm,multifeature-rf,ovo-svm,rf
mkdir -p "$OUT"
run() {  # name, args...
  local name=$1; shift
  rm -rf "$OUT/cache-$name"
  /usr/bin/time -f "$name: %e s wall, %M KB peak" -a -o "$OUT/times.txt" \
    $B benchmark "$@" --methods $METHODS --out "$OUT/$name" --cache-dir "$OUT/cache-$name" --restart -q \
    > "$OUT/$name.txt"
}
run tumor-official "$DATA/brain-tumor-mri" --split official
run tumor-cv5 "$DATA/brain-tumor-mri" --cv 5
run tumor-cv5-similar "$DATA/brain-tumor-mri" --cv 5 --group-similar
run alz-cv5 "$DATA/alzheimer-mri" --cv 5
run alz-cv5-similar "$DATA/alzheimer-mri" --cv 5 --group-similar
# What a naive slice-level split would report (duplicates may straddle folds):
run tumor-cv5-naive "$DATA/brain-tumor-mri" --cv 5 --grouping none
run alz-cv5-naive "$DATA/alzheimer-mri" --cv 5 --grouping none
cat "$OUT/times.txt"
