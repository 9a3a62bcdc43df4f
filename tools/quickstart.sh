#!/usr/bin/env bash
# Set up reid2 if needed, then run the main job on the embedded synthetic data: an OIM teacher on
# MobileNetV2 C4 from ImageNet (the weights the set-up installs), the export of its LUT, the KD_reid
# student of configs/kd_oim.yaml on the same network, and one evaluation table (~8 min on 2 CPU cores).
# Outputs land in ./output/quickstart (override: --output DIR); --seeds 0 1 2 adds seeds (mean ± std),
# --control adds plain OIM at the student's λ_oim; see python tools/quickstart.py --help.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup.sh"
PY="${REID2_PYTHON:-$ROOT/.venv/bin/python}"
cd "$ROOT"
exec "$PY" tools/quickstart.py "$@"
