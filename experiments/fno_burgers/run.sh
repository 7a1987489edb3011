#!/usr/bin/env bash
# Reproduce the FNO paper's Burgers result (s = 256, 1000 train / 200 test): generate, train, evaluate.
# Usage: bash experiments/fno_burgers/run.sh [OUT_DIR] [extra `pde-lab train` flags, e.g. --device cuda]
set -euo pipefail
PDE_LAB="${PDE_LAB:-pde-lab}"  # e.g. PDE_LAB="python3 -m pde_lab.cli" without an installed entry point
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-experiments_out/fno_burgers}"; shift || true
$PDE_LAB generate --pde burgers --levels fno --n-train 1000 --n-valid 100 --n-test 200 --resolution 256 \
    --seed 0 --out "$out/data" --overwrite
$PDE_LAB train --config "$here/train.yaml" --data "$out/data" --out "$out/run" --overwrite "$@"
$PDE_LAB evaluate --run "$out/run" --data "$out/data" --split test
