"""Training data of DSA-reID: the MF image plus the 24 DSAP (or CSA) images of the same person.

The IUV of ``<dataset>/<folder>/<stem>.jpg`` is looked up as (``MODEL.DSA.IUV_ROOT`` defaulting to
``<dataset>/densepose_iuv``) ``<root>/<folder>/<stem>_IUV.png`` (legacy_png), ``<stem>.png`` (d2_png),
``<stem>.npz`` (npz), or the image's entry of the dump file ``IUV_ROOT`` (dump).

Flip: the MF image is flipped here (not by the torchvision pipeline) so that the DSAG input can follow it.
Without ``MODEL.DSA.UV_SYMMETRY_FILE`` the DSAP images are always built from the unflipped image and IUV
(flip augments the MF-Stream only; mirroring the image without remapping U, V would be wrong); with it,
image and IUV are flipped together (labels swapped, U, V remapped) as DensePose does.
The DSAP images see no crop/erasing: they are built from the whole original crop.
Test loading is reid2's (MF-Stream only, no IUV) unless ``MODEL.DSA.TEST_FEATURE`` fuses the two streams:
then :func:`build_dsa_test_loader` adds the test images' (unflipped) DSAP images, read like the training ones.
"""
import logging
import os
from functools import partial

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.samplers import InferenceSampler
from detectron2.utils import comm
from PIL import Image
from torch.utils.data import BatchSampler, DataLoader, Dataset

from reid2.data import (
    NORMALIZATIONS,
    build_reid_train_loader,
    build_reid_transforms,
    get_reid_train_dicts,
    reid_collate,
)
from reid2.utils.files import read_image_rgb

from .dsap import csa_part_images, flip_iuv, load_uv_symmetry_transforms, warp_to_dsap
from .iuv import IUV, IUV_FORMATS, read_iuv

__all__ = ["iuv_path", "DSADataset", "dsa_collate", "build_dsa_train_loader", "build_dsa_test_loader",
           "dataset_mean_pixel", "scan_iuv"]
logger = logging.getLogger(__name__)

_SUFFIX = {"legacy_png": "_IUV.png", "d2_png": ".png", "npz": ".npz"}


def iuv_path(file_name: str, iuv_root: str = "", fmt: str = "legacy_png") -> str:
    """Where the DensePose result of image ``file_name`` is (see the module docstring)."""
    if fmt not in IUV_FORMATS:
        raise ValueError(f"MODEL.DSA.IUV_FORMAT must be one of {IUV_FORMATS}, got {fmt!r}")
    if fmt == "dump":
        if not iuv_root:
            raise ValueError("MODEL.DSA.IUV_FORMAT 'dump' needs MODEL.DSA.IUV_ROOT = the apply_net.py dump file")
        return iuv_root
    folder = os.path.dirname(os.path.abspath(file_name))
    root = iuv_root or os.path.join(os.path.dirname(folder), "densepose_iuv")
    stem = os.path.splitext(os.path.basename(file_name))[0]
    return os.path.join(root, os.path.basename(folder), stem + _SUFFIX[fmt])


def load_person_iuv(file_name: str, image_hw, iuv_root="", fmt="legacy_png") -> IUV:
    """The IUV of one person crop at the image's size (nearest resize when the stored map differs)."""
    path = iuv_path(file_name, iuv_root, fmt)
    if fmt != "dump" and not os.path.isfile(path):
        raise FileNotFoundError(
            f"no DensePose result for {file_name}: expected {path} (MODEL.DSA.IUV_ROOT={iuv_root!r}, "
            f"MODEL.DSA.IUV_FORMAT={fmt!r}); run projects/DSA/tools/cache_densepose.py first")
    return read_iuv(path, fmt, image_file=file_name, image_hw=image_hw).resized(*image_hw)


def _normalizer(name):
    if name not in NORMALIZATIONS:
        raise ValueError(f"INPUT.REID.NORMALIZE must be one of {sorted(NORMALIZATIONS)}, got {name!r}")
    mean, std = NORMALIZATIONS[name]
    return np.asarray(mean, np.float32) * 255.0, np.asarray(std, np.float32) * 255.0


class DSADataset(Dataset):
    """Dataset dicts → {image (MF, augmented), dsap (24, 3, S, S) normalised, pid, camid, ...}."""

    def __init__(self, dicts, transform, *, mode="dsa", size=32, fill=None, iuv_root="", iuv_format="legacy_png",
                 flip_prob=0.5, uv_symmetry=None, normalize="imagenet", collision="copy"):
        self.dicts, self.transform = dicts, transform
        self.builder = {"dsa": partial(warp_to_dsap, collision=collision), "csa": csa_part_images}[mode]
        self.size, self.fill = size, fill
        self.iuv_root, self.iuv_format = iuv_root, iuv_format
        self.flip_prob, self.uv_symmetry = flip_prob, uv_symmetry
        self.mean, self.std = _normalizer(normalize)

    def __len__(self):
        return len(self.dicts)

    def dsap(self, rgb: np.ndarray, iuv: IUV, flip: bool) -> torch.Tensor:
        labels, u, v = iuv.labels, iuv.u, iuv.v
        if flip and self.uv_symmetry is not None:
            rgb = rgb[:, ::-1]
            labels, u, v = flip_iuv(labels, u, v, *self.uv_symmetry)
        parts = self.builder(rgb, labels, u, v, size=self.size, fill=self.fill)
        parts = (parts - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(parts.transpose(0, 3, 1, 2)))

    def __getitem__(self, index):
        d = self.dicts[index]
        img = read_image_rgb(d["file_name"])
        rgb = np.asarray(img)
        iuv = load_person_iuv(d["file_name"], rgb.shape[:2], self.iuv_root, self.iuv_format)
        flip = bool(torch.rand(()) < self.flip_prob)
        mf_img = img.transpose(Image.FLIP_LEFT_RIGHT) if flip else img
        return {
            "image": self.transform(mf_img), "dsap": self.dsap(rgb, iuv, flip),
            "pid": int(d["pid"]), "camid": int(d.get("camid", -1)), "file_name": d["file_name"],
            "split": d.get("split", "train"),
        }


