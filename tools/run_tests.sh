#!/usr/bin/env bash
# Set up reid2 if needed, then run the test suite (slow tests excluded; add `-m ""` for all).
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -k oim -x`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/tools/setup.sh"
PY="${REID2_PYTHON:-$ROOT/.venv/bin/python}"
cd "$ROOT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec "$PY" -m pytest "$@"
