#!/usr/bin/env python
"""Unsupervised re-ID on the synthetic Market data: the starting model, PUL and RSL after the same rounds.

Setting (a CPU-sized analogue of the paper's DukeMTMC-reID → Market-1501 transfer):

* target (unlabelled for the methods): the embedded synthetic Market-1501, ``default`` preset, seed 0
  (48 training identities, 406 images, 6 cameras; 93 queries / 233 gallery images);
* source (labelled): a differently seeded synthetic Market set (seed 1: other people, other camera styles),
  ``--source-ids`` identities; the starting model is the tiny backbone trained on it with softmax
  (ImageNet weights do not exist for the tiny backbone, and a randomly initialised one clusters at chance);
* PUL and RSL: ``configs/synthetic_{pul,rsl}_tiny.yaml`` of this project from the start model, ``--rounds`` rounds
  (same model, optimiser, augmentation and M = 48 clusters), each ``--seeds`` (the methods' SEED: k-means, batches,
  classifier initialisation) and each ``--round-length``: ``epochs`` (``RSL.EPOCHS_PER_ROUND`` ``--epochs`` of the
  round's training images: PUL's selected images, all images for RSL; the papers' protocol) and / or ``iters``
  (a fixed ``--iters`` iterations per round for both: equal iterations);
* ablation ``RSL-nosoft``: RSL with ``RSL.SOFT_WEIGHT 0`` (the unselected images still get soft labels, weight 0);
* reference row: the same model, optimiser and budget with the target's true labels (softmax), when ``--oracle``.

Run from the repository root (one nice'd core; each method run ~35 s on a quiet machine):
  OMP_NUM_THREADS=1 nice -n 15 python -m projects.UnsupervisedRSL.bench.bench_rsl_synthetic
Writes ``<work-dir>/results.md`` (the tables) and ``results.json``.
"""
import reid2  # noqa: F401  (first: it restores the PIL.Image names Detectron2 v0.6 uses, gone in Pillow >= 10)

# isort: split
import argparse
import json
import os
import time
from pathlib import Path

from bench.common import REPO
from reid2.evaluation import format_mean_std

RSL_CFG = "projects/UnsupervisedRSL/configs/synthetic_rsl_tiny.yaml"
PUL_CFG = "projects/UnsupervisedRSL/configs/synthetic_pul_tiny.yaml"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", default=str(REPO / "output" / "bench_rsl"))
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--iters", type=int, default=100, help="iterations per round of --round-length iters")
    p.add_argument("--epochs", type=int, default=8, help="RSL.EPOCHS_PER_ROUND of --round-length epochs")
    p.add_argument("--round-length", default="epochs,iters", help="comma-separated: epochs, iters")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated SEED values of the method runs")
    p.add_argument("--source-ids", type=int, default=96)
    p.add_argument("--source-iters", type=int, default=400)
    p.add_argument("--lambda", dest="lam", type=float, default=None,
                   help="override RSL.LAMBDA of both methods (the configs: 0.97)")
    p.add_argument("--oracle", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--methods", default="PUL,RSL",
                   help="comma-separated subset of PUL, RSL, RSL-nosoft (ablation: RSL.SOFT_WEIGHT 0)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for both PUL and RSL")
    return p.parse_args()


