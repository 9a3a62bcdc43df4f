"""CUHK-SYSU (Xiao et al., CVPR'17) from its original MATLAB files: detection dicts and the TestG query protocol.

Layout under ``root``::

    Image/SSM/s<N>.jpg
    annotation/Images.mat  (Img: 1×18184 struct {imname, nAppear, box: 1×n struct {idlocate, ishard}})
    annotation/pool.mat    (pool: 6978×1 cell of test image names)
    annotation/test/train_test/Train.mat  (Train: 5532×1 cell of 1×1 struct {idname, nAppear, scene})
    annotation/test/train_test/TestG{50,...,4000}.mat  (TestG<G>: 1×2900 struct {Query, Gallery})

Boxes are ``[x, y, w, h]`` stored as uint8 or uint16 (MATLAB's smallest type), cast before any arithmetic.
Train = Images − pool; a box gets the index of the ``Train.mat`` identity whose box equals it (0..5531,
as the original Caffe ``psdb.py``), others -1. Test = pool images; a box gets the query row (0..2899) of the
identity whose protocol box equals it — all TestG files list the same queries and positives — others -1.
"""
import glob
import logging
import os
import re

import numpy as np
from scipy.io import loadmat

from .coco_person import UNLABELED, clean_person_boxes, image_size, person_record, xywh_to_xyxy

__all__ = [
    "CUHK_SYSU_NUM_TRAIN_PIDS",
    "load_mat_variable",
    "load_cuhk_sysu",
    "load_cuhk_sysu_queries",
    "available_gallery_sizes",
]

CUHK_SYSU_NUM_TRAIN_PIDS = 5532
_logger = logging.getLogger(__name__)


def load_mat_variable(path: str, keys, expected: str) -> np.ndarray:
    """The first of ``keys`` present in the MATLAB file; errors name the file and the ``expected`` structure."""
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    wanted = " or ".join(repr(k) for k in keys)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found (expected a MATLAB file with {wanted}: {expected})")
    try:
        mat = loadmat(path)
    except Exception as exc:  # scipy raises several types for corrupt files
        raise ValueError(f"{path}: not a readable MATLAB .mat file ({exc}); expected {wanted}: {expected}") from exc
    for key in keys:
        if key in mat:
            return mat[key]
    found = sorted(k for k in mat if not k.startswith("__"))
    raise ValueError(f"{path}: no variable {wanted} (found {found}); expected {expected}")


def mat_string(value) -> str:
    """A MATLAB char array as loaded by scipy (``array(['s1.jpg'])``) → ``'s1.jpg'``."""
    return str(np.asarray(value).ravel()[0])


def _struct(array, fields, path, expected) -> np.ndarray:
    """Flatten a MATLAB struct array after checking it has ``fields`` (robust to 1-element squeezing)."""
    names = getattr(np.asarray(array).dtype, "names", None) or ()
    missing = [f for f in fields if f not in names]
    if missing:
        raise ValueError(f"{path}: struct lacks fields {missing} (has {list(names)}); expected {expected}")
    return np.asarray(array).ravel()


def _box_key(image_name, box) -> tuple:
    return (image_name, *np.asarray(box).astype(np.int32).ravel().tolist())


def _annotation_dir(root):
    return os.path.join(root, "annotation")


def _protocol_dir(root):
    return os.path.join(root, "annotation", "test", "train_test")


def _read_images(root) -> list:
    """[(image name, (k,4) int32 xywh boxes)] from ``Images.mat`` in file order."""
    path = os.path.join(_annotation_dir(root), "Images.mat")
    expected = "1×N struct {imname, nAppear, box: 1×n struct {idlocate (1×4), ishard}}"
    images = []
    for entry in _struct(load_mat_variable(path, "Img", expected), ("imname", "box"), path, expected):
        boxes = entry["box"].ravel()
        # first field of each box is idlocate (loaders unpack it positionally)
        xywh = np.asarray([np.asarray(b[0]).ravel() for b in boxes], dtype=np.int32).reshape(-1, 4)
        images.append((mat_string(entry["imname"]), xywh))
    return images


def _read_pool(root) -> list:
    path = os.path.join(_annotation_dir(root), "pool.mat")
    cell = load_mat_variable(path, "pool", "M×1 cell of test image names")
    return [mat_string(name) for name in np.asarray(cell).ravel()]


def _train_box_labels(root) -> dict:
    """{(image, x, y, w, h): identity index in Train.mat}."""
    path = os.path.join(_protocol_dir(root), "Train.mat")
    expected = "K×1 cell of 1×1 struct {idname, nAppear, scene: 1×n struct {imname, idlocate, ishard}}"
    labels = {}
    for pid, person in enumerate(np.asarray(load_mat_variable(path, "Train", expected)).ravel()):
        person = _struct(person, ("scene",), path, expected)[0]
        for scene in _struct(person["scene"], ("imname", "idlocate"), path, expected):
            labels[_box_key(mat_string(scene["imname"]), scene["idlocate"])] = pid
    return labels


