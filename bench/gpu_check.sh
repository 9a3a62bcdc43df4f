#!/usr/bin/env bash
# One check of reid2 on a GPU machine that has torch + torchvision but no package registry (sized for <= 8 min on
# one H100). Installs from the offline bundle that travels with the checkout, then:
#   1. paper-scale person-search training step, time and peak memory, fp32 and AMP (bench.gpu_paper_steps)
#   2. re-ID ResNet-50 throughput, reid2's trainer step / a plain PyTorch loop (bench.gpu_reid_throughput)
#   3. short training + evaluation of the synthetic configs, data from disk, workers on (bench.gpu_synthetic_train)
#   4. the test suite with CUDA visible (the CUDA-only tests run; multi-process tests on gloo when < 2 GPUs)
# Each step writes its table to $OUT (default output/gpu_check) and prints it; gpu_check.md gathers them.
#
#   bash bench/gpu_check.sh [--quick] [--bundle DIR] [--skip-install] [--steps 1,2,3,4]
#
# --quick: everything at tiny sizes on whatever device there is (a dry run on a CPU machine).
# The bundle: python tools/make_offline_bundle.py .offline-bundle --python 3.12 --platform manylinux --skip ...
# (README "GPU check"); on the lent machines name .offline-bundle in the device tool's carry.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
QUICK=0; BUNDLE=.offline-bundle; INSTALL=1; STEPS=1,2,3,4
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --bundle) BUNDLE="$2"; shift 2 ;;
    --skip-install) INSTALL=0; shift ;;
    --steps) STEPS="$2"; shift 2 ;;
    *) echo "[gpu_check] unknown argument $1" >&2; exit 2 ;;
  esac
done
OUT="${OUT:-$ROOT/output/gpu_check}"
mkdir -p "$OUT"
PY="${REID2_PYTHON:-python3}"
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
LOG="$OUT/gpu_check.log"
: > "$LOG"
START=$(date +%s)
say() { echo "[gpu_check $(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
want() { [[ ",$STEPS," == *",$1,"* ]]; }

# ---- 0. install from the bundle (only what is missing) --------------------------------------------------------
if [[ $INSTALL == 1 ]] && ! "$PY" -c 'import detectron2, fvcore, omegaconf, pycocotools' 2>/dev/null; then
  if [[ ! -f "$BUNDLE/manifest.json" ]]; then
    say "no Detectron2 here and no bundle at $BUNDLE: build one (README 'GPU check') and carry it"; exit 1
  fi
  say "installing from $BUNDLE into $("$PY" -c 'import sys; print(sys.prefix)')"
  REID2_PYTHON="$PY" timeout 240 bash tools/setup.sh --offline "$BUNDLE" >>"$LOG" 2>&1 \
    || { say "offline install failed (see gpu_check.log)"; tail -20 "$LOG"; exit 1; }
fi
"$PY" - <<'EOF' 2>&1 | tee -a "$LOG" "$OUT/environment.txt"
import platform, torch, torchvision, detectron2
cuda = torch.cuda.is_available()
print(f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"detectron2 {detectron2.__version__}, CUDA {torch.version.cuda if cuda else 'none'}, "
      f"devices: {[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] or 'cpu only'}")
EOF
if [[ $QUICK == 1 ]]; then
  DEVICE=$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
  S1=(--sizes 96x160 --batch 1 --warmup 1 --steps 1 --rois 32 --configs kd_oim_r18.yaml kd_det_oim_r18.yaml
      --device "$DEVICE")
  S2=(--batch 8 --height 64 --width 32 --warmup 1 --steps 2 --rounds 1 --device "$DEVICE")
  S3=(--iters 6 --workers 2 --preset tiny --device "$DEVICE")
  S4=(tests/engine/test_amp.py)
  LIMITS=(600 600 600 600)
else
  S1=(); S2=(); S3=(--iters 200 --workers 8 --amp)
  S4=(tests projects -x -q -p no:cacheprovider)
  LIMITS=(170 60 90 150)   # seconds; with the install (~40 s) and start-up, <= 8 minutes
fi

step() {  # step N LIMIT TITLE CMD...: run with a time limit, keep its table
  local n=$1 limit=$2 title=$3; shift 3
  say "step $n: $title (limit ${limit}s)"
  timeout "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  [[ $rc == 124 ]] && say "step $n stopped at its ${limit}s limit"
  [[ $rc != 0 && $rc != 124 ]] && say "step $n failed (exit $rc); last lines:" && tail -5 "$LOG"
  [[ -f "$OUT/step$n.md" ]] && cat "$OUT/step$n.md"
  return 0
}
want 1 && step 1 "${LIMITS[0]}" "paper-scale person-search steps, fp32 / AMP" \
  "$PY" -m bench.gpu_paper_steps "${S1[@]}" --out "$OUT/step1.md"
want 2 && step 2 "${LIMITS[1]}" "re-ID ResNet-50 throughput, reid2 / plain PyTorch" \
  "$PY" -m bench.gpu_reid_throughput "${S2[@]}" --out "$OUT/step2.md"
want 3 && step 3 "${LIMITS[2]}" "synthetic training + evaluation from disk" \
  "$PY" -m bench.gpu_synthetic_train "${S3[@]}" --out "$OUT/step3.md"
if want 4; then
  say "step 4: test suite with CUDA visible (limit ${LIMITS[3]}s)"
  XDIST=()
  [[ $QUICK == 0 ]] && "$PY" -c 'import xdist' 2>/dev/null && XDIST=(-n 8)
  # one GPU: reid2 spawns one process per GPU under CUDA, so the 2-process tests (marker dist) run on gloo
  NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
  DIST_ENV=(); [[ $NGPU -lt 2 ]] && DIST_ENV=(env CUDA_VISIBLE_DEVICES=)
  { timeout "${LIMITS[3]}" "$PY" -m pytest "${S4[@]}" -m "not slow and not dist" "${XDIST[@]}" -rs 2>&1 | tail -30
    echo "--- multi-process tests (${NGPU} GPUs: $([[ $NGPU -lt 2 ]] && echo gloo, CPU || echo NCCL))"
    [[ $QUICK == 0 ]] && timeout 90 "${DIST_ENV[@]}" "$PY" -m pytest tests -m "dist and not slow" -q 2>&1 | tail -5
  } | tee "$OUT/step4.txt" >>"$LOG"
  cat "$OUT/step4.txt"
fi

{ echo "# reid2 GPU check"; echo; cat "$OUT/environment.txt"; echo
  for n in 1 2 3; do [[ -f "$OUT/step$n.md" ]] && { cat "$OUT/step$n.md"; echo; }; done
  [[ -f "$OUT/step4.txt" ]] && { echo '```'; tail -12 "$OUT/step4.txt"; echo '```'; }
  echo; echo "total $(( $(date +%s) - START )) s"; } > "$OUT/gpu_check.md"
say "done: $OUT/gpu_check.md"
