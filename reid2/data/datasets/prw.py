"""PRW (Zheng et al., CVPR'17) from its original files: detection dicts, and the PRW / PRW-mini query protocols.

Layout under ``root``::

    frames/c<cam>s<seq>_<frame>.jpg
    annotations/<frame>.jpg.mat   (box_new, anno_file or anno_previous: n×5 [pid, x, y, w, h], pid -2 unlabelled)
    frame_train.mat (img_index_train), frame_test.mat (img_index_test): N×1 cell of frame names without ".jpg"
    query_info.txt                 (one query a line: "pid x y w h frame"; CRLF or LF)
    prwmini_query_info.txt         (PRW-mini, Munjal et al. CVPR'19: 30 lines, same format)

Boxes are clipped at 0 (as SeqNet/NAE) before ``x,y,w,h → x1,y1,x2,y2``. Training ids are mapped to 0..N-1
from the training annotations (483 ids, not the 482 several ports hard-code); test frames keep the raw PRW id
(the query files refer to it); -2 becomes -1. ``ID_train.mat`` / ``ID_test.mat`` are therefore not needed.
"""
import os

import numpy as np

from .coco_person import (UNLABELED, camera_of, clean_person_boxes, contiguous_pid_map, image_size, person_record,
                          xywh_to_xyxy)
from .cuhk_sysu import load_mat_variable, mat_string

__all__ = ["load_prw", "read_query_info", "build_prw_queries", "load_prw_queries"]

_SPLIT_KEYS = {"train": "img_index_train", "test": "img_index_test"}
_ANNOTATION_KEYS = ("box_new", "anno_file", "anno_previous")


def _frame_names(root, split) -> list:
    key = _SPLIT_KEYS[split]
    path = os.path.join(root, f"frame_{split}.mat")
    cell = load_mat_variable(path, key, "N×1 cell of frame names such as 'c1s1_000151'")
    return [_with_jpg(mat_string(name)) for name in np.asarray(cell).ravel()]


def _with_jpg(name: str) -> str:
    return name if name.endswith(".jpg") else name + ".jpg"


def _read_frame_annotation(root, frame) -> tuple:
    """(raw pids (n,), clipped xywh (n,4)) of ``annotations/<frame>.mat``."""
    path = os.path.join(root, "annotations", frame + ".mat")
    table = np.asarray(load_mat_variable(path, _ANNOTATION_KEYS, "n×5 double [pid, x, y, w, h]"), dtype=np.float64)
    if table.size == 0:
        return np.zeros(0, np.int64), np.zeros((0, 4))
    if table.ndim != 2 or table.shape[1] != 5:
        raise ValueError(f"{path}: expected an n×5 array [pid, x, y, w, h], got shape {table.shape}")
    return table[:, 0].astype(np.int64), np.clip(table[:, 1:], 0, None)


def load_prw(root: str, split: str) -> list:
    """Detection dicts of the ``"train"`` or ``"test"`` frames, in ``frame_<split>.mat`` order."""
    if split not in _SPLIT_KEYS:
        raise ValueError(f"PRW split must be 'train' or 'test', got {split!r}")
    frames = _frame_names(root, split)
    annotations = [_read_frame_annotation(root, frame) for frame in frames]
    if split == "train":
        pid_map = contiguous_pid_map(pid for pids, _ in annotations for pid in pids)
    records = []
    for frame, (pids, xywh) in zip(frames, annotations):
        if split == "train":
            pids = [pid_map.get(int(p), UNLABELED) for p in pids]
        else:
            pids = np.where(pids < 0, UNLABELED, pids)
        path = os.path.join(root, "frames", frame)
        height, width = image_size(path)
        records.append(person_record(path, frame, height, width, camera_of(frame), xywh_to_xyxy(xywh), pids))
    return clean_person_boxes(records, f"PRW {split} ({root})")


def read_query_info(path: str) -> list:
    """``query_info.txt``-style list → ``[{"image", "box": xyxy (clipped at 0), "pid": int, "camid"}]``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found (expected one query a line: 'pid x y w h frame')")
    with open(path, newline=None) as f:  # universal newlines: CRLF and LF alike
        lines = [line.split() for line in f]
    queries = []
    for number, fields in enumerate(lines, start=1):
        if not fields:
            continue
        malformed = f"{path}, line {number}: expected 'pid x y w h frame', got {' '.join(fields)!r}"
        if len(fields) != 6:
            raise ValueError(malformed)
        try:
            pid, xywh, frame = int(fields[0]), np.clip([float(v) for v in fields[1:5]], 0, None), fields[5]
        except ValueError:
            raise ValueError(malformed) from None
        image = _with_jpg(frame)
        queries.append({"image": image, "box": xywh_to_xyxy(xywh)[0], "pid": pid, "camid": camera_of(image)})
    return queries


def build_prw_queries(test_dicts: list, query_records: list, ignore_cam_id: bool = True) -> list:
    """Each query against every test frame but its own (and, with ``ignore_cam_id=False``, its camera's).

    A gallery entry carries the box of the query's person where that frame holds it — the first such box when
    the pid occurs twice, as SeqNet's ``query_gts[img].ravel()`` — else None. ``test_dicts`` must keep raw pids.
    Negative entries are shared between queries: treat the result as read-only.
    """
    first_box = []  # per frame: {pid: first xyxy box}
    for record in test_dicts:
        boxes = {}
        for ann in record["annotations"]:
            if ann["person_id"] >= 0:
                boxes.setdefault(ann["person_id"], np.asarray(ann["bbox"], dtype=np.float64))
        first_box.append(boxes)
    negatives = [{"image": record["image_id"], "box": None} for record in test_dicts]
    file_names = {record["image_id"]: record["file_name"] for record in test_dicts}

    queries = []
    for query in query_records:
        if query["image"] not in file_names:
            raise ValueError(f"PRW query frame {query['image']} (pid {query['pid']}) is not a test frame")
        gallery = [
            negative if query["pid"] not in boxes else {"image": negative["image"], "box": boxes[query["pid"]]}
            for record, boxes, negative in zip(test_dicts, first_box, negatives)
            if record["image_id"] != query["image"] and (ignore_cam_id or record["camid"] != query["camid"])
        ]
        queries.append({"query": dict(query, file_name=file_names[query["image"]]), "gallery": gallery})
    return queries


def load_prw_queries(root: str, query_file: str = "query_info.txt", gallery_size: int = -1,
                     ignore_cam_id: bool = True, test_dicts: list = None) -> list:
    """PRW (``query_info.txt``) or PRW-mini (``prwmini_query_info.txt``) queries over the test frames.

    ``gallery_size`` exists for a uniform protocol signature: PRW galleries are always the whole test set (-1).
    """
    if gallery_size not in (-1, None):
        raise ValueError(f"PRW has no gallery-size protocols (the gallery is all test frames); got {gallery_size}")
    if test_dicts is None:
        test_dicts = load_prw(root, "test")
    return build_prw_queries(test_dicts, read_query_info(os.path.join(root, query_file)), ignore_cam_id)
