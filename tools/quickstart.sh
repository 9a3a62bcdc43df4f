#!/usr/bin/env bash
# Set up reid2 if needed, then run the main job on the embedded synthetic data:
# a small OIM teacher, the export of its LUT, the KD-OIM student of configs/kd_oim.yaml,
# and one evaluation table for both. Outputs land in ./output/quickstart (override: --output DIR).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup.sh"
PY="${REID2_PYTHON:-$ROOT/.venv/bin/python}"
cd "$ROOT"
exec "$PY" tools/quickstart.py "$@"
