#!/usr/bin/env bash
# Transfer learning on alzheimer-mri (issue 8): grouped 5-fold cross-validation (near-duplicate clusters, the
# grouping of the classical methods' 0.32-0.34 balanced accuracy in docs/benchmarks.md), balanced accuracy per method.
# Does transfer learning recognise dementia stages, or the scan, once neighbouring slices are grouped?
# Usage: [DATA=folder] [EPOCHS=n] [SIZE=px] bash bench/alzheimer_transfer.sh [OUT] [features|finetune|naive ...]
#   features: transfer-features (frozen EfficientNet-Lite0, its defaults);
#   finetune: transfer-finetune with EPOCHS (default 3) at SIZE px (default 128, the images' own size), without
#             class weights (class_weight=null: with the method's balanced weights, 25x for the 64 Moderate_Demented
#             slices, fine-tuning predicted that class for almost everything: validation accuracy 0.06-0.08, training
#             loss 1.7-2.0, above ln 4, at a peak learning rate of 1e-3 and of 3e-4 alike);
#   naive:    transfer-features with --grouping none (slices of one subject on both sides), to show the leak.
# ARGS: more benchmark options for every run (e.g. "--threads 1"). Each run writes OUT/alz-<name>.txt and its
# wall time and peak memory to OUT/alzheimer-times.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output}; shift || true
B=.venv/bin/brainmri
DATA=${DATA:-../shared/datasets}/alzheimer-mri
EPOCHS=${EPOCHS:-3}
SIZE=${SIZE:-128}
mkdir -p "$OUT"
run() {  # name, args...
  local name=$1; shift
  /usr/bin/time -f "alz-$name: %e s wall, %M KB peak" -a -o "$OUT/alzheimer-times.txt" \
    $B benchmark "$DATA" --cv 5 --out "$OUT/alz-$name" --cache-dir "$OUT/cache-alz-transfer" --restart "$@" ${ARGS:-} \
    > "$OUT/alz-$name.txt" 2> "$OUT/alz-$name.log"
  head -6 "$OUT/alz-$name.txt"
}
[ $# -gt 0 ] || set -- features finetune
for what in "$@"; do
  case $what in
    features) run features --methods transfer-features ;;
    naive) run features-naive --methods transfer-features --grouping none ;;
    finetune) run "finetune-${EPOCHS}ep-${SIZE}px" --methods transfer-finetune \
                --params "transfer-finetune.epochs=$EPOCHS,transfer-finetune.size=$SIZE,transfer-finetune.class_weight=null" ;;
    *) echo "unknown run: $what (use features, finetune or naive)" >&2; exit 2 ;;
  esac
done
