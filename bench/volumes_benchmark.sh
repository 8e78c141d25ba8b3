#!/usr/bin/env bash
# 3D volumes (issue 10, part 2): cnn3d on synthetic volumes with regional atrophy planted in known regions.
#  1. brainmri demo-data --3d: 60 subjects per class (atrophy, control) at SIZE^3 voxels (default 48); a CSV manifest
#     (with a subject column) lists the first 50 per class for training, the last 10 are unseen test subjects with
#     the same planted regions (every subject is determined by (seed, class, index)).
#  2. brainmri benchmark --methods cnn3d, grouped CV (CV folds, default 5) on the 100 training subjects: accuracy, time, memory.
#  3. brainmri train on the 100, then brainmri explain --method gradcam on the 20 unseen subjects with their
#     planted-region masks: the pointing game and the share of attribution inside the planted regions.
# Usage: bash bench/volumes_benchmark.sh [OUT]   (default OUT: bench-output/volumes; SIZE=32 CV=2 for a quicker run)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output/volumes}
SIZE=${SIZE:-48}
CV=${CV:-5}
B=${B:-.venv/bin/brainmri}
PARAMS=cnn3d.size=$SIZE
rm -rf "$OUT" && mkdir -p "$OUT"
log() { /usr/bin/time -f "$1: %e s wall, %M KB peak" -a -o "$OUT/times.txt" "${@:2}"; }

# 1. Data.
log demo-data $B demo-data --3d "$OUT/data" --n 60 --size "$SIZE" --seed 0 -q
{
  echo "path,label,subject"
  for c in atrophy control; do
    for k in $(seq -f "%03g" 0 49); do echo "$c/sub-$c$k.nii.gz,$c,$c$k"; done
  done
} > "$OUT/data/train.csv"
mkdir -p "$OUT/unseen"
for c in atrophy control; do
  mkdir -p "$OUT/unseen/$c"
  for k in $(seq -f "%03g" 50 59); do ln -s "$(realpath "$OUT/data/$c/sub-$c$k.nii.gz")" "$OUT/unseen/$c/"; done
done

# 2. Benchmark.
log benchmark $B benchmark "$OUT/data/train.csv" --methods cnn3d --params "$PARAMS" --cv "$CV" \
  --cache-dir "$OUT/cache" --out "$OUT/benchmark" > "$OUT/benchmark.txt"

# 3. Explanations against the planted regions.
log train $B train "$OUT/data/train.csv" --method cnn3d --params "$PARAMS" --no-validation --cache-dir "$OUT/cache" \
  --out "$OUT/model" > "$OUT/train.txt"
log explain $B explain "$OUT/model" "$OUT/unseen" --method gradcam --masks "$OUT/data/.masks" \
  --out "$OUT/explain" -q > "$OUT/explain.txt"
cat "$OUT/times.txt" "$OUT/explain.txt"
