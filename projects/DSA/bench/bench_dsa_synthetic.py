#!/usr/bin/env python
"""DSA-reID on the embedded synthetic Market data: MF-Stream alone vs CSA vs DSA (paper Table 4, CPU-sized).

Equal budget: same config (projects/DSA/configs/synthetic_dsa_tiny.yaml: tiny MF trunk, narrow heads/DSAG-Stream,
DSAP 24×16×16 from the synthetic 128×64 crops' legacy IUV PNGs), iterations, P×K batches, seed and losses; only
MODEL.DSA.MODE differs. All three are tested with the MF-Stream alone ([f_G, f_L]), as in the paper.
Usage (≈10 min on one core):
  OMP_NUM_THREADS=1 nice -n 15 python -m bench.bench_dsa_synthetic [--iters 240] [--modes none,csa,dsa]
      [--output output/bench_dsa_synthetic]
"""
import argparse
import os
import time
from pathlib import Path

from bench.common import (
    REPO,
    train_net,  # tools/train_net.py in a subprocess
)

VARIANTS = [
    ("baseline (MF-Stream alone, two branches)", "none"),
    ("CSA (coarse part crops → DSAG)", "csa"),
    ("DSA (DSAP images → DSAG)", "dsa"),
]
CONFIG = "projects/DSA/configs/synthetic_dsa_tiny.yaml"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=240)
    p.add_argument("--preset", default="default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="output/bench_dsa_synthetic")
    p.add_argument("--modes", default="none,csa,dsa", help="comma-separated subset of none, csa, dsa")
    args = p.parse_args()
    from tabulate import tabulate

    from reid2.data.synthetic import generate_all
    from reid2.evaluation import read_last_evaluation

    datasets = Path(os.environ.setdefault("REID2_DATASETS", str(REPO / "datasets")))
    generate_all(datasets / "synthetic", seed=0, preset=args.preset)
    rows = []
    modes = args.modes.split(",")
    unknown = set(modes) - {m for _, m in VARIANTS}
    if unknown:
        raise SystemExit(f"--modes: unknown {sorted(unknown)}; expected none, csa, dsa")
    for name, mode in [v for v in VARIANTS if v[1] in modes]:
        out = REPO / args.output / mode
        start = time.time()
        common = ["MODEL.DSA.MODE", mode, "SOLVER.MAX_ITER", str(args.iters),
                  "SOLVER.STEPS", f"({int(args.iters * 0.8)},)", "SEED", str(args.seed), "OUTPUT_DIR", str(out)]
        train_net(["--config-file", CONFIG, *common])
        train_net(["--config-file", CONFIG, "--eval-only", "MODEL.WEIGHTS", str(out / "model_final.pth"), *common])
        res = read_last_evaluation(str(out))
        rows.append([name, f"{res['reid/Rank-1']:.1f}", f"{res['reid/Rank-5']:.1f}", f"{res['reid/mAP']:.1f}",
                     f"{time.time() - start:.0f}"])
    print(f"\nSynthetic Market data ({args.preset} preset), {CONFIG}, {args.iters} iterations, P×K 8×4, "
          f"seed {args.seed}, equal budget; test = MF-Stream features [f_G, f_L]:")
    print(tabulate(rows, headers=["model", "rank-1", "rank-5", "mAP", "seconds"], tablefmt="pipe"))


if __name__ == "__main__":
    main()
