#!/usr/bin/env bash
# Replay the hostile cases of issue 20 on scratch copies and print the count per outcome (bench/hostile.py).
# Usage: bash bench/hostile.sh [OUT] [--src OTHER/src] [--only TEXT]
#   OUT (default bench-output/hostile) holds the prepared data, the scratch copies and hostile.json.
#   --src runs another source tree, e.g. the commit before a fix: git worktree add /tmp/old COMMIT; --src /tmp/old/src.
# Cases that need root (a full disk is a small tmpfs) are "not run" without it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-output/hostile}; shift || true
exec .venv/bin/python bench/hostile.py --out "$OUT" "$@"