def dsa_collate(items):
    batch = reid_collate(items)
    batch["dsap"] = torch.stack([it["dsap"] for it in items])
    return batch


def scan_iuv(dicts, iuv_root="", fmt="legacy_png", what="training"):
    """Check every (training) image has a DensePose result (clear error otherwise); count the empty ones."""
    missing, empty = [], 0
    for d in dicts:
        path = iuv_path(d["file_name"], iuv_root, fmt)
        if fmt != "dump" and not os.path.isfile(path):
            missing.append(path)
            continue
        with Image.open(d["file_name"]) as im:
            hw = (im.height, im.width)
        empty += read_iuv(path, fmt, image_file=d["file_name"], image_hw=hw).empty
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(dicts)} {what} images have no DensePose result, e.g. {missing[0]} "
            f"(MODEL.DSA.IUV_ROOT={iuv_root!r}, MODEL.DSA.IUV_FORMAT={fmt!r}); "
            "run projects/DSA/tools/cache_densepose.py first")
    logger.info("DSA: %d of %d %s persons have no DensePose body pixel; their DSAP images are mean-filled",
                empty, len(dicts), what)
    return empty


def dataset_mean_pixel(dicts) -> np.ndarray:
    """Mean RGB pixel over the training images (the paper's "mean values of images")."""
    total = np.zeros(3)
    for d in dicts:
        total += np.asarray(read_image_rgb(d["file_name"]), np.float64).reshape(-1, 3).mean(0)
    return (total / max(len(dicts), 1)).astype(np.float32)


_TRAIN_MEAN = {}


def fill_pixel(cfg, train_dicts=None):
    """The fill of unreached DSAP cells: None (each image's mean, FILL image) or the training set's mean pixel
    (FILL dataset; computed once per DATASETS.TRAIN and reused for the test images)."""
    c = cfg.MODEL.DSA
    if c.FILL == "image":
        return None
    if c.FILL != "dataset":
        raise ValueError(f"MODEL.DSA.FILL must be 'image' or 'dataset', got {c.FILL!r}")
    key = tuple(cfg.DATASETS.TRAIN)
    if key not in _TRAIN_MEAN:
        dicts = get_reid_train_dicts(cfg.DATASETS.TRAIN) if train_dicts is None else train_dicts
        _TRAIN_MEAN[key] = dataset_mean_pixel(dicts)
        logger.info("DSA: dataset mean pixel %s fills empty DSAP cells", np.round(_TRAIN_MEAN[key], 1).tolist())
    return _TRAIN_MEAN[key]


def build_dsa_train_loader(cfg, dicts=None):
    """P×K training loader yielding reid2 batches plus ``dsap`` (B, 24, 3, S, S)."""
    c = cfg.MODEL.DSA
    dicts = get_reid_train_dicts(cfg.DATASETS.TRAIN) if dicts is None else dicts
    scan_iuv(dicts, c.IUV_ROOT, c.IUV_FORMAT)
    fill = fill_pixel(cfg, dicts)
    uv_symmetry = load_uv_symmetry_transforms(c.UV_SYMMETRY_FILE) if c.UV_SYMMETRY_FILE else None
    mf_cfg = cfg.clone()
    mf_cfg.defrost()
    mf_cfg.INPUT.REID.FLIP_PROB = 0.0  # the dataset flips, so the DSAG input can follow
    dataset = DSADataset(
        dicts, build_reid_transforms(mf_cfg, is_train=True), mode=c.MODE, size=c.DSAP_SIZE, fill=fill,
        iuv_root=c.IUV_ROOT, iuv_format=c.IUV_FORMAT, flip_prob=cfg.INPUT.REID.FLIP_PROB, uv_symmetry=uv_symmetry,
        normalize=cfg.INPUT.REID.NORMALIZE, collision=c.COLLISION)
    return build_reid_train_loader(cfg, dicts=dicts, dataset=dataset, collate_fn=dsa_collate)


def build_dsa_test_loader(cfg, dataset_name, dicts=None):
    """reid2's test loader (same order, batches and shards) plus ``dsap`` of each test image, for the fused
    test features (``MODEL.DSA.TEST_FEATURE``); DSAP images unflipped, DSAP/CSA as MODEL.DSA.MODE."""
    c = cfg.MODEL.DSA
    if c.MODE not in ("dsa", "csa"):
        raise ValueError(f"MODEL.DSA.TEST_FEATURE {c.TEST_FEATURE!r} needs MODEL.DSA.MODE dsa or csa, got {c.MODE!r}")
    dicts = DatasetCatalog.get(dataset_name) if dicts is None else dicts
    scan_iuv(dicts, c.IUV_ROOT, c.IUV_FORMAT, what=f"{dataset_name} test")
    dataset = DSADataset(
        dicts, build_reid_transforms(cfg, is_train=False), mode=c.MODE, size=c.DSAP_SIZE, fill=fill_pixel(cfg),
        iuv_root=c.IUV_ROOT, iuv_format=c.IUV_FORMAT, flip_prob=0.0, normalize=cfg.INPUT.REID.NORMALIZE,
        collision=c.COLLISION)
    batch_size = max(1, cfg.TEST.IMS_PER_BATCH // comm.get_world_size())
    sampler = BatchSampler(InferenceSampler(len(dataset)), batch_size, drop_last=False)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.DATALOADER.NUM_WORKERS, collate_fn=dsa_collate)
