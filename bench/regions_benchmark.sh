#!/usr/bin/env bash
# brainmri regions (issue 10, section 3 and its performance target): the synthetic 3D benchmark on this CPU.
#  1. demo-data --3d: 2 x 50 subjects of 32^3 voxels from the MNI152 template, atrophy planted in 3 of 24 regions.
#  2. train cnn3d on them (default settings: 32^3, 40 epochs, grouped inner validation).
#  3. brainmri regions: the template parcellation (the same 24 regions), default search (population 30,
#     40 generations, mutation 1/24, penalty 0.002), seeded by the ANOVA ranking;
#  4. the same search seeded by the cnn3d of step 2 (--model): the density of its input gradients per region,
#     averaged with their sign over each class (the default --attribution gradient);
#  5. the same with --attribution gradcam (the cnn3d's last convolution, 4^3 at 32^3), for comparison.
# Targets: train cnn3d + region search under 30 minutes and 8 GB on the 2-core CPU; the search recovers >= 80 % of
# the planted regions among the top-ranked, with accuracy on the selected regions within 5 points of the whole brain.
# Wall time and peak memory (max RSS) of each step: OUT/times.txt; load before and after: OUT/load.txt.
# Usage: bash bench/regions_benchmark.sh [OUT]   (default OUT: bench-output/regions)
#        BRAINMRI="env PYTHONPATH=src /path/to/python -m brainmri" bash bench/regions_benchmark.sh   (another install)
#        N=6 TRAIN_PARAMS=cnn3d.epochs=1 bash bench/regions_benchmark.sh /tmp/x   (a dry run of the script)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output/regions}
B=${BRAINMRI:-.venv/bin/brainmri}
N=${N:-50}
TRAIN_PARAMS=${TRAIN_PARAMS:-}
rm -rf "$OUT" && mkdir -p "$OUT"
log() { /usr/bin/time -f "$1: %e s wall, %U s user, %M KB peak" -a -o "$OUT/times.txt" "${@:2}"; }
uptime > "$OUT/load.txt"
log demo-data $B demo-data --3d "$OUT/data" --n "$N" --size 32 --regions 24 --planted 3 --seed 0 -q > "$OUT/demo-data.txt"
log train-cnn3d $B train "$OUT/data" --method cnn3d ${TRAIN_PARAMS:+--params "$TRAIN_PARAMS"} --cache-dir "$OUT/cache" --out "$OUT/model" > "$OUT/train.txt" \
  2> "$OUT/train-progress.txt"
log regions $B regions "$OUT/data" --regions 24 --out "$OUT/regions" > "$OUT/regions.txt" 2> "$OUT/regions-progress.txt"
log regions-model $B regions "$OUT/data" --regions 24 --model "$OUT/model" --out "$OUT/regions-model" \
  > "$OUT/regions-model.txt" 2> "$OUT/regions-model-progress.txt"
log regions-gradcam $B regions "$OUT/data" --regions 24 --model "$OUT/model" --attribution gradcam \
  --out "$OUT/regions-gradcam" > "$OUT/regions-gradcam.txt" 2> "$OUT/regions-gradcam-progress.txt"
uptime >> "$OUT/load.txt"
cat "$OUT/times.txt" "$OUT/train.txt" "$OUT/regions.txt" "$OUT/regions-model.txt" "$OUT/regions-gradcam.txt" \
  "$OUT/load.txt"
