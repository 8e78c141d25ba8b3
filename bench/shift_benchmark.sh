#!/usr/bin/env bash
# Accuracy of classical methods under acquisition shifts (brainmri benchmark --shift), and what it costs.
# Usage: bash bench/shift_benchmark.sh [OUT] [MAX_ITEMS]   (default OUT: bench-output/, MAX_ITEMS: 400)
# Official split of brain-tumor-mri: glcm-svm and rf fitted on the clean training images, then re-tested on a
# stratified sample of MAX_ITEMS test images (all 1311 with MAX_ITEMS=all) under the 11 shifts at severities
# 1, 3 and 5. The run starts with an empty feature cache; OUT/shift-official.err has one timed line per shift
# and method, and results.json the time of the shifted tests per method (timing_s.shifted_tests).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output}
MAX_ITEMS=${2:-400}
DATA=../shared/datasets
B=.venv/bin/brainmri
mkdir -p "$OUT"
rm -rf "$OUT/cache-shift"
subset=()
if [ "$MAX_ITEMS" != all ]; then subset=(--shift-max-items "$MAX_ITEMS"); fi
/usr/bin/time -f "shift-official ($MAX_ITEMS items): %e s wall, %M KB peak" -a -o "$OUT/times.txt" \
  $B benchmark "$DATA/brain-tumor-mri" --split official --methods glcm-svm,rf \
  --shift --shift-severities 1,3,5 "${subset[@]}" \
  --out "$OUT/shift-official" --cache-dir "$OUT/cache-shift" --restart \
  > "$OUT/shift-official.txt" 2> "$OUT/shift-official.err"
grep -A3 "acquisition shift" "$OUT/shift-official.txt"
tail -n 1 "$OUT/times.txt"
