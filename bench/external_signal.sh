#!/usr/bin/env bash
# The external signal of issue 9, per configuration: trained tumour vs normal on brain-tumor-mri (all of it), tested
# on brain-tumor-yes-no. 115 of its 253 images copy brain-tumor-mri images; brainmri's copies check finds them and
# metrics_deduplicated scores the test without them. The signal is the share of the 136 remaining `yes` images
# (tumours from another source) that the model calls tumour (per_class_deduplicated.tumor.sensitivity: the model's
# own decision, no threshold tuned on it), next to the AUC and balanced accuracy on the deduplicated external test
# (95% bootstrap intervals) and the training cost (fit seconds, and the wall time of the whole run from an empty
# feature cache: reading, audit, features, training, tests).
#
# Usage: bash bench/external_signal.sh [OUT] [CONFIG...]   (default OUT: bench-output/external-signal)
# CONFIGs (default: all of them, in this order):
#   glcm              glcm-svm
#   glcm-nyul         glcm-svm --harmonise nyul (landmarks learned on the training images)
#   glcm-aspect       glcm-svm --keep-aspect
#   glcm-zscore       glcm-svm --harmonise zscore (z-scores inside the head mask)
#   glcm-n4           glcm-svm --n4 (N4 bias-field correction, SimpleITK)
#   lite0             transfer-features (frozen EfficientNet-Lite0, offline weights, its defaults)
#   cnn               ayadi-cnn, CNN_EPOCHS epochs (default 6; the name becomes cnn-e<N>)
#   cnn-appearance    the same with augment=appearance (bias field, gamma, blur, Rician noise, motion, ghosting, anisotropy)
#   finetune          transfer-finetune (its defaults, plus the comma-separated settings in FINETUNE if set),
#                     tested as trained and adapted to the external images (--adapt none,adabn,tent)
#   finetune-appearance  the same with augment=appearance
#   glcm-multisource  glcm-svm, with the 3,200 Non_Demented slices of alzheimer-mri (another source: OASIS) added to
#                     the training data as normal (--extra-data, a CSV manifest written to OUT/alzheimer-normal.csv)
#   finetune-multisource  transfer-finetune (as finetune) with the same extra data
# Resumable: a configuration whose OUT/<name>/results.json exists is skipped; an interrupted one resumes from its
# finished units (and its wall time adds up over the runs). Each run appends to OUT/external_signal.md a table of
# every finished configuration, with the date and the load average.
# Environment: DATA (default ../shared/datasets), BRAINMRI (default .venv/bin/brainmri), PYTHON (default
# .venv/bin/python), CNN_EPOCHS.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output/external-signal}
shift || true
CNN_EPOCHS=${CNN_EPOCHS:-6}
CONFIGS=${*:-glcm glcm-nyul glcm-aspect glcm-zscore glcm-n4 lite0 cnn cnn-appearance finetune finetune-appearance glcm-multisource}
FINETUNE=${FINETUNE:-}
ft_params() {  # transfer-finetune's --params from FINETUNE, plus any extra settings given
  local params="" setting
  for setting in ${FINETUNE//,/ } "$@"; do params+="${params:+,}transfer-finetune.$setting"; done
  echo "$params"
}
DATA=${DATA:-../shared/datasets}
B=${BRAINMRI:-.venv/bin/brainmri}
PY=${PYTHON:-.venv/bin/python}
MAP=glioma=tumor,meningioma=tumor,pituitary=tumor,notumor=normal,yes=tumor,no=normal
mkdir -p "$OUT"
EXTRA=(--extra-data "$OUT/alzheimer-normal.csv" --allow-outside-paths)
write_manifest() {  # the extra data of the multi-source configurations
$PY - "$DATA/alzheimer-mri/Non_Demented" "$OUT/alzheimer-normal.csv" <<'MANIFEST'
import csv, os, sys
from pathlib import Path

folder, manifest = Path(sys.argv[1]), Path(sys.argv[2])
files = sorted(f for f in folder.iterdir() if f.suffix.lower() in {".jpg", ".jpeg", ".png"})
with open(f"{manifest}.part", "w", newline="") as fh:  # written whole, then renamed: never a partial manifest
    writer = csv.writer(fh)
    writer.writerow(["path", "label"])
    writer.writerows([os.path.relpath(f, manifest.parent), "normal"] for f in files)
os.replace(f"{manifest}.part", manifest)
MANIFEST
}

names=()
for config in $CONFIGS; do
  case $config in
    glcm) args=(--methods glcm-svm) ;;
    glcm-nyul) args=(--methods glcm-svm --harmonise nyul) ;;
    glcm-aspect) args=(--methods glcm-svm --keep-aspect) ;;
    glcm-zscore) args=(--methods glcm-svm --harmonise zscore) ;;
    glcm-n4) args=(--methods glcm-svm --n4) ;;
    lite0) args=(--methods transfer-features) ;;
    cnn) config=cnn-e$CNN_EPOCHS; args=(--methods ayadi-cnn --params "ayadi-cnn.epochs=$CNN_EPOCHS") ;;
    cnn-appearance) config=cnn-appearance-e$CNN_EPOCHS
      args=(--methods ayadi-cnn --params "ayadi-cnn.epochs=$CNN_EPOCHS,ayadi-cnn.augment=appearance") ;;
    finetune) params=$(ft_params); args=(--methods transfer-finetune ${params:+--params "$params"} --adapt none,adabn,tent) ;;
    finetune-appearance)
      args=(--methods transfer-finetune --params "$(ft_params augment=appearance)" --adapt none,adabn,tent) ;;
    glcm-multisource) write_manifest; args=(--methods glcm-svm "${EXTRA[@]}") ;;
    finetune-multisource) write_manifest; params=$(ft_params)
      args=(--methods transfer-finetune ${params:+--params "$params"} --adapt none,adabn,tent "${EXTRA[@]}") ;;
    *) echo "unknown configuration $config; use: glcm glcm-nyul glcm-aspect glcm-zscore glcm-n4 lite0 cnn cnn-appearance finetune" \
         "finetune-appearance glcm-multisource finetune-multisource" >&2; exit 2 ;;
  esac
  names+=("$config")
  if [[ -f "$OUT/$config/results.json" ]]; then
    echo "$config: done earlier, skipped"
    continue
  fi
  [[ -d "$OUT/$config" ]] || rm -rf "$OUT/cache-$config"  # a fresh start computes its features: part of its cost
  echo "$config: running (log in $OUT/$config.err)"
  start=$SECONDS
  if $B benchmark "$DATA/brain-tumor-mri" --test-data "$DATA/brain-tumor-yes-no" --label-map "$MAP" "${args[@]}" \
      --out "$OUT/$config" --cache-dir "$OUT/cache-$config" > "$OUT/$config.txt" 2>> "$OUT/$config.err"; then
    echo "$config: finished in $((SECONDS - start)) s"
  else
    echo "$config: stopped or failed after $((SECONDS - start)) s; see $OUT/$config.err (a rerun resumes it)"
  fi
  echo $((SECONDS - start)) >> "$OUT/$config.wall"
