"""CUHK03 (Li et al., CVPR'14): 1,467 identities from 5 camera pairs, ``labeled`` or ``detected`` boxes.

Images are PNGs ``<pair>_<pid:03d>_<view>_<image:02d>.png`` (images 1-5 view 1, 6-10 view 2; camid =
view - 1), extracted once from ``cuhk03_release/cuhk-03.mat`` — a MATLAB v7.3 (HDF5) file read with h5py —
with torchreid's names, which are also the names in the new-protocol ``filelist``. The original pid of
``(pair, pid)`` is its global label ``sum(ids of pairs before) + pid`` (1..1467), the ``labels`` of the
new-protocol files.

* New protocol (Zhong et al., CVPR'17): ``cuhk03_new_protocol_config_{labeled,detected}.mat`` (keys
  ``camId, filelist, labels, query_idx, gallery_idx, train_idx``, 1-based): 767 train ids, 700 test ids,
  1,400 queries; evaluated with the Market protocol.
* Classic protocol (Li et al.): the 20 ``testsets`` of ``cuhk-03.mat`` (100 ``(pair, pid)`` each); the other
  1,367 ids train; query = gallery = all test images (the evaluator drops same-view matches), evaluated
  with the single-gallery-shot CMC.
"""
import logging
import os
import re
import shutil
from os.path import join
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .base import check_exists, list_image_files, reid_dict, relabel

__all__ = [
    "CUHK03_LAYOUT",
    "IMAGE_TYPES",
    "load_cuhk03",
    "load_cuhk03_classic",
    "cuhk03_image_dir",
    "write_cuhk03_images",
    "read_cuhk03_testsets",
    "cuhk03_classic_records",
    "cuhk03_classic_split",
]

CUHK03_LAYOUT = """\
$REID2_DATASETS/
  cuhk03/
    cuhk03_release/cuhk-03.mat                # official release (MATLAB v7.3 / HDF5: needs h5py)
    cuhk03_new_protocol_config_labeled.mat    # from zhunzhong07/person-re-ranking
    cuhk03_new_protocol_config_detected.mat
    images_labeled/       # written once from cuhk-03.mat: 1_001_1_01.png (pair_pid_view_image)
    images_detected/"""

IMAGE_TYPES = ("labeled", "detected")
NEW_PROTOCOL_KEYS = ("camId", "filelist", "labels", "query_idx", "gallery_idx", "train_idx")
_IMAGE_PATTERN = re.compile(r"([1-5])_(\d{3})_([12])_(\d{2})\.png")
_IMAGE_EXAMPLE = "1_001_1_01.png (<camera pair 1-5>_<pid:03d>_<view 1-2>_<image 01-10>.png)"
_logger = logging.getLogger(__name__)


def _check_image_type(image_type: str) -> None:
    if image_type not in IMAGE_TYPES:
        raise ValueError(f"CUHK03: image_type must be one of {IMAGE_TYPES}, got {image_type!r}")


def _cuhk03_mat_path(root: str) -> str:
    return join(root, "cuhk03_release", "cuhk-03.mat")


def _open_cuhk03_mat(root: str):
    """``cuhk-03.mat`` opened with h5py (scipy.io cannot read MATLAB v7.3 files)."""
    path = _cuhk03_mat_path(root)
    check_exists([path], "CUHK03", CUHK03_LAYOUT)
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(f"CUHK03: {path} is a MATLAB v7.3 (HDF5) file and reading it needs h5py: "
                          "pip install h5py") from exc
    return h5py.File(path, "r")