def available_gallery_sizes(root) -> list:
    """Gallery sizes G with a ``TestG<G>.mat`` under ``annotation/test/train_test``, ascending."""
    names = glob.glob(os.path.join(_protocol_dir(root), "TestG*.mat"))
    return sorted(int(m.group(1)) for m in (re.fullmatch(r"TestG(\d+)\.mat", os.path.basename(n)) for n in names) if m)


def read_test_protocol(root, gallery_size) -> list:
    """[(query image, query xywh, idname, [(gallery image, xywh or None), ...])] from ``TestG<G>.mat``."""
    key = f"TestG{gallery_size}"
    path = os.path.join(_protocol_dir(root), f"{key}.mat")
    expected = ("1×Q struct {Query: 1×1 struct {imname, idlocate, ishard, idname}, "
                "Gallery: 1×G struct {imname, idlocate (empty for images without the person), ishard}}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found (gallery sizes available under {_protocol_dir(root)}: "
                                f"{available_gallery_sizes(root)}); expected {key}: {expected}")
    rows = []
    for row in _struct(load_mat_variable(path, key, expected), ("Query", "Gallery"), path, expected):
        query = _struct(row["Query"], ("imname", "idlocate", "idname"), path, expected)[0]
        gallery = [
            (mat_string(g["imname"]), g["idlocate"].astype(np.int32).ravel() if g["idlocate"].size else None)
            for g in _struct(row["Gallery"], ("imname", "idlocate"), path, expected)
        ]
        rows.append((mat_string(query["imname"]), query["idlocate"].astype(np.int32).ravel(),
                     mat_string(query["idname"]), gallery))
    return rows


def _test_box_labels(root) -> dict:
    """{(image, x, y, w, h): query row} from the smallest TestG file (every TestG lists the same positives)."""
    sizes = available_gallery_sizes(root)
    if not sizes:
        _logger.warning("CUHK-SYSU at %s: no TestG*.mat, test boxes get person_id -1", root)
        return {}
    labels = {}
    for row, (query_image, query_box, _, gallery) in enumerate(read_test_protocol(root, sizes[0])):
        labels[_box_key(query_image, query_box)] = row
        labels.update({_box_key(image, box): row for image, box in gallery if box is not None})
    return labels


def load_cuhk_sysu(root: str, split: str) -> list:
    """Detection dicts of the ``"train"`` (Images − pool) or ``"test"`` (pool) split, in Images.mat order."""
    if split not in ("train", "test"):
        raise ValueError(f"CUHK-SYSU split must be 'train' or 'test', got {split!r}")
    images = _read_images(root)
    pool = set(_read_pool(root))
    labels = _train_box_labels(root) if split == "train" else _test_box_labels(root)
    image_dir = os.path.join(root, "Image", "SSM")
    records, matched = [], 0
    for name, xywh in images:
        if (name in pool) != (split == "test"):
            continue
        pids = [labels.get(_box_key(name, box), UNLABELED) for box in xywh]
        matched += sum(p != UNLABELED for p in pids)
        path = os.path.join(image_dir, name)
        height, width = image_size(path)
        records.append(person_record(path, name, height, width, -1, xywh_to_xyxy(xywh), pids))
    if matched < len(labels):
        _logger.warning("CUHK-SYSU %s: %d of %d identity boxes match no box of Images.mat",
                        split, len(labels) - matched, len(labels))
    return clean_person_boxes(records, f"CUHK-SYSU {split} ({root})")


def load_cuhk_sysu_queries(root: str, gallery_size: int = 100) -> list:
    """The TestG<gallery_size> protocol as ``[{"query": {...}, "gallery": [{"image", "box"}, ...]}]``.

    ``query``: ``{"image", "file_name", "box": xyxy ndarray, "pid": idname str}``; gallery ``box``: xyxy
    ndarray where the person is, else None; entries keep the file's order (positives first) and its quirks
    (an image listed twice is evaluated twice, as the original ``psdb.py``).
    ``gallery_size=-1`` (full set) follows ``psdb.py``: the smallest TestG file's gallery (TestG50 in the real
    dataset, it holds every positive), then every other pool image except the query image, box None.
    Negative entries of the full set are shared between queries: treat the result as read-only.
    """
    sizes = available_gallery_sizes(root)
    full_set = gallery_size == -1
    if full_set and not sizes:
        raise FileNotFoundError(f"no TestG*.mat under {_protocol_dir(root)}: the full-set protocol needs one")
    protocol = read_test_protocol(root, sizes[0] if full_set else gallery_size)
    if full_set:
        pool = _read_pool(root)
        negatives = {name: {"image": name, "box": None} for name in pool}
    image_dir = os.path.join(root, "Image", "SSM")
    queries = []
    for query_image, query_box, idname, gallery in protocol:
        entries = [{"image": image, "box": None if box is None else xywh_to_xyxy(box)[0]} for image, box in gallery]
        if full_set:
            tested = {query_image, *(image for image, _ in gallery)}
            entries += [negatives[name] for name in pool if name not in tested]
        queries.append({
            "query": {"image": query_image, "file_name": os.path.join(image_dir, query_image),
                      "box": xywh_to_xyxy(query_box)[0], "pid": idname},
            "gallery": entries,
        })
    return queries