done

$PY - "$OUT" "${names[@]}" <<'EOF' | tee -a "$OUT/external_signal.md"
import json, os, sys, time
from pathlib import Path

out, names = Path(sys.argv[1]), sys.argv[2:]
ci = lambda m: f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
print(f"\n### External signal, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
      f"(load average {os.getloadavg()[0]:.2f} at the end)\n")
print("| configuration | method | tumours called tumour (not copies) | AUC, deduplicated | balanced accuracy, "
      "deduplicated | copies found | fit (s) | wall (s) |")
print("|---|---|---|---|---|---|---|---|")
for name in names:
    path = out / name / "results.json"
    if not path.is_file():
        print(f"| {name} | not finished | | | | | | |")
        continue
    results = json.loads(path.read_text())
    leaks = results["protocol"]["cross_dataset_leaks"]
    wall = out / f"{name}.wall"
    wall = sum(float(line) for line in wall.read_text().split()) if wall.is_file() else float("nan")
    for method, entry in results["methods"].items():
        tumour = entry["per_class_deduplicated"]["tumor"]
        called = round(tumour["sensitivity"] * tumour["support"])
        dedup = entry["metrics_deduplicated"]
        print(f"| {name} | {method} | {called}/{tumour['support']} = {tumour['sensitivity']:.3f} | {ci(dedup['auc'])} | "
              f"{ci(dedup['balanced_accuracy'])} | {leaks['n_leaking']} of {leaks['n_other']} | "
              f"{entry['timing_s']['fit']:.0f} | {wall:.0f} |")
EOF
