#!/usr/bin/env python
"""Re-ID on the embedded synthetic Market-format data: untrained vs softmax vs softmax + batch-contrastive.

Equal budget (same iterations, batch size, random batches, tiny backbone) and the same seeds for every
variant; each trained variant is run once per seed with tools/run_seeds.py and reported as mean ± std of
rank-1/mAP on the synthetic query/gallery split. Usage:
  python -m bench.bench_reid_synthetic [--iters 300] [--seeds 0 1 2] [--output output/bench_reid_synthetic]
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.common import REPO, train_net

VARIANTS = [  # (name, config, overrides)
    ("softmax", "configs/synthetic/bc_softmax_tiny.yaml", []),
    ("softmax + batch-contrastive (λ=1)", "configs/synthetic/bc_tiny.yaml", []),
    ("  same, centers at the solver's lr (Adam 0.003)", "configs/synthetic/bc_tiny.yaml",
     ["MODEL.LOSSES.BATCH_CONTRASTIVE.CENTER_LR", "solver"]),
    ("  same, Eq. 8 gradient", "configs/synthetic/bc_tiny.yaml", ["MODEL.LOSSES.BATCH_CONTRASTIVE.GRADIENT", "eq8"]),
]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--preset", default="default")
    p.add_argument("--output", default="output/bench_reid_synthetic")
    args = p.parse_args()
    from tabulate import tabulate

    from reid2.data.synthetic import generate_all
    from reid2.evaluation import read_last_evaluation

    datasets = Path(os.environ.setdefault("REID2_DATASETS", str(REPO / "datasets")))
    generate_all(datasets / "synthetic", seed=0, preset=args.preset)
    common = ["SOLVER.MAX_ITER", str(args.iters), "SOLVER.STEPS", f"({int(args.iters * 0.8)},)"]
    out = REPO / args.output / "untrained"
    train_net(["--config-file", VARIANTS[0][1], "--eval-only", "MODEL.WEIGHTS", "random", *common,
               "OUTPUT_DIR", str(out)])
    res = read_last_evaluation(str(out))
    rows = [["untrained (seed 0)", f"{res['reid/Rank-1']:.1f}", f"{res['reid/mAP']:.1f}"]]
    for i, (name, cfg, overrides) in enumerate(VARIANTS):
        out = REPO / args.output / str(i)
        subprocess.run([sys.executable, str(REPO / "tools/run_seeds.py"), "--config-file", cfg, "--seeds",
                        *map(str, args.seeds), "--metric", "reid/Rank-1", "reid/mAP", "--", *overrides, *common,
                        "OUTPUT_DIR", str(out)], cwd=REPO, check=True, capture_output=True)
        m = json.loads((out / "seeds_summary.json").read_text())["metrics"]
        rows.append([name, *(f"{m[k]['mean']:.1f} ± {m[k]['std']:.1f}" for k in ("reid/Rank-1", "reid/mAP"))])
    print(f"\nSynthetic Market-format data ({args.preset} preset), tiny backbone, {args.iters} iterations, batch 32 "
          f"random, equal budget, seeds {args.seeds} (mean ± sample std):")
    print(tabulate(rows, headers=["model", "rank-1", "mAP"], tablefmt="pipe"))


if __name__ == "__main__":
    main()
