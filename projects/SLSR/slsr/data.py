"""Stage-3 training data: the real training set (minus one validation image per identity) plus the
generated images of stage 2's manifest, marked with ``pid = -(cluster + 1)``."""
import json
import logging
import os

import numpy as np
import torch

from reid2.data import ReIDImageDataset, build_reid_transforms, get_reid_train_dicts, reid_collate

from .paths import stage_paths
from .targets import generated_pid

__all__ = ["load_generated", "holdout_validation", "slsr_train_dicts", "mean_pixel"]

logger = logging.getLogger("reid2.slsr")


def load_generated(manifest_path):
    """Dataset dicts of the generated images (absolute paths; ``pid`` < 0 encodes the cluster)."""
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"SLSR: generated-image manifest {manifest_path} not found; run stage 2 (projects/SLSR/tools/train_net.py) "
            "or set SLSR.WORK_DIR to the pipeline's output folder (or SLSR.USE_GENERATED False)") from None
    root = os.path.dirname(os.path.abspath(manifest_path))
    dicts = []
    for e in manifest["images"]:
        path = os.path.join(root, e["file_name"])
        dicts.append({"file_name": path, "pid": generated_pid(e["cluster"]), "camid": -1, "split": "train",
                      "image_id": os.path.splitext(os.path.basename(path))[0], "slsr_cluster": int(e["cluster"])})
    if dicts and not os.path.isfile(dicts[-1]["file_name"]):
        raise FileNotFoundError(f"SLSR: {dicts[-1]['file_name']} listed in {manifest_path} is missing")
    return dicts


def holdout_validation(dicts, seed=0):
    """(train, val): one random image of every identity with >= 2 images goes to ``val``."""
    rng = np.random.default_rng(seed)
    by_pid = {}
    for i, d in enumerate(dicts):
        by_pid.setdefault(d["pid"], []).append(i)
    held = {int(rng.choice(idx)) for pid, idx in sorted(by_pid.items()) if len(idx) >= 2}
    return [d for i, d in enumerate(dicts) if i not in held], [d for i, d in enumerate(dicts) if i in held]


def slsr_train_dicts(cfg):
    """(train dicts, validation dicts) of stage 3, deterministic given ``cfg``."""
    real = get_reid_train_dicts(cfg.DATASETS.TRAIN)
    if cfg.SLSR.HOLDOUT_VAL:
        real, val = holdout_validation(real, cfg.SEED if cfg.SEED >= 0 else 0)
    else:
        val = []
    gen = load_generated(stage_paths(cfg).manifest) if cfg.SLSR.USE_GENERATED else []
    return real + gen, val


def mean_pixel(cfg, dicts):
    """(3,) per-channel mean of ``dicts``' images as the network sees them at test time (resized, normalised).
    Every process reads all of ``dicts`` (no sharding), so all get the same value."""
    if not dicts:
        raise ValueError("SLSR.MEAN_PIXEL_CENTERING: no training image to compute the mean pixel from")
    total, count = torch.zeros(3, dtype=torch.float64), 0
    dataset = ReIDImageDataset(dicts, build_reid_transforms(cfg, is_train=False))
    loader = torch.utils.data.DataLoader(dataset, batch_size=max(1, cfg.TEST.IMS_PER_BATCH), shuffle=False,
                                         num_workers=cfg.DATALOADER.NUM_WORKERS, collate_fn=reid_collate)
    for batch in loader:
        x = batch["images"].double()
        total += x.sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    return (total / count).float()
