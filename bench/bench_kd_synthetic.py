"""Knowledge distillation for person search on the synthetic CUHK-SYSU: Munjal et al.'s Tables 1 and 3, on CPU.

Every model is the tiny C4 of ``configs/synthetic/oim_tiny.yaml`` trained with the same seed and the same number
of iterations. Table 1 (students as wide as the teachers, width 16):

* DET: the detector alone (no identity branch) — the KD_det teacher (the paper's DET_50);
* OIM at three λ_oim, HI > MID > LO — HI is the KD_reid teacher (OIM_50);
* OIM λ HI + KD_det, OIM λ LO + KD_reid, OIM λ LO + KD_det + KD_reid;
* the two KD_det rows again with two changes to the soft classification loss ("KD_det*"):
  ``MODEL.KD.SOFT_T2_SCALING`` (L_soft × T², Hinton et al.) and ``MODEL.KD.BG_WEIGHT_MODE sample``. As written
  by Chen et al. and Munjal et al., L_soft at T = 10 has gradients 1/T of the hard loss's, so μ = 0.5 mostly
  halves the detector's classification loss against λ_oim·L_oim, and this random-init model's detector is very
  sensitive to that ratio (see the λ rows). Scaled by T², Chen et al.'s background weight inside the class sum
  then pulls every score down (its optimum is the teacher's background logit + T·ln 1.5); weighting the
  background RoIs instead keeps the emphasis without the bias.

The paper's grid is {1, 0.3, 0.1}. This tiny model trains from random init with a BatchNorm'd embedding, whose
OIM gradient is far larger relative to the detection losses than an ImageNet ResNet's: at λ_oim 1 its detector
never forms (det AP < 1 after 800 iterations, measured), so the default grid is the paper's scaled by 0.1,
{0.1, 0.03, 0.01}, keeping the paper's ratios (teacher λ / KD_reid student λ = 10).

Table 3 (compression; students of width 8, ~1/4 of the parameters, the paper's ResNet-18):
OIM λ HI, OIM λ HI + KD_det and KD_det* (teacher DET), OIM λ LO + KD_reid (teacher OIM λ HI).

Each row also gives the mean training step time (s/it, Detectron2's timer, data loading excluded) so that the
cost of KD_reid (none: a frozen table) and KD_det (a teacher forward pass) can be read against plain OIM. A
finished run found in ``--output`` is reused; its s/it is then the mean of the step times in its metrics.json.

    OMP_NUM_THREADS=2 python -m bench.bench_kd_synthetic [--iters 1500] [--lambdas 0.1 0.03 0.01] [--output DIR]
    OMP_NUM_THREADS=1 python -m bench.bench_kd_synthetic --rows kd_det --seeds 0 1 2   # KD_det* over seeds
"""
import reid2  # noqa: F401  (first: it restores the PIL.Image names Detectron2 v0.6 uses, gone in Pillow >= 10)

# isort: split
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from detectron2.utils.env import seed_all_rng
from tabulate import tabulate

from bench.common import REPO, evaluate_untrained
from reid2.config import get_cfg
from reid2.data.datasets.base import dataset_root
from reid2.data.synthetic import generate_all
from reid2.engine import (
    PersonSearchTrainer,
    resolve_device,
)
from reid2.evaluation import format_mean_std as mean_std

OIM_CFG = REPO / "configs" / "synthetic" / "oim_tiny.yaml"
KD_CFG = REPO / "configs" / "synthetic" / "kd_oim_tiny.yaml"
DET_CFG = REPO / "configs" / "synthetic" / "det_tiny.yaml"
KD_DET = ["MODEL.KD.HINT.ENABLED", True, "MODEL.KD.RPN.ENABLED", True, "MODEL.KD.RCN.ENABLED", True]
# KD_det*: the soft losses at the hard loss's scale, the background weight per RoI (see the docstring).
KD_DET_STAR = ["MODEL.KD.SOFT_T2_SCALING", True, "MODEL.KD.BG_WEIGHT_MODE", "sample"]


def make_cfg(config, output_dir, iters, opts):
    cfg = get_cfg()
    cfg.merge_from_file(str(config))
    cfg.merge_from_list(["OUTPUT_DIR", str(output_dir), "REID2.LOG_PERIOD", 200, "SOLVER.MAX_ITER", iters,
                         "SOLVER.STEPS", f"({int(0.8 * iters)},)", "SOLVER.CHECKPOINT_PERIOD", iters, *opts])
    resolve_device(cfg)
    return cfg


