#!/usr/bin/env bash
# brainmri explain (issue 10): the known-answer check on synthetic data and the Grad-CAM speed on real images.
#  1. Synthetic data with lesion masks: train ayadi-cnn (128 px) on 100 images per class, explain 50 unseen
#     images per tumour class (10 for the slow methods); target: Grad-CAM pointing game >= 80 %.
#  2. Speed: ayadi-cnn at its default 128 px trained 1 epoch on 60 images per class of brain-tumor-mri/Training
#     (speed does not depend on accuracy); brainmri predict, then brainmri explain --method gradcam on 100 test
#     images per class; target >= 20 images/s on the 2-core CPU.
# Usage: bash bench/explain_benchmark.sh [OUT]   (default OUT: bench-output/explain)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output/explain}
DATA=../shared/datasets/brain-tumor-mri
B=.venv/bin/brainmri
SYNTH_PARAMS=ayadi-cnn.width=16,ayadi-cnn.epochs=20,ayadi-cnn.batch_size=32,ayadi-cnn.ema_decay=null
rm -rf "$OUT" && mkdir -p "$OUT"
log() { /usr/bin/time -f "$1: %e s wall, %M KB peak" -a -o "$OUT/times.txt" "${@:2}"; }

# 1. Known answer.
$B demo-data "$OUT/synthetic/train" --n 100 --seed 0 -q
$B demo-data "$OUT/synthetic/test" --n 50 --seed 1 -q
log train-synthetic $B train "$OUT/synthetic/train" --method ayadi-cnn --params "$SYNTH_PARAMS" --size 128 \
  --cache-dir "$OUT/cache" --out "$OUT/synthetic/model" > "$OUT/train-synthetic.txt"
$B predict "$OUT/synthetic/model" "$OUT/synthetic/test" --out "$OUT/synthetic/predictions.json" -q > "$OUT/predict-synthetic.txt"
# Every image is determined by (seed, class, index): test10 holds the first 10 images per class of test, for the
# methods that take many passes per image (integrated gradients: 32, occlusion: 225 at 128 px).
$B demo-data "$OUT/synthetic/test10" --n 10 --seed 1 -q
explain() {  # method, test folder
  local T=$2
  log "explain-$1-$(basename "$T")" $B explain "$OUT/synthetic/model" "$T/glioma" "$T/meningioma" "$T/pituitary" \
    --method "$1" --masks "$T/.masks" --out "$OUT/synthetic/explain-$1-$(basename "$T")" -q \
    > "$OUT/explain-$1-$(basename "$T").txt"
}
for method in gradcam saliency; do explain $method "$OUT/synthetic/test"; done
for method in gradcam saliency integrated-gradients occlusion; do explain $method "$OUT/synthetic/test10"; done

# 2. Speed on real images.
mkdir -p "$OUT/real"
for split in Training Testing; do
  n=$([ $split = Training ] && echo 60 || echo 100)
  for c in glioma meningioma notumor pituitary; do
    mkdir -p "$OUT/real/$split/$c"
    ls "$DATA/$split/$c" | sort | head -$n | while read -r f; do ln -s "$(realpath "$DATA/$split/$c/$f")" "$OUT/real/$split/$c/$f"; done
  done
done
log train-real $B train "$OUT/real/Training" --method ayadi-cnn --params ayadi-cnn.epochs=1 --size 128 --no-validation \
  --cache-dir "$OUT/cache" --out "$OUT/real/model" -q > "$OUT/train-real.txt"
uptime > "$OUT/load.txt"
log predict-real $B predict "$OUT/real/model" "$OUT/real/Testing" --out "$OUT/real/predictions.json" -q
log explain-real-gradcam $B explain "$OUT/real/model" "$OUT/real/Testing" --method gradcam --no-checks \
  --out "$OUT/real/explain-gradcam" -q > "$OUT/explain-real-gradcam.txt"
uptime >> "$OUT/load.txt"
head -n 5 "$OUT"/explain-*.txt
cat "$OUT/times.txt" "$OUT/load.txt"
