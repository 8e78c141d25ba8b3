#!/usr/bin/env bash
# brainmri tune on brain-tumor-mri: the tuned glcm-svm against the untuned one, and one against two workers
# sharing a PostgreSQL study.
# Usage (as root, for runuser): bash bench/tune_benchmark.sh [OUT] [SAMPLER] [WORKER_TRIALS]
#   (DATA, BRAINMRI and PYTHON override the dataset, the brainmri command and the Python of .venv)
#   (defaults: bench-output/tune, aco, 16)
# The feature cache is filled by the first run (the tune) and shared by the others; every PostgreSQL worker runs
# one thread (--jobs 1, OMP_NUM_THREADS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output/tune}
SAMPLER=${2:-aco}
WORKER_TRIALS=${3:-16}
DATA=${DATA:-../shared/datasets/brain-tumor-mri}
B=${BRAINMRI:-.venv/bin/brainmri}
PY=${PYTHON:-.venv/bin/python}
PG=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
mkdir -p "$OUT"
CACHE=${CACHE:-$OUT/cache}
timed() {  # name, command...
  local name=$1; shift
  /usr/bin/time -f "$name: %e s wall, %M KB peak, load $(cut -d' ' -f1-3 /proc/loadavg)" -a -o "$OUT/times.txt" "$@"
}

# 1. the tuned glcm-svm, then the untuned one (its inner grid search), on the official split. The tune runs first,
# on an empty cache, so that its time is what a user's first run takes (audit, features, 30 trials, refit, test).
timed "tuned-$SAMPLER" $B tune "$DATA" --method glcm-svm --sampler "$SAMPLER" --trials 30 --split official \
  --out "$OUT/tuned-$SAMPLER" --cache-dir "$CACHE" -q > "$OUT/tuned-$SAMPLER.txt"
timed untuned $B benchmark "$DATA" --methods glcm-svm --split official --out "$OUT/untuned" --cache-dir "$CACHE" \
  --restart -q > "$OUT/untuned.txt"

# 2. one worker, then two workers, on a fresh PostgreSQL study each (a throw-away server on a free port)
PGROOT=$(mktemp -d /tmp/brainmri-pg-XXXX); chown postgres "$PGROOT"
PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
runuser -u postgres -- "$PG/initdb" -D "$PGROOT/data" -A trust -U postgres > /dev/null
runuser -u postgres -- "$PG/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/log" -w -o "-p $PORT -h 127.0.0.1 -k $PGROOT" start
trap 'runuser -u postgres -- "$PG/pg_ctl" -D "$PGROOT/data" -m fast -w stop; rm -rf "$PGROOT"' EXIT
URL="postgresql://postgres@127.0.0.1:$PORT/postgres"
worker() {  # study, k
  OMP_NUM_THREADS=1 $B tune "$DATA" --method glcm-svm --sampler random --trials "$WORKER_TRIALS" --split official \
    --storage "$URL" --study "$1" --out "$OUT/$1-w$2" --cache-dir "$CACHE" --jobs 1 -q > "$OUT/$1-w$2.txt"
}
start=$(date +%s); worker one 1
echo "workers1: $(( $(date +%s) - start )) s wall, load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/times.txt"
start=$(date +%s); worker two 1 & worker two 2 & wait
echo "workers2: $(( $(date +%s) - start )) s wall, load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/times.txt"
# Trial throughput from the study itself: first trial start to last trial end (the audit of each worker excluded).
# A second worker may finish one trial more than asked; the time to the WORKER_TRIALS-th is compared.
$PY - "$URL" "$WORKER_TRIALS" <<'EOF' | tee -a "$OUT/times.txt"
import sys
import optuna
storage = optuna.storages.RDBStorage(sys.argv[1].replace("postgresql://", "postgresql+psycopg://"))
n, span = int(sys.argv[2]), {}
for name in ("one", "two"):
    trials = optuna.load_study(study_name=name, storage=storage).trials
    done = sorted(t.datetime_complete for t in trials if t.state.name == "COMPLETE")
    span[name] = (done[n - 1] - min(t.datetime_start for t in trials)).total_seconds()
    workers = len({t.user_attrs.get("worker") for t in trials})
    print(f"study {name}: {len(done)} complete trials by {workers} worker(s), the first {n} in {span[name]:.1f} s")
print(f"speed-up of two workers: {span['one'] / span['two']:.2f}x")
storage.engine.dispose()
EOF
cat "$OUT/times.txt"
