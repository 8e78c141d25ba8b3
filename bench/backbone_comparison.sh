#!/usr/bin/env bash
# Backbone comparison under one protocol (issue 8 §4, after Mehnatkesh et al. 2023): transfer-features with the
# offline backbones EfficientNet-Lite0 (its default), MobileNetV2 and EfficientNet-Lite2, as named configurations of
# one benchmark on brain-tumor-mri, official split, all at 224 px (the method's default input size; the embeddings
# of every configuration are computed in one pass before the first fit). The output lists, per backbone, the
# metrics with 95% intervals, the deduplicated accuracy, the pairwise McNemar tests (Holm-adjusted) and the cost
# table: network weights, fit seconds and inference images/s (from the image file, without feature cache).
# Usage: [DATA=folder] bash bench/backbone_comparison.sh [OUT] [BRAINMRI]
#   (defaults: ../shared/datasets/brain-tumor-mri, bench-output/, .venv/bin/brainmri)
# The run starts with an empty cache; OUT/backbones-times.txt has its wall time and peak memory.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output}
B=${2:-.venv/bin/brainmri}
DATA=${DATA:-../shared/datasets/brain-tumor-mri}
mkdir -p "$OUT"
rm -rf "$OUT/cache-backbones"
/usr/bin/time -f "backbones: %e s wall, %M KB peak" -a -o "$OUT/backbones-times.txt" \
  $B benchmark "$DATA" --split official \
  --methods transfer-features@lite0,transfer-features@mobilenet_v2,transfer-features@lite2 \
  --params transfer-features@mobilenet_v2.backbone=mobilenet_v2,transfer-features@lite2.backbone=efficientnet_lite2 \
  --out "$OUT/backbones" --cache-dir "$OUT/cache-backbones" --restart > "$OUT/backbones.txt" 2> "$OUT/backbones.log"
sed -n '/^cost/,/^$/p' "$OUT/backbones.txt"
grep -A4 "do not duplicate" "$OUT/backbones.txt"
grep "significant differences" "$OUT/backbones.txt"
cat "$OUT/backbones-times.txt"