def logged_step_time(output_dir) -> float:
    """Mean of the step times Detectron2 wrote to ``metrics.json`` (nan if none)."""
    path = Path(output_dir) / "metrics.json"
    if not path.is_file():
        return float("nan")
    times = [r["time"] for r in map(json.loads, path.read_text().splitlines()) if "time" in r]
    return sum(times) / len(times) if times else float("nan")


def train(config, output_dir, iters, opts=()):
    """Train (or reuse a finished run) and evaluate; (results, mean s/it, checkpoint path)."""
    cfg = make_cfg(config, output_dir, iters, list(opts))
    final = Path(output_dir) / "model_final.pth"
    seed_all_rng(cfg.SEED)
    trainer = PersonSearchTrainer(cfg)
    trainer.resume_or_load(resume=True)
    step = logged_step_time(output_dir)
    if trainer.start_iter < cfg.SOLVER.MAX_ITER:
        trainer.train()
        step = trainer.storage.history("time").global_avg()
        results = trainer._last_eval_results  # the EvalHook's final evaluation
    else:
        results = PersonSearchTrainer.test(cfg, trainer.model)
    return results, step, str(final)


def row(name, results, step):
    search, det = results.get("search", {}), results["detection"]
    nan = float("nan")
    return [name, search.get("mAP", nan), search.get("top1", nan), det["AP"], det["recall"], step]


def run_seed(args, out, seed):
    """Train every row of one seed into ``out``; (Table 1 rows, Table 3 rows)."""
    it = args.iters
    seed_opt = ["SEED", seed]

    def run(name, config, folder, opts=()):
        print(f"=== seed {seed}: {name}", flush=True)
        results, step, weights = train(config, out / folder, it, [*seed_opt, *opts])
        return row(name, results, step), weights

    hi, mid, lo = args.lambdas
    kd_det_only = args.rows == "kd_det"
    table1 = []
    if not kd_det_only:
        untrained, _ = evaluate_untrained(make_cfg(OIM_CFG, out / "untrained", it, seed_opt))
        table1.append(row("untrained OIM (chance)", untrained, float("nan")))
    r, det_weights = run("DET (detector only; KD_det teacher)", DET_CFG, "det")
    table1.append(r)
    r, teacher_weights = run(f"OIM λ_oim {hi} (KD_reid teacher)", OIM_CFG, f"oim_l{hi}", ["MODEL.OIM.LOSS_WEIGHT", hi])
    table1.append(r)
    kd_det = ["MODEL.META_ARCHITECTURE", "KDPersonSearchRCNN", "MODEL.KD.TEACHER_CONFIG", str(DET_CFG),
              "MODEL.KD.TEACHER_WEIGHTS", det_weights, *KD_DET]
    kd_reid = ["MODEL.KD.REID.LUT_SOURCE", teacher_weights, "MODEL.OIM.LOSS_WEIGHT", lo]
    if kd_det_only:
        table1.append(run(f"OIM λ {hi} + KD_det*", OIM_CFG, f"oim_l{hi}_kd_det_star",
                          ["MODEL.OIM.LOSS_WEIGHT", hi, *kd_det, *KD_DET_STAR])[0])
        return table1, []
    for lam in (mid, lo):
        table1.append(run(f"OIM λ_oim {lam}", OIM_CFG, f"oim_l{lam}", ["MODEL.OIM.LOSS_WEIGHT", lam])[0])
    table1.append(run(f"OIM λ {hi} + KD_det", OIM_CFG, f"oim_l{hi}_kd_det", ["MODEL.OIM.LOSS_WEIGHT", hi, *kd_det])[0])
    table1.append(run(f"OIM λ {lo} + KD_reid", KD_CFG, f"oim_l{lo}_kd_reid", kd_reid)[0])
    table1.append(run(f"OIM λ {lo} + KD_det + KD_reid", KD_CFG, f"oim_l{lo}_kd_both", [*kd_reid, *kd_det])[0])
    table1.append(run(f"OIM λ {hi} + KD_det*", OIM_CFG, f"oim_l{hi}_kd_det_star",
                      ["MODEL.OIM.LOSS_WEIGHT", hi, *kd_det, *KD_DET_STAR])[0])
    table1.append(run(f"OIM λ {lo} + KD_det* + KD_reid", KD_CFG, f"oim_l{lo}_kd_both_star",
                      [*kd_reid, *kd_det, *KD_DET_STAR])[0])

    small = ["MODEL.PERSON_SEARCH.TINY_WIDTH", 8]
    table3 = [] if args.skip_table3 else [
        run(f"OIM_8 λ {hi}", OIM_CFG, f"w8_oim_l{hi}", [*small, "MODEL.OIM.LOSS_WEIGHT", hi])[0],
        run(f"OIM_8 λ {hi} + KD_det (DET_16)", OIM_CFG, f"w8_oim_l{hi}_kd_det",
            [*small, "MODEL.OIM.LOSS_WEIGHT", hi, *kd_det])[0],
        run(f"OIM_8 λ {hi} + KD_det* (DET_16)", OIM_CFG, f"w8_oim_l{hi}_kd_det_star",
            [*small, "MODEL.OIM.LOSS_WEIGHT", hi, *kd_det, *KD_DET_STAR])[0],
        run(f"OIM_8 λ {lo} + KD_reid (OIM_16 λ {hi})", KD_CFG, f"w8_oim_l{lo}_kd_reid", [*small, *kd_reid])[0],
    ]
    return table1, table3


