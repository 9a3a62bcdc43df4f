"""The round's training data: label-free image records, the paper's augmentation, deterministic batches.

The loader only ever sees ``(file_name, camid)`` of the training images: the dataset dicts' ``pid`` (and
``orig_pid`` / ``image_id``) are dropped when it is built. Batch ``i`` of the run is a function of
(``SEED``, ``i``, rank) only, so a resumed run draws exactly the batches the uninterrupted run would.
"""
import numpy as np
import torch
import torchvision.transforms as T
from detectron2.utils import comm

from reid2.data import NORMALIZATIONS, build_reid_transforms
from reid2.evaluation import compute_features
from reid2.utils.files import read_image_rgb
from reid2.utils.modules import unwrap_model

__all__ = ["label_free_records", "build_rsl_train_transform", "RoundLoader"]


def label_free_records(dicts):
    """What the unsupervised method may know about a training image: its file and its camera."""
    return [{"file_name": d["file_name"], "camid": int(d.get("camid", 0))} for d in dicts]


def build_rsl_train_transform(cfg):
    """RSL.AUG: resize → random shift (± SHIFT of the size) and rotation (± ROTATION°) → tensor → normalise."""
    if not cfg.RSL.AUG.ENABLED:
        return build_reid_transforms(cfg, is_train=True)
    mean, std = NORMALIZATIONS[cfg.INPUT.REID.NORMALIZE]
    shift = float(cfg.RSL.AUG.SHIFT)
    return T.Compose([
        T.Resize(tuple(cfg.INPUT.REID.SIZE_TRAIN), interpolation=T.InterpolationMode.BICUBIC),
        T.RandomAffine(degrees=float(cfg.RSL.AUG.ROTATION), translate=(shift, shift)),
        T.ToTensor(), T.Normalize(mean, std)])


class RoundLoader:
    """Infinite iterable of training batches over the current round's re-training set.

    ``set_round(labels)`` installs a :class:`rsl.labels.RoundLabels`; ``iteration`` (set by the round hook
    before each step) selects the batch. Images are decoded once and kept in memory.
    """

    def __init__(self, cfg, records):
        self.records = records
        self.cameras = np.asarray([r["camid"] for r in records])
        self.train_transform = build_rsl_train_transform(cfg)
        self.test_transform = build_reid_transforms(cfg, is_train=False)
        self.batch_size = cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size()
        self.seed = cfg.SEED if cfg.SEED >= 0 else 0
        self.labels = None
        self.iteration = 0
        self._cache = {}

    def __len__(self):
        return len(self.records)

    def image(self, index):
        if index not in self._cache:
            self._cache[index] = read_image_rgb(self.records[index]["file_name"])
        return self._cache[index]

    def set_round(self, labels):
        self.labels = labels

    def batch(self, iteration):
        if self.labels is None:
            raise RuntimeError("RoundLoader: no round labels installed (the round hook sets them)")
        rng = np.random.default_rng([self.seed, int(iteration), comm.get_rank()])
        pool = np.flatnonzero(self.labels.use)
        idx = rng.choice(pool, self.batch_size, replace=len(pool) < self.batch_size)
        torch.manual_seed(int(rng.integers(2**31)))  # augmentation and dropout of this step
        return {
            "images": torch.stack([self.train_transform(self.image(int(i))) for i in idx]),
            "targets": torch.as_tensor(self.labels.labels[idx], dtype=torch.long),
            "soft_targets": torch.as_tensor(self.labels.soft[idx]),
            "camids": torch.as_tensor(self.cameras[idx], dtype=torch.long),
            "indices": torch.as_tensor(idx, dtype=torch.long),
        }

    def __iter__(self):
        while True:  # the batch is drawn when asked for, for the iteration the hook set (else the next one)
            batch = self.batch(self.iteration)
            self.iteration += 1
            yield batch

    def extract_features(self, model, which="before_bn", batch_size=128):
        """(N, D) numpy features of every training image (test transform, eval mode): pooled ("before_bn") or
        BN-neck ("after_bn")."""
        model = unwrap_model(model)
        n = len(self.records)
        batches = (torch.stack([self.test_transform(self.image(i)) for i in range(start, min(start + batch_size, n))])
                   for start in range(0, n, batch_size))
        return compute_features(model, batches, lambda images: model.embed(images, which))
