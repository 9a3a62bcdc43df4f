#!/usr/bin/env python
"""SLSR vs LSRO vs the baselines on the embedded synthetic Market data, with equal training budgets.

Setting: the ``default`` synthetic Market-1501 preset (seed 0: 48 training identities, 406 images; 93
queries / 233 gallery images), ``projects/SLSR/configs/synthetic_tiny.yaml`` (tiny backbone, 144x72 → 128x64 crops).
CPU overrides of the paper, documented in that config: a 32x32 DCGAN with base width 32 (paper: 128x128,
64), 60 GAN epochs, 1,200 generated images (the paper's 12,000 : 12,936 ratio would be ~380 : 406).

* stages 1-2 run once (shared by LSRO and SLSR): clustering CNN, k-means k = 3, silhouette for k = 2..5,
  one DCGAN per cluster, generated images;
* stage 3, every method the same iterations / batch / LR schedule / seed, from the same random init (per seed):
  ``plain`` (real images, softmax), ``LSR`` (ε = 0.1), ``LSRO`` and ``SLSR`` (the same generated images and the
  same noise layer: only the generated images' label differs), and both without the noise layer;
  ``--methods`` picks a subset by name, ``--seeds`` the stage-3 seeds (stages 1-2 are shared by all seeds).

Run (one nice'd core; ~2.5 min per stage-3 run on a loaded machine):
  OMP_NUM_THREADS=1 nice -n 15 python -m projects.SLSR.bench.bench_slsr_synthetic --iters 250 \
      --methods plain "LSRO (" "SLSR ("
Writes ``<work-dir>/results.md`` (per seed, then mean ± std over seeds) and ``results.json``.
"""
import reid2  # noqa: F401  (first: it restores the PIL.Image names Detectron2 v0.6 uses, gone in Pillow >= 10)

# isort: split
import argparse
import json
import logging
import os
import time
from pathlib import Path

from bench.common import REPO
from reid2.evaluation import format_mean_std

METHODS = {
    "plain (softmax, real only)": ["SLSR.USE_GENERATED", False, "SLSR.NOISE_LAYER.ENABLED", False],
    "LSR (ε=0.1, real only)": ["SLSR.USE_GENERATED", False, "SLSR.NOISE_LAYER.ENABLED", False,
                               "SLSR.LOSS.REAL_EPSILON", 0.1],
    "LSRO (uniform over all ids, noise layer)": ["SLSR.LOSS.MODE", "lsro"],
    "SLSR (sparse cluster labels, noise layer)": [],
    "LSRO, no noise layer": ["SLSR.LOSS.MODE", "lsro", "SLSR.NOISE_LAYER.ENABLED", False],
    "SLSR, no noise layer": ["SLSR.NOISE_LAYER.ENABLED", False],
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", default=str(REPO / "output" / "bench_slsr"))
    p.add_argument("--iters", type=int, default=400, help="stage-3 iterations of every method")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=None, help="substrings of the method names to run (default: all)")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="extra KEY VALUE config overrides")
    return p.parse_args()


def main():
    args = parse_args()
    os.environ.setdefault("REID2_PROGRESS", "0")
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.logger import setup_logger

    import reid2.projects.slsr  # noqa: F401
    from reid2.config import get_cfg
    from reid2.data.synthetic import generate_all
    from reid2.engine import resolve_device
    from reid2.evaluation import flatten_results
    from reid2.projects.slsr.pipeline import run_pipeline
    from reid2.projects.slsr.trainer import SLSRTrainer

    setup_logger(name="reid2")
    logging.getLogger("d2").setLevel(logging.WARNING)
    logging.getLogger("detectron2").setLevel(logging.WARNING)
    logging.getLogger("fvcore").setLevel(logging.WARNING)
    work = Path(args.work_dir)
    data_root = Path(os.environ.get("REID2_DATASETS", REPO / "datasets"))
    generate_all(data_root / "synthetic", seed=0, preset="default", only="market")
    os.environ["REID2_DATASETS"] = str(data_root)

    def make_cfg(extra, out, seed):
        cfg = get_cfg()
        cfg.merge_from_file(str(REPO / "projects" / "SLSR" / "configs" / "synthetic_tiny.yaml"))
        cfg.merge_from_list([str(x) for x in [*extra, *args.opts, "OUTPUT_DIR", out, "SLSR.WORK_DIR", work,
                                              "SOLVER.MAX_ITER", args.iters, "SEED", seed]])
        resolve_device(cfg)
        cfg.freeze()
        return cfg

    t0 = time.perf_counter()
    run_pipeline(make_cfg([], work, 0), stages=("stage1", "stage2"))
    t_stages = time.perf_counter() - t0
    methods = {n: e for n, e in METHODS.items() if not args.methods or any(m in n for m in args.methods)}
    rows = []
    for seed in args.seeds:
        for name, extra in methods.items():
            out = work / "stage3_runs" / f"m{list(METHODS).index(name)}_s{seed}"
            cfg = make_cfg(extra, out, seed)
            start = time.perf_counter()
            seed_all_rng(seed + 3)  # as the pipeline's stage 3: every method starts from the same weights
            trainer = SLSRTrainer(cfg)
            trainer.resume_or_load(resume=False)
            trainer.train()
            res = flatten_results(trainer._last_eval_results)
            from reid2.projects.slsr.data import slsr_train_dicts
            from reid2.projects.slsr.trainer import validation_top1

            val = validation_top1(trainer.cfg, trainer.model, slsr_train_dicts(trainer.cfg)[1])
            rows.append({"method": name, "seed": seed, "rank1": res["reid/Rank-1"], "mAP": res["reid/mAP"],
                         "val_top1": val, "seconds": time.perf_counter() - start})
            print(f"{name} seed {seed}: rank-1 {res['reid/Rank-1']:.2f} mAP {res['reid/mAP']:.2f} "
                  f"({rows[-1]['seconds']:.0f} s)", flush=True)
    clusters = json.loads((work / "stage1" / "clusters.json").read_text())
    manifest = json.loads((work / "stage2" / "manifest.json").read_text())
    lines = [f"stage-3 budget: {args.iters} iterations x batch 32 each; seeds {args.seeds}; "
             f"stages 1-2: {t_stages:.0f} s (once)",
             f"clusters (k=3): images {[c['num_images'] for c in clusters['clusters']]}, identities in label set "
             f"{[c['num_classes'] for c in clusters['clusters']]} of {clusters['num_classes']}; generated "
             f"{manifest['counts']}", "",
             "| method | seed | rank-1 | mAP | val top-1 | time (s) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['seed']} | {r['rank1']:.2f} | {r['mAP']:.2f} | "
                     f"{r['val_top1']:.2f} | {r['seconds']:.0f} |")
    if len(args.seeds) > 1:
        lines += ["", f"mean ± std (sample std) over seeds {args.seeds}:", "",
                  "| method | rank-1 | mAP | val top-1 |", "|---|---|---|---|"]
        for name in methods:
            sel = [r for r in rows if r["method"] == name]
            cells = [format_mean_std([r[k] for r in sel]) for k in ("rank1", "mAP", "val_top1")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Silhouette (Table 1 analysis, stage-1 CNN features):", "",
              (work / "stage1" / "silhouette.md").read_text().strip(),
              "", f"total {time.perf_counter() - t0:.0f} s"]
    text = "\n".join(lines)
    print("\n" + text)
    (work / "results.md").write_text(text + "\n")
    (work / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
