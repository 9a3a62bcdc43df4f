"""Knowledge distillation for person search on the synthetic CUHK-SYSU: Munjal et al.'s Tables 1 and 3, on CPU.

Every model is the tiny C4 of ``configs/synthetic/oim_tiny.yaml`` trained with the same seed and the same number
of iterations. Table 1 (students as wide as the teachers, width 16):

* DET: the detector alone (no identity branch) — the KD_det teacher (the paper's DET_50);
* OIM at λ_oim ∈ {1, 0.3, 0.1} — λ_oim = 1 is the KD_reid teacher (OIM_50);
* OIM λ 1 + KD_det, OIM λ 0.1 + KD_reid, OIM λ 0.1 + KD_det + KD_reid.

Table 3 (compression; students of width 8, ~1/4 of the parameters, the paper's ResNet-18):
OIM λ 1, OIM λ 1 + KD_det (teacher DET), OIM λ 0.1 + KD_reid (teacher OIM λ 1).

Each row also gives the mean training step time (s/it, Detectron2's timer, data loading excluded) so that the
cost of KD_reid (none: a frozen table) and KD_det (a teacher forward pass) can be read against plain OIM.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_kd_synthetic.py [--iters 800] [--output DIR]
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import torch  # noqa: E402
from detectron2.utils.env import seed_all_rng  # noqa: E402
from tabulate import tabulate  # noqa: E402

from bench_oim_synthetic import evaluate_untrained  # noqa: E402
from reid2.config import get_cfg  # noqa: E402
from reid2.data.datasets.base import dataset_root  # noqa: E402
from reid2.data.synthetic import generate_all  # noqa: E402
from reid2.engine.defaults import resolve_device  # noqa: E402
from reid2.engine.person_search import PersonSearchTrainer  # noqa: E402

OIM_CFG = REPO / "configs" / "synthetic" / "oim_tiny.yaml"
KD_CFG = REPO / "configs" / "synthetic" / "kd_oim_tiny.yaml"
DET_CFG = REPO / "configs" / "synthetic" / "det_tiny.yaml"
KD_DET = ["MODEL.KD.HINT.ENABLED", True, "MODEL.KD.RPN.ENABLED", True, "MODEL.KD.RCN.ENABLED", True]


def make_cfg(config, output_dir, iters, opts):
    cfg = get_cfg()
    cfg.merge_from_file(str(config))
    cfg.merge_from_list(["OUTPUT_DIR", str(output_dir), "REID2.LOG_PERIOD", 200, "SOLVER.MAX_ITER", iters,
                         "SOLVER.STEPS", f"({int(0.8 * iters)},)", "SOLVER.CHECKPOINT_PERIOD", iters, *opts])
    resolve_device(cfg)
    return cfg


def train(config, output_dir, iters, opts=()):
    """Train (or reuse a finished run) and evaluate; (results, mean s/it, checkpoint path)."""
    cfg = make_cfg(config, output_dir, iters, list(opts))
    final = Path(output_dir) / "model_final.pth"
    seed_all_rng(cfg.SEED)
    trainer = PersonSearchTrainer(cfg)
    trainer.resume_or_load(resume=True)
    step = float("nan")
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=800, help="training iterations of every model")
    parser.add_argument("--output", default=None, help="output folder; finished runs in it are reused")
    args = parser.parse_args()
    start = time.perf_counter()
    generate_all(Path(dataset_root()) / "synthetic", preset="default")
    out = Path(args.output or tempfile.mkdtemp(prefix="bench_kd_"))
    it = args.iters

    def run(name, config, folder, opts=()):
        print(f"=== {name}", flush=True)
        results, step, weights = train(config, out / folder, it, opts)
        return row(name, results, step), weights

    untrained, _ = evaluate_untrained(make_cfg(OIM_CFG, out / "untrained", it, []))
    table1 = [row("untrained OIM (chance)", untrained, float("nan"))]
    r, det_weights = run("DET (detector only; KD_det teacher)", DET_CFG, "det")
    table1.append(r)
    r, oim1_weights = run("OIM λ_oim 1 (KD_reid teacher)", OIM_CFG, "oim_l1", ["MODEL.OIM.LOSS_WEIGHT", 1.0])
    table1.append(r)
    for lam in (0.3, 0.1):
        table1.append(run(f"OIM λ_oim {lam}", OIM_CFG, f"oim_l{lam}", ["MODEL.OIM.LOSS_WEIGHT", lam])[0])
    kd_det = ["MODEL.META_ARCHITECTURE", "KDPersonSearchRCNN", "MODEL.KD.TEACHER_CONFIG", str(DET_CFG),
              "MODEL.KD.TEACHER_WEIGHTS", det_weights, *KD_DET]
    kd_reid = ["MODEL.KD.REID.LUT_SOURCE", oim1_weights]
    table1.append(run("OIM λ 1 + KD_det", OIM_CFG, "oim_l1_kd_det", ["MODEL.OIM.LOSS_WEIGHT", 1.0, *kd_det])[0])
    table1.append(run("OIM λ 0.1 + KD_reid", KD_CFG, "oim_l0.1_kd_reid", kd_reid)[0])
    table1.append(run("OIM λ 0.1 + KD_det + KD_reid", KD_CFG, "oim_l0.1_kd_both", [*kd_reid, *kd_det])[0])

    small = ["MODEL.PERSON_SEARCH.TINY_WIDTH", 8]
    table3 = [
        run("OIM_8 λ 1", OIM_CFG, "w8_oim_l1", [*small, "MODEL.OIM.LOSS_WEIGHT", 1.0])[0],
        run("OIM_8 λ 1 + KD_det (DET_16)", OIM_CFG, "w8_oim_l1_kd_det",
            [*small, "MODEL.OIM.LOSS_WEIGHT", 1.0, *kd_det])[0],
        run("OIM_8 λ 0.1 + KD_reid (OIM_16 λ 1)", KD_CFG, "w8_oim_l0.1_kd_reid", [*small, *kd_reid])[0],
    ]

    headers = ["model", "search mAP", "top-1", "det AP", "det recall", "s/it (train)"]
    print(f"\nSynthetic CUHK-SYSU (gallery 50), {it} iterations per model, seed 0, {torch.get_num_threads()} "
          f"threads, percentages.\nTable 1 analogue (width-16 students, teachers of width 16):")
    print(tabulate(table1, headers=headers, floatfmt=".2f", tablefmt="pipe"))
    print("\nTable 3 analogue (compression: width-8 students, width-16 teachers):")
    print(tabulate(table3, headers=headers, floatfmt=".2f", tablefmt="pipe"))
    print(f"\nruns in {out}; bench took {time.perf_counter() - start:.0f} s")
    print(f"command: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} {sys.executable} {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
