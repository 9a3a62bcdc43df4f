"""reid2's re-ID data loaders: batched test loading and P x K-preserving training batches."""
import logging

import torch
from detectron2.data import DatasetCatalog
from detectron2.data.build import worker_init_reset_seed
from detectron2.data.samplers import InferenceSampler
from detectron2.utils import comm
from torch.utils.data import BatchSampler, DataLoader, Dataset

from reid2.utils.files import read_image_rgb

from .bad_images import BadImageCounter, NonEmptyBatches, load_or_replace
from .samplers import IdentityBatchSampler, RandomBatchSampler
from .transforms import build_reid_transforms

__all__ = [
    "ReIDImageDataset",
    "reid_collate",
    "get_reid_train_dicts",
    "build_reid_train_batch_sampler",
    "build_reid_train_loader",
    "build_reid_test_loader",
]


class ReIDImageDataset(Dataset):
    """Dataset dicts (file_name, pid, camid, split) → transformed image tensors.

    ``skip_bad_images`` (``DATALOADER.SKIP_BAD_IMAGES``): an unreadable image is counted and, with
    ``replace``, replaced by the next readable image of the same identity (else the next readable one), or
    else dropped (the item is None; :func:`reid_collate` leaves it out). By default it is an error naming it.
    """

    def __init__(self, dicts, transform, skip_bad_images=False, replace=True):
        self.dicts, self.transform = dicts, transform
        self.skip_bad_images, self.replace = skip_bad_images, replace
        self.bad_images = BadImageCounter("re-ID " + ("training" if replace else "test") + " images")

    def __len__(self):
        return len(self.dicts)

    def __getitem__(self, index):
        if not self.skip_bad_images:
            return self._load(index)
        return load_or_replace(self._load, index, self._replacements(index) if self.replace else None,
                               lambda i: self.dicts[i]["file_name"], self.bad_images)

    def _replacements(self, index):
        pid = self.dicts[index]["pid"]
        return [i for i, d in enumerate(self.dicts) if d["pid"] == pid], range(len(self.dicts))

    def _load(self, index):
        d = self.dicts[index]
        return {
            "image": self.transform(read_image_rgb(d["file_name"])),
            "pid": int(d["pid"]),
            "camid": int(d.get("camid", -1)),
            "file_name": d["file_name"],
            "split": d.get("split", "train"),
        }


def reid_collate(items):
    """A list of samples → one batch dict of stacked tensors (the input of re-ID models); skipped images
    (None items) are left out, and a batch of skipped images only is None."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    return {
        "images": torch.stack([it["image"] for it in items]),
        "targets": torch.tensor([it["pid"] for it in items], dtype=torch.long),
        "camids": torch.tensor([it["camid"] for it in items], dtype=torch.long),
        "file_names": [it["file_name"] for it in items],
        "splits": [it["split"] for it in items],
    }


def get_reid_train_dicts(names):
    """Load and (for several sets) combine the training sets, offsetting their pids."""
    from .datasets.base import combine_train_sets

    if isinstance(names, str):
        names = [names]
    if not names:
        raise ValueError("DATASETS.TRAIN is empty")
    lists = [DatasetCatalog.get(n) for n in names]
    for name, dicts in zip(names, lists):
        if not dicts:
            raise ValueError(f"training set {name!r} is empty")
    return lists[0] if len(lists) == 1 else combine_train_sets(lists)


def build_reid_train_batch_sampler(cfg, dicts):
    """``DATALOADER.SAMPLER_TRAIN``'s infinite batch sampler over ``dicts`` (P×K identities or random)."""
    seed = cfg.SEED if cfg.SEED >= 0 else 0
    name = cfg.DATALOADER.SAMPLER_TRAIN
    if name == "IdentitySampler":
        return IdentityBatchSampler(
            [d["pid"] for d in dicts], [d.get("camid", 0) for d in dicts],
            cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCES, seed=seed,
            camera_balanced=cfg.DATALOADER.CAMERA_BALANCED)
    if name == "RandomSampler":
        return RandomBatchSampler(len(dicts), cfg.SOLVER.IMS_PER_BATCH, seed=seed)
    raise ValueError(f"DATALOADER.SAMPLER_TRAIN must be IdentitySampler or RandomSampler, got {name!r}")


def build_reid_train_loader(cfg, dicts=None, transform=None, dataset=None, collate_fn=reid_collate):
    """Infinite training loader; batches of ``IMS_PER_BATCH / world_size`` images per process.

    ``dataset`` (one item per entry of ``dicts``) and ``collate_fn`` replace the plain image dataset, for
    projects whose samples carry more than an image (DSA's part images)."""
    dicts = get_reid_train_dicts(cfg.DATASETS.TRAIN) if dicts is None else dicts
    if dataset is None:
        transform = build_reid_transforms(cfg, is_train=True) if transform is None else transform
        dataset = ReIDImageDataset(dicts, transform, skip_bad_images=cfg.DATALOADER.SKIP_BAD_IMAGES)
    elif len(dataset) != len(dicts):
        raise ValueError(f"build_reid_train_loader: the dataset has {len(dataset)} items for {len(dicts)} dicts")
    sampler = build_reid_train_batch_sampler(cfg, dicts)
    logging.getLogger(__name__).info(
        "re-ID train loader: %d images, %d ids, sampler %s", len(dicts),
        len({d["pid"] for d in dicts}), cfg.DATALOADER.SAMPLER_TRAIN)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.DATALOADER.NUM_WORKERS,
                      collate_fn=collate_fn, worker_init_fn=worker_init_reset_seed,
                      persistent_workers=cfg.DATALOADER.NUM_WORKERS > 0)


def build_reid_test_loader(cfg, dataset_name, dicts=None, skip_bad_images=None):
    """Batched (``TEST.IMS_PER_BATCH``), each rank a contiguous shard; order is preserved.

    ``skip_bad_images`` (default ``DATALOADER.SKIP_BAD_IMAGES``) drops unreadable images from the batches
    (each batch names its images in ``file_names``); callers that align outputs with ``dicts`` pass False."""
    dicts = DatasetCatalog.get(dataset_name) if dicts is None else dicts
    skip = cfg.DATALOADER.SKIP_BAD_IMAGES if skip_bad_images is None else skip_bad_images
    dataset = ReIDImageDataset(dicts, build_reid_transforms(cfg, is_train=False), skip_bad_images=skip, replace=False)
    batch_size = max(1, cfg.TEST.IMS_PER_BATCH // comm.get_world_size())
    sampler = BatchSampler(InferenceSampler(len(dataset)), batch_size, drop_last=False)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.DATALOADER.NUM_WORKERS,
                        collate_fn=reid_collate)
    return NonEmptyBatches(loader) if skip else loader