def write_cuhk03_images(mat, image_type: str, out_dir: str) -> int:
    """Write the ``image_type`` PNGs of an open ``cuhk-03.mat`` into ``out_dir``; returns their number.

    ``mat[image_type][0]`` holds one reference per camera pair, dereferencing to a (10, num_pids) array
    (HDF5 stores MATLAB arrays transposed) of image references; an image is (3, W, H) RGB, an empty cell
    (an identity with fewer than 10 shots) a 1-D array. Mirrors torchreid's ``_extract_img``.
    """
    import cv2

    count = 0
    for pair_index, pair_ref in enumerate(mat[image_type][0]):
        pair = mat[pair_ref][()].T  # (num_pids, 10) references
        for pid_index, image_refs in enumerate(pair):
            for image_index, image_ref in enumerate(image_refs):
                image = mat[image_ref][()].T  # (H, W, 3) RGB
                if image.ndim < 3 or image.size == 0:
                    continue
                view = 1 if image_index < 5 else 2
                name = f"{pair_index + 1}_{pid_index + 1:03d}_{view}_{image_index + 1:02d}.png"
                cv2.imwrite(join(out_dir, name), np.ascontiguousarray(image[..., ::-1]))
                count += 1
    return count


def read_cuhk03_testsets(mat) -> List[np.ndarray]:
    """The 20 classic test splits of an open ``cuhk-03.mat``: int arrays of 100 ``(pair, pid)`` rows, 1-based."""
    return [np.asarray(mat[ref][()]).T.astype(int) for ref in mat["testsets"][0]]


def cuhk03_image_dir(root: str, image_type: str) -> str:
    """``images_<type>/``, extracted from ``cuhk-03.mat`` first if absent (into a temporary folder that is
    renamed when complete, so an interrupted extraction is redone)."""
    _check_image_type(image_type)
    image_dir = join(root, f"images_{image_type}")
    if os.path.isdir(image_dir):
        return image_dir
    partial = image_dir + ".partial"
    with _open_cuhk03_mat(root) as mat:
        _logger.info("CUHK03: extracting the %s images of %s into %s (once)", image_type,
                     _cuhk03_mat_path(root), image_dir)
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        count = write_cuhk03_images(mat, image_type, partial)
    os.replace(partial, image_dir)
    _logger.info("CUHK03: wrote %d %s images", count, image_type)
    return image_dir


def _read_new_protocol(path: str) -> Dict[str, np.ndarray]:
    from scipy.io import loadmat

    check_exists([path], "CUHK03", CUHK03_LAYOUT)
    mat = loadmat(path)
    missing = [k for k in NEW_PROTOCOL_KEYS if k not in mat]
    if missing:
        raise ValueError(f"CUHK03: {path} lacks {missing}; expected the keys {list(NEW_PROTOCOL_KEYS)} "
                         "(N x 1 arrays; *_idx 1-based rows of filelist)")
    config = {k: mat[k].ravel() for k in NEW_PROTOCOL_KEYS}
    config["filelist"] = np.array([str(np.asarray(name).ravel()[0]) for name in config["filelist"]])
    num_files = len(config["filelist"])
    for key in ("camId", "labels"):
        config[key] = config[key].astype(np.int64)
        if len(config[key]) != num_files:
            raise ValueError(f"CUHK03: {path}: {key} has {len(config[key])} entries, filelist {num_files}")
    for key in ("query_idx", "gallery_idx", "train_idx"):
        index = config[key].astype(np.int64) - 1
        if index.size and (index.min() < 0 or index.max() >= num_files):
            raise ValueError(f"CUHK03: {path}: {key} must hold 1-based rows of filelist (1..{num_files}), "
                             f"found {index.min() + 1}..{index.max() + 1}")
        config[key] = index
    return config


def _check_listed_images(image_dir: str, names: Sequence[str], split_file: str) -> None:
    missing = sorted(set(names) - set(os.listdir(image_dir)))
    if missing:
        raise FileNotFoundError(
            f"CUHK03: {image_dir} lacks {len(missing)} image(s) listed in {split_file} (e.g. {missing[0]}); "
            "delete the folder to extract it again from cuhk03_release/cuhk-03.mat.\n"
            f"Expected dataset structure for CUHK03:\n{CUHK03_LAYOUT}")


