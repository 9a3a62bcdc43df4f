#!/usr/bin/env python
"""Re-ID on the embedded synthetic Market-format data: untrained vs softmax vs softmax + batch-contrastive.

Equal budget (same iterations, batch size, random batches, seed, tiny backbone); rank-1/mAP on the
synthetic query/gallery split. Usage:
  python -m bench.bench_reid_synthetic [--iters 400] [--output output/bench_reid_synthetic]
"""
import argparse
import os
import time
from pathlib import Path

from bench.common import REPO, train_net

VARIANTS = [
    ("untrained", None),
    ("softmax", ["MODEL.LOSSES.NAMES", "['CrossEntropyLoss']"]),
    ("softmax + batch-contrastive (λ=1)", ["MODEL.LOSSES.NAMES", "['CrossEntropyLoss','BatchContrastiveLoss']"]),
]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=400)
    p.add_argument("--preset", default="default")
    p.add_argument("--output", default="output/bench_reid_synthetic")
    args = p.parse_args()
    from tabulate import tabulate

    from reid2.data.synthetic import generate_all
    from reid2.evaluation import read_last_evaluation

    datasets = Path(os.environ.setdefault("REID2_DATASETS", str(REPO / "datasets")))
    generate_all(datasets / "synthetic", seed=0, preset=args.preset)
    cfg = "configs/synthetic/bc_tiny.yaml"
    rows = []
    for name, overrides in VARIANTS:
        out = REPO / args.output / ("untrained" if overrides is None else str(len(rows)))
        start = time.time()
        common = ["SOLVER.MAX_ITER", str(args.iters), "SOLVER.STEPS", f"({int(args.iters * 0.8)},)",
                  "OUTPUT_DIR", str(out)]
        weights = "random"  # the untrained row, asked for explicitly
        if overrides is not None:
            train_net(["--config-file", cfg, *overrides, *common])
            weights = str(out / "model_final.pth")
        train_net(["--config-file", cfg, "--eval-only", "MODEL.WEIGHTS", weights, *(overrides or []), *common])
        res = read_last_evaluation(str(out))
        rows.append([name, f"{res['reid/Rank-1']:.1f}", f"{res['reid/Rank-5']:.1f}", f"{res['reid/mAP']:.1f}",
                     f"{time.time() - start:.0f}"])
    print(f"\nSynthetic Market-format data ({args.preset} preset), tiny backbone, {args.iters} iterations, "
          "batch 32 random, equal budget:")
    print(tabulate(rows, headers=["model", "rank-1", "rank-5", "mAP", "wall s"], tablefmt="pipe"))


if __name__ == "__main__":
    main()