def main():
    args = parse_args()
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.logger import setup_logger

    import reid2.projects.rsl  # noqa: F401
    from reid2.config import get_cfg
    from reid2.data.datasets import register_reid_dataset
    from reid2.data.datasets.market1501 import load_market1501
    from reid2.data.synthetic import generate_all, generate_market
    from reid2.engine import ReIDTrainer, resolve_device
    from reid2.evaluation import flatten_results
    from reid2.projects.rsl import RSLTrainer

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    setup_logger(str(work / "log.txt"), name="detectron2")
    setup_logger(str(work / "log.txt"), name="reid2")
    setup_logger(str(work / "log.txt"), name="fvcore")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    t0 = time.perf_counter()

    # ---- data -----------------------------------------------------------------------------------
    generate_all(work / "datasets" / "synthetic", seed=0, preset="default", only="market")
    os.environ["REID2_DATASETS"] = str(work / "datasets")
    src = generate_market(work / "source", num_train_ids=args.source_ids, num_test_ids=8, num_cameras=6, seed=1,
                          num_distractors=0, num_junk=0, with_iuv=False)
    register_reid_dataset("rsl_bench_source_train", lambda: load_market1501(str(src), "train"))

    def base_cfg(path, out, *opts):
        cfg = get_cfg()
        cfg.merge_from_file(str(REPO / path))
        cfg.merge_from_list(["OUTPUT_DIR", str(out), "REID2.DEVICE", "cpu", *opts])
        resolve_device(cfg)
        cfg.freeze()
        seed_all_rng(cfg.SEED)  # as tools/train_net.py's default_setup: reproducible initialisations
        return cfg

    def eval_row(results):
        flat = flatten_results(results)
        get = lambda m: next(float(v) for k, v in flat.items() if k.endswith(f"reid/{m}"))
        return {"Rank-1": get("Rank-1"), "Rank-5": get("Rank-5"), "mAP": get("mAP")}

    rows, per_round = [], {}

    # ---- the starting model: softmax on the labelled source set --------------------------------
    src_out = work / "source_model"
    src_weights = src_out / "model_final.pth"
    if not src_weights.is_file():
        cfg = base_cfg("configs/synthetic/reid_tiny.yaml", src_out, "DATASETS.TRAIN", "('rsl_bench_source_train',)",
                       "SOLVER.MAX_ITER", str(args.source_iters), "SOLVER.STEPS", f"({int(args.source_iters * 0.8)},)",
                       "SOLVER.CHECKPOINT_PERIOD", "100000")
        trainer = ReIDTrainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
    # evaluated as the methods evaluate: pooled feature, cosine
    rsl_cfg = base_cfg(RSL_CFG, work / "start_eval", "MODEL.WEIGHTS", str(src_weights))
    model = RSLTrainer.build_model(rsl_cfg)
    DetectionCheckpointer(model).load(str(src_weights))
    rows.append({"method": "starting model (source-trained, direct transfer)", "rounds": 0,
                 **eval_row(RSLTrainer.test(rsl_cfg, model))})
    t_src = time.perf_counter() - t0

    # ---- how λ selects with the starting model's features (label statistics only, no training) ------
    from reid2.data import get_reid_train_dicts
    from reid2.projects.rsl import RoundLoader, compute_round_labels, label_free_records, report_round_quality

    dicts = get_reid_train_dicts(rsl_cfg.DATASETS.TRAIN)
    loader = RoundLoader(rsl_cfg, label_free_records(dicts))
    feats = loader.extract_features(model, rsl_cfg.RSL.FEATURE)
    true = [d["pid"] for d in dicts]  # reporting only
    lam_rows = []
    for lam in (0.85, 0.9, 0.95, 0.97, 0.98):
        row = {"lambda": lam}
        for name, path in (("PUL", PUL_CFG),
                           ("RSL", RSL_CFG)):
            c = base_cfg(path, work / "unused", "RSL.LAMBDA", str(lam))
            lab = compute_round_labels(c, feats, loader.cameras, 0)
            row[name] = {"reliable": lab.stats["num_reliable"], **report_round_quality(lab, true)}
        lam_rows.append(row)

    # ---- PUL and RSL -------------------------------------------------------------------------------
    common = ["RSL.ROUNDS", str(args.rounds), "MODEL.WEIGHTS", str(src_weights), "SOLVER.CHECKPOINT_PERIOD", "100000",
              *args.opts]
    if args.lam is not None:
        common += ["RSL.LAMBDA", str(args.lam)]
    lengths = {"epochs": ["RSL.EPOCHS_PER_ROUND", str(args.epochs)],
               "iters": ["RSL.EPOCHS_PER_ROUND", "0", "RSL.ITERS_PER_ROUND", str(args.iters)]}
    runs, timings = [], {}
    for mode in args.round_length.split(","):
        for seed in [int(x) for x in args.seeds.split(",")]:
            for name, path, extra in (("PUL", PUL_CFG, []),
                                      ("RSL", RSL_CFG, []),
                                      ("RSL-nosoft", RSL_CFG, ["RSL.SOFT_WEIGHT", "0.0"])):
                if name not in args.methods.split(","):
                    continue
                start = time.perf_counter()
                cfg = base_cfg(path, work / f"{name.lower()}_{mode}_s{seed}", *common, *lengths[mode],
                               "SEED", str(seed), *extra)
                trainer = RSLTrainer(cfg)
                trainer.resume_or_load(resume=False)
                trainer.train()
                hist = trainer.round_hook.history
                per_round[f"{name} {mode} seed {seed}"] = hist
                runs.append({"method": name, "round_length": mode, "seed": seed, "iterations": trainer.iter,
                             "Rank-1": hist[-1]["Rank-1"], "Rank-5": hist[-1]["reid/Rank-5"], "mAP": hist[-1]["mAP"]})
                timings[f"{name} {mode} s{seed}"] = time.perf_counter() - start
                print(runs[-1], f"{timings[f'{name} {mode} s{seed}']:.0f} s", flush=True)
    method_opts = [*common, *lengths["iters"]]

    # ---- reference: the same budget with the true target labels ---------------------------------
    if args.oracle:
        start = time.perf_counter()
        total = args.rounds * args.iters
        # the methods' model, optimiser and budget, trained with the true target identities (softmax);
        # reid2's INPUT.REID augmentation (the RSL.AUG keys only act in RSLTrainer)
        cfg = base_cfg(RSL_CFG, work / "oracle", *method_opts,
                       "MODEL.META_ARCHITECTURE", "ReIDBaseline", "REID2.TRAINER", "ReIDTrainer",
                       "MODEL.LOSSES.NAMES", "['CrossEntropyLoss']", "MODEL.REID.NUM_CLASSES", "0",
                       "DATALOADER.SAMPLER_TRAIN", "RandomSampler", "SOLVER.MAX_ITER", str(total))
        trainer = ReIDTrainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        rows.append({"method": "supervised on target (true labels; upper reference)", "rounds": args.rounds,
                     **eval_row(ReIDTrainer.test(cfg, trainer.model))})
        timings["supervised"] = time.perf_counter() - start

    # ---- tables ------------------------------------------------------------------------------------
    c = rsl_cfg
    lines = [f"Target (unlabelled for the methods): synthetic Market, default preset, seed 0 (406 training images, "
             f"48 ids, 6 cameras; test 93 queries / 233 gallery). Starting model: tiny backbone trained with "
             f"softmax on a seed-1 synthetic Market set ({args.source_ids} ids, {args.source_iters} iters). "
             f"PUL and RSL: {args.rounds} rounds of {args.epochs} epochs of the round's training images (epochs) or "
             f"of {args.iters} iterations (iters), batch {c.SOLVER.IMS_PER_BATCH}, {c.SOLVER.OPTIMIZER} "
             f"{c.SOLVER.BASE_LR}, M = {c.RSL.NUM_CLUSTERS}, λ = {args.lam or c.RSL.LAMBDA}, t = {c.RSL.TEMPERATURE}, "
             f"seeds {args.seeds}; projects/UnsupervisedRSL/configs/synthetic_{{pul,rsl}}_tiny.yaml. Rank-1 / mAP (%): "
             "cosine on the pooled feature, after the last round; mean ± std (ddof 1) over the seeds.", "",
             "| method | round length | seeds | iterations | Rank-1 | mAP |", "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | - | - | {r['rounds']} rounds | {r['Rank-1']:.2f} | {r['mAP']:.2f} |")

    groups = {}
    for r in runs:
        groups.setdefault((r["method"], r["round_length"]), []).append(r)
    for (name, mode), rs in groups.items():
        def ms(key, rs=rs):
            return format_mean_std([r[key] for r in rs])
        lines.append(f"| {name} | {mode} | {len(rs)} | {ms('iterations')} | {ms('Rank-1')} | {ms('mAP')} |")
    lines += ["", "Per run:", "", "| method | round length | seed | iterations | Rank-1 | mAP |",
              "|---|---|---:|---:|---:|---:|"]
    for r in runs:
        lines.append(f"| {r['method']} | {r['round_length']} | {r['seed']} | {r['iterations']} | {r['Rank-1']:.2f} | "
                     f"{r['mAP']:.2f} |")
    lines += ["", "Per round (labels at the round's start, Rank-1 / mAP at its end):", "",
              "| run | round | iterations | reliable | soft | purity | NMI | soft-label acc | Rank-1 | mAP |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, hist in per_round.items():
        for h in hist:
            soft_acc = f"{h['soft_acc']:.3f}" if "soft_acc" in h else "-"
            lines.append(f"| {name} | {h['round']} | {h['iterations']} | {h['num_reliable']} | {h['num_soft']} | "
                         f"{h['purity']:.3f} | {h['nmi']:.3f} | {soft_acc} | {h['Rank-1']:.2f} | {h['mAP']:.2f} |")
    lines += ["", f"Round-0 labels of the starting model's features against λ ({len(dicts)} training images; "
              "the configs use λ = 0.97):", "",
              "| λ | PUL reliable | PUL purity | RSL reliable | RSL purity | RSL NMI | RSL soft-label acc |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in lam_rows:
        p, q = r["PUL"], r["RSL"]
        lines.append(f"| {r['lambda']} | {p['reliable']} | {p['purity']:.3f} | {q['reliable']} | {q['purity']:.3f} | "
                     f"{q['nmi']:.3f} | {q.get('soft_acc', float('nan')):.3f} |")
    total = time.perf_counter() - t0
    lines += ["", f"Wall time {total / 60:.1f} min (source model + its eval {t_src:.0f} s; " +
              ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ")."]
    text = "\n".join(lines)
    (work / "results.md").write_text(text + "\n")
    (work / "results.json").write_text(json.dumps({"rows": rows, "runs": runs, "per_round": per_round,
                                                   "lambda": lam_rows, "args": vars(args)}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
