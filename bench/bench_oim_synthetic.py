"""End-to-end OIM person search on the synthetic CUHK-SYSU: untrained vs trained tiny model, on CPU.

Writes the default synthetic preset to ``$REID2_DATASETS/synthetic`` when missing, evaluates the untrained
``configs/synthetic/oim_tiny.yaml`` model (the baseline), trains it with ``PersonSearchTrainer`` and
evaluates again. With ``--detector-only`` it also trains the same model with λ_oim = 0 (a trained detector
with an untrained embedding), which separates what OIM learns from what the detector alone brings.

    OMP_NUM_THREADS=2 .venv/bin/python -m bench.bench_oim_synthetic [--iters N] [--detector-only] [--output DIR]
"""
import reid2  # first: it restores the PIL.Image names Detectron2 v0.6 uses, gone in Pillow >= 10

# isort: split
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from detectron2.data import MetadataCatalog
from tabulate import tabulate

import reid2.modeling.meta_arch.person_search  # noqa: F401  (registration)
from bench.common import REPO, evaluate_untrained, train
from reid2.config import get_cfg
from reid2.data.datasets.base import dataset_root
from reid2.data.synthetic import generate_all
from reid2.engine import (
    resolve_device,
)

CONFIG = REPO / "configs" / "synthetic" / "oim_tiny.yaml"


def build_cfg(output_dir, iters=None, *opts):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG))
    cfg.merge_from_list(["OUTPUT_DIR", str(output_dir), "REID2.LOG_PERIOD", 100, *opts])
    if iters:
        cfg.SOLVER.MAX_ITER = iters
        cfg.SOLVER.STEPS = (int(0.8 * iters),)
    resolve_device(cfg)
    return cfg


def row(name, results, seconds):
    search = results.get("search", {})
    det = results["detection"]
    return [name, det["AP"], det["recall"], search.get("mAP", float("nan")), search.get("top1", float("nan")),
            f"{seconds:.0f}"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=None, help="training iterations (default: the config's)")
    parser.add_argument("--detector-only", action="store_true", help="also train with lambda_oim = 0")
    parser.add_argument("--output", default=None, help="output folder (default: a temporary one)")
    args = parser.parse_args()

    synthetic = Path(dataset_root()) / "synthetic"
    start = time.perf_counter()
    generate_all(synthetic, preset="default")  # no-op when already there
    print(f"synthetic data at {synthetic} ({time.perf_counter() - start:.1f} s)")
    output = Path(args.output or tempfile.mkdtemp(prefix="bench_oim_"))

    rows = []
    cfg = build_cfg(output / "untrained", args.iters)
    results, seconds = evaluate_untrained(cfg)
    rows.append(row("untrained (baseline)", results, seconds))
    cfg = build_cfg(output / "oim", args.iters)
    trained, seconds = train(cfg)
    rows.append(row(f"OIM, {cfg.SOLVER.MAX_ITER} iters", trained, seconds))
    if args.detector_only:
        cfg_det = build_cfg(output / "detector_only", args.iters, "MODEL.OIM.LOSS_WEIGHT", 0.0)
        results, seconds = train(cfg_det)
        rows.append(row(f"lambda_oim = 0, {cfg.SOLVER.MAX_ITER} iters", results, seconds))

    print()
    test_set = cfg.DATASETS.TEST[0]
    gallery = cfg.TEST.PERSON_SEARCH.GALLERY_SIZE or MetadataCatalog.get(test_set).gallery_size
    print(f"Person search on {test_set} (gallery {gallery}, "
          f"det_thresh {cfg.TEST.PERSON_SEARCH.DET_THRESH}), device {cfg.MODEL.DEVICE}, "
          f"{torch.get_num_threads()} threads, percentages:")
    print(tabulate(rows, headers=["model", "det AP", "det recall", "search mAP", "top-1", "seconds (train+eval)"],
                   floatfmt=".2f", tablefmt="pipe"))
    base, ours = rows[0], rows[1]
    print(f"trained vs untrained: det AP {ours[1] - base[1]:+.2f} pp, search mAP {ours[3] - base[3]:+.2f} pp")
    print(f"command: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} {sys.executable} "
          f"{' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
