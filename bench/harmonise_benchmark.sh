#!/usr/bin/env bash
# Intensity harmonisation on the shift table: glcm-svm on the official split of brain-tumor-mri, re-tested on a
# stratified sample of 400 test images under the 11 shifts at severity 3 (medium), once per preprocessing option.
# Usage: bash bench/harmonise_benchmark.sh [OUT] [OPTIONS...]   (default OUT: bench-output/; default options:
#        zscore nyul keep-aspect n4). The baseline (no option) is the glcm-svm "medium" column of
#        bench/shift_benchmark.sh: the default preprocessing is unchanged, so its numbers are the same.
# Each run starts with an empty cache. OUT/times.txt has the wall time and peak memory of every run.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output}
shift || true
OPTIONS=${*:-zscore nyul keep-aspect n4}
DATA=${DATA:-../shared/datasets}
B=${BRAINMRI:-.venv/bin/brainmri}
mkdir -p "$OUT"
for option in $OPTIONS; do
  case $option in
    zscore|nyul) args=(--harmonise "$option") ;;
    *) args=("--$option") ;;
  esac
  name=harmonise-$option
  rm -rf "$OUT/cache-$name"
  /usr/bin/time -f "$name: %e s wall, %M KB peak" -a -o "$OUT/times.txt" \
    $B benchmark "$DATA/brain-tumor-mri" --split official --methods glcm-svm "${args[@]}" \
    --shift --shift-severities 3 --shift-max-items 400 \
    --out "$OUT/$name" --cache-dir "$OUT/cache-$name" --restart > "$OUT/$name.txt" 2> "$OUT/$name.err"
  grep -A3 "acquisition shift" "$OUT/$name.txt" || true
done
cat "$OUT/times.txt"
