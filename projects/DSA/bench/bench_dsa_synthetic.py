#!/usr/bin/env python
"""DSA-reID on the embedded synthetic Market data: MF-Stream alone vs CSA vs DSA (paper Table 4, CPU-sized).

Equal budget: same config (projects/DSA/configs/synthetic_dsa_tiny.yaml: tiny MF trunk, narrow heads/DSAG-Stream,
DSAP 24×16×16 from the synthetic 128×64 crops' legacy IUV PNGs), iterations, P×K batches, seed and losses; only
MODEL.DSA.MODE differs. All three are tested with the MF-Stream alone ([f_G, f_L]), as in the paper.
Several seeds → mean ± std per model. ``--opts KEY VALUE ...`` overrides the config for every run (one factor at
a time, e.g. ``--opts MODEL.DSA.LOSS.MF_PART_REDUCTION mean``). Usage (≈3 min per run on one core):
  OMP_NUM_THREADS=1 nice -n 15 python -m projects.DSA.bench.bench_dsa_synthetic [--iters 240] [--seeds 0,1,2]
      [--modes none,csa,dsa] [--output output/bench_dsa_synthetic] [--opts KEY VALUE ...]
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
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    p.add_argument("--output", default="output/bench_dsa_synthetic")
    p.add_argument("--modes", default="none,csa,dsa", help="comma-separated subset of none, csa, dsa")
    p.add_argument("--init", default="", help="MODEL.WEIGHTS to start training from; '{seed}' is replaced "
                   "(e.g. a baseline run per seed: a warm MF-Stream, as the paper's ImageNet start)")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config overrides for every run")
    args = p.parse_args()
    from tabulate import tabulate

    from reid2.data.synthetic import generate_all
    from reid2.evaluation import format_mean_std, read_last_evaluation

    datasets = Path(os.environ.setdefault("REID2_DATASETS", str(REPO / "datasets")))
    generate_all(datasets / "synthetic", seed=0, preset=args.preset)
    modes = args.modes.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    unknown = set(modes) - {m for _, m in VARIANTS}
    if unknown:
        raise SystemExit(f"--modes: unknown {sorted(unknown)}; expected none, csa, dsa")
    rows, per_seed = [], []
    for name, mode in [v for v in VARIANTS if v[1] in modes]:
        res = {"reid/Rank-1": [], "reid/Rank-5": [], "reid/mAP": []}
        start = time.time()
        for seed in seeds:
            out = REPO / args.output / f"{mode}_seed{seed}"
            common = ["MODEL.DSA.MODE", mode, "SOLVER.MAX_ITER", str(args.iters),
                      "SOLVER.STEPS", f"({int(args.iters * 0.8)},)", "SEED", str(seed), "OUTPUT_DIR", str(out),
                      *args.opts]
            init = ["MODEL.WEIGHTS", args.init.format(seed=seed)] if args.init else []
            train_net(["--config-file", CONFIG, *common, *init])
            train_net(["--config-file", CONFIG, "--eval-only", "MODEL.WEIGHTS", str(out / "model_final.pth"),
                       *common])
            last = read_last_evaluation(str(out))
            for k in res:
                res[k].append(last[k])
            per_seed.append([mode, seed, *(f"{last[k]:.1f}" for k in res)])
            print(f"{mode} seed {seed}: " + ", ".join(f"{k} {last[k]:.1f}" for k in res), flush=True)
        rows.append([name, *(format_mean_std(res[k], digits=1) for k in res),
                     f"{(time.time() - start) / len(seeds):.0f}"])
    print(f"\nSynthetic Market data ({args.preset} preset), {CONFIG}, {args.iters} iterations, P×K 8×4, "
          f"seeds {args.seeds} (mean ± std), equal budget; overrides {args.opts or 'none'}"
          f"{'; start ' + args.init if args.init else ''}:")
    print(tabulate(rows, headers=["model", "rank-1", "rank-5", "mAP", "s/run"], tablefmt="pipe"))
    print(tabulate(per_seed, headers=["mode", "seed", "rank-1", "rank-5", "mAP"], tablefmt="pipe"))


if __name__ == "__main__":
    main()
