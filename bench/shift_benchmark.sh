#!/usr/bin/env bash
# Accuracy of classical methods under acquisition shifts (brainmri benchmark --shift), and what it costs.
# Usage: bash bench/shift_benchmark.sh [OUT] [full]   (default OUT: bench-output/)
#
# 1. shift-official: official split of brain-tumor-mri; glcm-svm and rf fitted on the clean training images,
#    then re-tested on a stratified sample of 400 of the 1311 test images under the 11 shifts at severities
#    3 (medium) and 5 (severe): 8,800 shifted predictions per method.
# 2. with `full`, shift-official-full: glcm-svm alone on every test image, every shift, every severity
#    (1311 x 11 x 5 = 72,105 shifted predictions), to measure what the whole table costs.
# Each run starts with an empty feature cache. OUT/<run>.err has one timed line per shift and method;
# results.json has the time of the shifted tests per method (methods.<name>.timing_s.shifted_tests).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output}
DATA=../shared/datasets
B=.venv/bin/brainmri
mkdir -p "$OUT"
run() {  # name, args...
  local name=$1; shift
  rm -rf "$OUT/cache-$name"
  /usr/bin/time -f "$name: %e s wall, %M KB peak" -a -o "$OUT/times.txt" \
    $B benchmark "$DATA/brain-tumor-mri" --split official "$@" \
    --out "$OUT/$name" --cache-dir "$OUT/cache-$name" --restart > "$OUT/$name.txt" 2> "$OUT/$name.err"
  grep -A3 "acquisition shift" "$OUT/$name.txt"
}
run shift-official --methods glcm-svm,rf --shift --shift-severities 3,5 --shift-max-items 400
if [ "${2:-}" = full ]; then
  run shift-official-full --methods glcm-svm --shift
fi
cat "$OUT/times.txt"
