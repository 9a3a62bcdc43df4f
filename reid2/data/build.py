"""reid2's re-ID data loaders: batched test loading and P x K-preserving training batches."""
import logging

import torch
from detectron2.data import DatasetCatalog
from detectron2.data.build import worker_init_reset_seed
from detectron2.data.samplers import InferenceSampler
from detectron2.utils import comm
from torch.utils.data import BatchSampler, DataLoader, Dataset

from reid2.utils.files import read_image_rgb

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
    """Dataset dicts (file_name, pid, camid, split) → transformed image tensors."""

    def __init__(self, dicts, transform):
        self.dicts, self.transform = dicts, transform

    def __len__(self):
        return len(self.dicts)

    def __getitem__(self, index):
        d = self.dicts[index]
        return {
            "image": self.transform(read_image_rgb(d["file_name"])),
            "pid": int(d["pid"]),
            "camid": int(d.get("camid", -1)),
            "file_name": d["file_name"],
            "split": d.get("split", "train"),
        }


def reid_collate(items):
    """A list of samples → one batch dict of stacked tensors (the input of re-ID models)."""
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
        dataset = ReIDImageDataset(dicts, transform)
    elif len(dataset) != len(dicts):
        raise ValueError(f"build_reid_train_loader: the dataset has {len(dataset)} items for {len(dicts)} dicts")
    sampler = build_reid_train_batch_sampler(cfg, dicts)
    logging.getLogger(__name__).info(
        "re-ID train loader: %d images, %d ids, sampler %s", len(dicts),
        len({d["pid"] for d in dicts}), cfg.DATALOADER.SAMPLER_TRAIN)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.DATALOADER.NUM_WORKERS,
                      collate_fn=collate_fn, worker_init_fn=worker_init_reset_seed,
                      persistent_workers=cfg.DATALOADER.NUM_WORKERS > 0)


def build_reid_test_loader(cfg, dataset_name, dicts=None):
    """Batched (``TEST.IMS_PER_BATCH``), each rank a contiguous shard; order is preserved."""
    dicts = DatasetCatalog.get(dataset_name) if dicts is None else dicts
    dataset = ReIDImageDataset(dicts, build_reid_transforms(cfg, is_train=False))
    batch_size = max(1, cfg.TEST.IMS_PER_BATCH // comm.get_world_size())
    sampler = BatchSampler(InferenceSampler(len(dataset)), batch_size, drop_last=False)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.DATALOADER.NUM_WORKERS,
                      collate_fn=reid_collate)
