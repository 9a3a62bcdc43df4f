#!/usr/bin/env python
"""Train one config with several seeds and report each metric's mean ± std (papers' "average of N runs").

Each seed trains with tools/train_net.py into OUTPUT_DIR/seed<k> (SEED k), in its own process; the final
evaluation is read from that folder's metrics.json. A seed whose final evaluation (at MAX_ITER) is there is
skipped, and one that was interrupted resumes from its last checkpoint, so the command is resumable. The
summary (per-seed values, mean, sample std) is printed and written to OUTPUT_DIR/seeds_summary.json.

Examples:
  python tools/run_seeds.py --config-file configs/market1501/bc_r50.yaml --seeds 0 1 2 3 4
  python tools/run_seeds.py --config-file configs/market1501/bc_softmax_r50.yaml --metric reid/mAP reid/Rank-1
  python tools/run_seeds.py --config-file configs/synthetic/bc_tiny.yaml --seeds 0 1 SOLVER.MAX_ITER 100
Trailing KEY VALUE pairs go to every training run (OUTPUT_DIR among them sets the parent folder); they start
at the first upper-case KEY (or after "--").
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

TRAIN_NET = Path(__file__).resolve().parent / "train_net.py"
SUMMARY = "seeds_summary.json"
CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*$")  # e.g. SOLVER.MAX_ITER, OUTPUT_DIR


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--metric", nargs="+", default=[], metavar="NAME",
                   help="metrics to summarise, e.g. reid/mAP (default: every metric of the final evaluation)")
    p.add_argument("--num-gpus", type=int, default=1, help="processes per run (passed to train_net.py)")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="passed to train_net.py (and used to read the config)")
    return p


def split_opts(argv):
    """(tool arguments, KEY VALUE overrides): the overrides start at "--" or the first config KEY, so that
    ``--seeds 0 1 SOLVER.MAX_ITER 100`` keeps the seeds apart from the overrides."""
    for i, token in enumerate(argv):
        if token == "--":
            return argv[:i], argv[i + 1:]
        if CONFIG_KEY.match(token):
            return argv[:i], argv[i:]
    return argv, []


def final_evaluation(seed_dir, max_iter):
    """The evaluation written at the end of training (iteration >= MAX_ITER - 1), or None."""
    from reid2.evaluation import read_last_evaluation

    last = read_last_evaluation(seed_dir)
    if last is None or last.get("iteration") is None or last["iteration"] < max_iter - 1:
        return None
    return {k: v for k, v in last.items() if k not in ("evaluation", "iteration")}


def train_seed(args, seed, seed_dir):
    cmd = [sys.executable, str(TRAIN_NET), "--config-file", args.config_file, "--num-gpus", str(args.num_gpus)]
    for module in args.imports:
        cmd += ["--import", module]
    if os.path.exists(os.path.join(seed_dir, "last_checkpoint")):
        cmd.append("--resume")  # an interrupted run continues
    cmd += [*args.opts, "SEED", str(seed), "OUTPUT_DIR", seed_dir]
    print(f"[run_seeds] seed {seed}: {' '.join(cmd)}", flush=True)
    subprocess.run(cmd, check=True)


def summarize(per_seed, metrics):
    """{metric: {"mean", "std" (sample, 0 for one seed), "values" in seed order}}."""
    if not metrics:
        metrics = sorted(set.intersection(*(set(r) for r in per_seed.values())))
    out = {}
    for m in metrics:
        missing = [s for s, r in per_seed.items() if m not in r]
        if missing:
            raise SystemExit(f"run_seeds: metric {m!r} is not in the final evaluation of seed(s) {missing}; "
                             f"available: {sorted(next(iter(per_seed.values())))}")
        values = [per_seed[s][m] for s in per_seed]
        out[m] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                  "values": values}
    return out


def main(argv=None):
    own, opts = split_opts(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(own)
    args.opts = opts
    if len(args.opts) % 2:
        raise SystemExit(f"run_seeds: config overrides must be KEY VALUE pairs, got {args.opts}")
    if len(set(args.seeds)) != len(args.seeds):
        raise SystemExit(f"run_seeds: --seeds repeats a seed: {args.seeds}")
    from reid2.config import load_config

    cfg = load_config(args.config_file, args.opts, args.imports)
    root, max_iter = cfg.OUTPUT_DIR, cfg.SOLVER.MAX_ITER
    per_seed = {}
    for seed in args.seeds:
        seed_dir = os.path.join(root, f"seed{seed}")
        result = final_evaluation(seed_dir, max_iter)
        if result is None:
            train_seed(args, seed, seed_dir)
            result = final_evaluation(seed_dir, max_iter)
            if result is None:
                raise SystemExit(f"run_seeds: seed {seed} trained but {seed_dir}/metrics.json has no final "
                                 f"evaluation (iteration {max_iter}); is TEST.EVAL_PERIOD or DATASETS.TEST empty?")
        else:
            print(f"[run_seeds] seed {seed}: finished earlier, read from {seed_dir}", flush=True)
        per_seed[seed] = result
    summary = summarize(per_seed, args.metric)
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, SUMMARY)
    with open(path, "w") as f:
        json.dump({"config_file": args.config_file, "opts": args.opts, "seeds": args.seeds,
                   "metrics": summary}, f, indent=1)
    width = max(len(m) for m in summary)
    print(f"{args.config_file}: {len(args.seeds)} seeds {args.seeds}")
    for m, s in summary.items():
        print(f"  {m:<{width}}  {s['mean']:.2f} ± {s['std']:.2f}   ({', '.join(f'{v:.2f}' for v in s['values'])})")
    print(f"summary written to {path}")
    return summary


if __name__ == "__main__":
    main()