def summary(per_seed_rows, baseline):
    """Mean ± std per row name over the seeds, then each row minus ``baseline`` (paired by seed)."""
    names = [r[0] for r in per_seed_rows[0]]
    cols = range(1, len(per_seed_rows[0][0]))
    by_name = {n: [next(r for r in rows if r[0] == n) for rows in per_seed_rows] for n in names}
    out = [[n, *[mean_std([r[c] for r in by_name[n]]) for c in cols]] for n in names]
    if baseline in by_name:
        for n in names:
            if n != baseline and "DET (" not in n and "untrained" not in n:
                out.append([f"{n} − {baseline} (paired)",
                            *[mean_std([a[c] - b[c] for a, b in zip(by_name[n], by_name[baseline])])
                              for c in cols[:-1]], "-"])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=1500, help="training iterations of every model")
    parser.add_argument("--lambdas", type=float, nargs=3, default=[0.1, 0.03, 0.01], metavar=("HI", "MID", "LO"),
                        help="the λ_oim grid: HI is the teacher's and the KD_det student's, LO the KD_reid student's")
    parser.add_argument("--skip-table3", action="store_true", help="only the width-16 students")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training seeds (SEED); more than one adds mean ± sample std tables (default: 0)")
    parser.add_argument("--rows", choices=["all", "kd_det"], default="all",
                        help="kd_det: only DET, OIM λ HI and OIM λ HI + KD_det* (the KD_det* claim over seeds)")
    parser.add_argument("--output", default=None, help="output folder; finished runs in it are reused")
    args = parser.parse_args()
    start = time.perf_counter()
    generate_all(Path(dataset_root()) / "synthetic", preset="default")
    out = Path(args.output or tempfile.mkdtemp(prefix="bench_kd_"))
    # seed 0 keeps the folder layout of single-seed runs, so their finished runs are reused
    results = [run_seed(args, out if seed == 0 else out / f"seed{seed}", seed) for seed in args.seeds]

    headers = ["model", "search mAP", "top-1", "det AP", "det recall", "s/it (train)"]
    hi = args.lambdas[0]
    print(f"\nSynthetic CUHK-SYSU (gallery 50), {args.iters} iterations per model, {torch.get_num_threads()} "
          "threads, percentages.")
    for seed, (table1, table3) in zip(args.seeds, results):
        print(f"\nSeed {seed}. Table 1 analogue (width-16 students, teachers of width 16):")
        print(tabulate(table1, headers=headers, floatfmt=".2f", tablefmt="pipe"))
        if table3:
            print(f"\nSeed {seed}. Table 3 analogue (compression: width-8 students, width-16 teachers):")
            print(tabulate(table3, headers=headers, floatfmt=".2f", tablefmt="pipe"))
    if len(args.seeds) > 1:
        print(f"\nMean ± sample std over seeds {', '.join(map(str, args.seeds))}, Table 1 analogue:")
        print(tabulate(summary([t1 for t1, _ in results], f"OIM λ_oim {hi} (KD_reid teacher)"), headers=headers,
                       tablefmt="pipe"))
        if results[0][1]:
            print("\nMean ± sample std, Table 3 analogue:")
            print(tabulate(summary([t3 for _, t3 in results], f"OIM_8 λ {hi}"), headers=headers, tablefmt="pipe"))
    print(f"\nruns in {out}; bench took {time.perf_counter() - start:.0f} s")
    print(f"command: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} {sys.executable} {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
