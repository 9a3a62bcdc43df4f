"""Person-search detection records shared by the loaders, and the AlignPS-style COCO json with ``person_id``.

Every person-search loader (CUHK-SYSU, PRW, COCO json) returns Detectron2 detection dicts::

    {"file_name": abs path, "image_id": image name (e.g. "s1.jpg"), "height", "width", "camid": int or -1,
     "annotations": [{"bbox": [x1, y1, x2, y2], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0,
                      "person_id": int}]}

``person_id``: -1 = unlabelled person; >= 0 = a training class (contiguous 0..N-1) in training sets, or the
identity key the query protocol matches against in test sets.
"""
import json
import logging
import os
import re

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

__all__ = [
    "xywh_to_xyxy",
    "image_size",
    "camera_of",
    "person_record",
    "clean_person_boxes",
    "contiguous_pid_map",
    "load_coco_person_json",
    "register_coco_person",
]

UNLABELED = -1
_logger = logging.getLogger(__name__)
_CAMERA_PATTERN = re.compile(r"c(\d+)s\d+_")


def xywh_to_xyxy(boxes) -> np.ndarray:
    """(N,4) [x, y, w, h] → float64 [x1, y1, x2, y2]; cast first so uint8/uint16 MATLAB boxes cannot overflow."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def image_size(path: str) -> tuple:
    """(height, width) read from the image header only (no pixel decoding)."""
    from PIL import Image

    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    with Image.open(path) as img:
        width, height = img.size
    return height, width


def camera_of(image_name: str) -> int:
    """Camera number of a PRW frame name ``c<cam>s<seq>_<frame>``; -1 for names without one."""
    match = _CAMERA_PATTERN.match(os.path.basename(image_name))
    return int(match.group(1)) if match else -1


def person_record(file_name, image_name, height, width, camid, boxes_xyxy, pids) -> dict:
    """One detection dict with every box as given: :func:`clean_person_boxes` then drops or clips bad ones."""
    boxes_xyxy = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    pids = np.asarray(pids, dtype=np.int64).reshape(-1)
    return {
        "file_name": file_name,
        "image_id": image_name,
        "height": int(height),
        "width": int(width),
        "camid": int(camid),
        "annotations": [
            {"bbox": box.tolist(), "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "person_id": int(pid)}
            for box, pid in zip(boxes_xyxy, pids)
        ],
    }


def clean_person_boxes(records: list, dataset: str) -> list:
    """``records`` with boxes of non-positive size (or not finite) dropped and boxes reaching outside their
    ``width`` x ``height`` image clipped to it (dropped when nothing is left inside), in place. One warning per
    call (a dataset split) gives the counts and the first file of each kind; a record with such boxes lists
    them in ``"bad_boxes"`` (``[(xyxy as annotated, "dropped" | "clipped")]``, read by tools/check_dataset.py)."""
    dropped, clipped = [0, None], [0, None]
    for record in records:
        width, height = record["width"], record["height"]
        kept, bad = [], []
        for ann in record["annotations"]:
            x1, y1, x2, y2 = box = [float(v) for v in ann["bbox"]]
            if not (np.isfinite(box).all() and x2 > x1 and y2 > y1):
                dropped = [dropped[0] + 1, dropped[1] or f"{record['file_name']} box {box}"]
                bad.append((box, "dropped: non-positive size"))
                continue
            inside = [max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))]
            if inside != box:
                if not (inside[2] > inside[0] and inside[3] > inside[1]):
                    dropped = [dropped[0] + 1, dropped[1] or f"{record['file_name']} box {box} (outside the image)"]
                    bad.append((box, f"dropped: outside the {width}x{height} image"))
                    continue
                clipped = [clipped[0] + 1, clipped[1] or f"{record['file_name']} box {box} ({width}x{height})"]
                bad.append((box, f"clipped to the {width}x{height} image"))
                ann = dict(ann, bbox=inside)
            kept.append(ann)
        record["annotations"] = kept
        if bad:
            record["bad_boxes"] = bad
    if dropped[0] or clipped[0]:
        _logger.warning("%s: %d boxes dropped (non-positive size, or nothing inside the image; first: %s); %d boxes "
                        "reaching outside their image clipped to it (first: %s)", dataset, dropped[0],
                        dropped[1] or "-", clipped[0], clipped[1] or "-")
    return records


def contiguous_pid_map(raw_pids) -> dict:
    """Sorted labelled raw ids (>= 0) → 0..N-1; negative raw ids are the datasets' "unlabelled" codes."""
    labelled = sorted({int(p) for p in raw_pids if p >= 0})
    return {pid: label for label, pid in enumerate(labelled)}


def load_coco_person_json(json_file: str, image_root: str, relabel: bool = True) -> list:
    """COCO json whose boxes carry ``person_id`` (AlignPS ``{train,test}_pid.json``) → detection dicts.

    Negative ``person_id`` (-2/-1 in AlignPS files) becomes -1. ``relabel=True`` maps the labelled ids to
    0..N-1 (training sets); ``relabel=False`` keeps the raw ids, which a test set needs so that query lists
    (``query_info.txt``: raw PRW ids) can be matched against it.
    """
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"{json_file} not found (expected a COCO json with 'images' and 'annotations')")
    with open(json_file) as f:
        coco = json.load(f)
    if not isinstance(coco, dict) or "images" not in coco or "annotations" not in coco:
        raise ValueError(f"{json_file}: expected a COCO json object with keys 'images' and 'annotations'")
    person_categories = {c["id"] for c in coco.get("categories", []) if c.get("name") == "person"}
    if coco.get("categories") and not person_categories:
        raise ValueError(f"{json_file}: no category named 'person' in 'categories'")

    annotations_by_image = {}
    for ann in coco["annotations"]:
        if "person_id" not in ann or "bbox" not in ann:
            raise ValueError(f"{json_file}: annotation {ann.get('id')} lacks 'bbox' or 'person_id'")
        if person_categories and ann.get("category_id") not in person_categories:
            continue
        annotations_by_image.setdefault(ann["image_id"], []).append(ann)

    raw_pids = [ann["person_id"] for anns in annotations_by_image.values() for ann in anns]
    pid_map = contiguous_pid_map(raw_pids) if relabel else None
    records = []
    for image in coco["images"]:
        anns = annotations_by_image.get(image["id"], [])
        pids = [_relabel(ann["person_id"], pid_map) for ann in anns]
        name = image["file_name"]
        records.append(person_record(
            os.path.join(image_root, name), os.path.basename(name), image["height"], image["width"],
            camera_of(name), xywh_to_xyxy([ann["bbox"] for ann in anns]), pids,
        ))
    return clean_person_boxes(records, json_file)


def _relabel(pid, pid_map):
    if pid < 0:
        return UNLABELED
    return pid_map[pid] if pid_map is not None else int(pid)


def register_coco_person(name: str, json_file: str, image_root: str, relabel: bool = True, **metadata) -> None:
    """Register a person-search COCO json like Detectron2's ``register_coco_instances``."""
    DatasetCatalog.register(name, lambda: load_coco_person_json(json_file, image_root, relabel))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, thing_classes=["person"], **metadata)
