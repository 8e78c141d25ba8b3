#!/usr/bin/env bash
# The out-of-distribution score against severe shifts, and test-time adaptation (brainmri benchmark --shift, --adapt).
# Usage: bash bench/robust_benchmark.sh [OUT] [RUN...]   (default OUT: bench-output/, RUNs: ood-glcm ood-cnn
#        ood-cnn-adabn); ARGS: more benchmark options for every run (e.g. "--threads 1")
#
# brain-tumor-mri, official split, seed 0; every method re-tested on a stratified sample of 400 of the 1311 test
# images under the 11 shifts at severity 5 (severe). results.json has, per method, ood.shift.auc: the AUC with
# which the OOD distance tells the severely shifted test images from the same images clean, and ood.test_flagged.
# 1. ood-glcm: glcm-svm.
# 2. ood-cnn: a quick ayadi-cnn (64 px, width 16, 3 epochs: minutes on a CPU, not the accuracy recipe).
# 3. ood-cnn-adabn: the same network, test sets adapted by AdaBN (--adapt adabn).
# 4. ft-appearance (not in the default runs): transfer-finetune with its defaults (plus FINETUNE settings) and
#    appearance augmentation, tested at medium and severe severity (3,5), as trained and adapted by
#    AdaBN and by Tent (--adapt none,adabn,tent: one trained network, three rows, paired tests); SEVERITIES
#    (default 3,5) sets its severities.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output}
DATA=${DATA:-../shared/datasets}
B=${BRAINMRI:-.venv/bin/brainmri}
CNN=ayadi-cnn.size=64,ayadi-cnn.width=16,ayadi-cnn.epochs=3
FINETUNE=${FINETUNE:-}  # transfer-finetune settings beyond its defaults, comma-separated (e.g. epochs=6)
FT=""
for setting in ${FINETUNE//,/ } augment=appearance; do FT+="${FT:+,}transfer-finetune.$setting"; done
shift || true
mkdir -p "$OUT"
run() {  # name, args...
  local name=$1; shift
  /usr/bin/time -f "$name: %e s wall, %M KB peak" -a -o "$OUT/times.txt" \
    $B benchmark "$DATA/brain-tumor-mri" --split official --shift --shift-max-items 400 "$@" ${ARGS:-} \
    --out "$OUT/$name" --cache-dir "$OUT/cache-robust" --restart > "$OUT/$name.txt" 2> "$OUT/$name.err"
  grep -A3 "out-of-distribution" "$OUT/$name.txt"
  grep -A2 "acquisition shift" "$OUT/$name.txt"
}
[ $# -gt 0 ] || set -- ood-glcm ood-cnn ood-cnn-adabn
for name in "$@"; do
  case $name in
    ood-glcm) run ood-glcm --shift-severities 5 --methods glcm-svm ;;
    ood-cnn) run ood-cnn --shift-severities 5 --methods ayadi-cnn --params "$CNN" ;;
    ood-cnn-adabn) run ood-cnn-adabn --shift-severities 5 --methods ayadi-cnn --params "$CNN" --adapt adabn ;;
    ft-appearance) run ft-appearance --shift-severities "${SEVERITIES:-3,5}" --methods transfer-finetune --params "$FT" \
                     --adapt none,adabn,tent ;;
    *) echo "unknown run $name; use ood-glcm, ood-cnn, ood-cnn-adabn or ft-appearance" >&2; exit 2 ;;
  esac
done
cat "$OUT/times.txt"