def load_cuhk03(root: str, image_type: str, split: str) -> List[dict]:
    """New protocol (767/700). ``root`` = the ``cuhk03`` folder; ``split`` in ``train``, ``test``."""
    _check_image_type(image_type)
    if split not in ("train", "test"):
        raise ValueError(f"CUHK03: split must be 'train' or 'test', got {split!r}")
    check_exists([root], "CUHK03", CUHK03_LAYOUT)
    split_file = join(root, f"cuhk03_new_protocol_config_{image_type}.mat")
    config = _read_new_protocol(split_file)
    image_dir = cuhk03_image_dir(root, image_type)
    sides = ("train",) if split == "train" else ("query", "gallery")
    rows = {side: config[f"{side}_idx"] for side in sides}
    _check_listed_images(image_dir, [config["filelist"][i] for side in sides for i in rows[side]], split_file)
    dicts = [reid_dict(join(image_dir, config["filelist"][i]), config["labels"][i], config["camId"][i] - 1, side)
             for side in sides for i in rows[side]]
    return relabel(dicts)[0] if split == "train" else dicts


def cuhk03_classic_records(image_dir: str) -> List[Tuple[str, Tuple[int, int], int, int]]:
    """``(file, (pair, pid), global pid, camid)`` of every extracted image."""
    matches = list_image_files(image_dir, _IMAGE_PATTERN, ".png", "CUHK03", CUHK03_LAYOUT, _IMAGE_EXAMPLE)
    keys = np.array([[int(m.group(1)), int(m.group(2))] for _, m in matches]).reshape(-1, 2)
    ids_per_pair = np.zeros(6, dtype=np.int64)
    np.maximum.at(ids_per_pair, keys[:, 0], keys[:, 1])
    offsets = np.cumsum(ids_per_pair) - ids_per_pair  # ids of the pairs before
    return [(path, (pair, pid), int(offsets[pair] + pid), int(m.group(3)) - 1)
            for (path, m), (pair, pid) in zip(matches, keys.tolist())]


def load_cuhk03_classic(root: str, image_type: str, split_index: int, split: str) -> List[dict]:
    """Classic protocol split ``split_index`` (0..19); ``split`` in ``train``, ``test`` (query = gallery)."""
    _check_image_type(image_type)
    if split not in ("train", "test"):
        raise ValueError(f"CUHK03: split must be 'train' or 'test', got {split!r}")
    check_exists([root], "CUHK03", CUHK03_LAYOUT)
    image_dir = cuhk03_image_dir(root, image_type)
    with _open_cuhk03_mat(root) as mat:
        testsets = read_cuhk03_testsets(mat)
    return cuhk03_classic_split(cuhk03_classic_records(image_dir), testsets, split_index, split)


def cuhk03_classic_split(records, testsets: Sequence[np.ndarray], split_index: int, split: str) -> List[dict]:
    """Dicts of one classic split from ``cuhk03_classic_records`` and the ``testsets`` of ``cuhk-03.mat``."""
    if not 0 <= split_index < len(testsets):
        raise ValueError(f"CUHK03: classic split_index must be in 0..{len(testsets) - 1}, got {split_index}")
    testset = np.asarray(testsets[split_index])
    if testset.ndim != 2 or testset.shape[1] != 2:
        raise ValueError(f"CUHK03: testsets[{split_index}] must be a (num_ids, 2) array of (pair, pid), "
                         f"got shape {testset.shape}")
    test_keys = set(map(tuple, testset.tolist()))
    unknown = test_keys - {key for _, key, _, _ in records}
    if unknown:
        raise ValueError(f"CUHK03: testsets[{split_index}] names (pair, pid) {sorted(unknown)[:3]} without images")
    if split == "train":
        return relabel([reid_dict(f, pid, cam, "train") for f, key, pid, cam in records if key not in test_keys])[0]
    test = [(f, pid, cam) for f, key, pid, cam in records if key in test_keys]
    return [reid_dict(f, pid, cam, side) for side in ("query", "gallery") for f, pid, cam in test]
