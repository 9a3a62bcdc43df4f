"""Glue between registered person-search test sets and the pure functions of ``search.py``.

A test set registered with ``evaluator_type="person_search"`` has metadata ``query_loader`` (a callable
``query_loader(gallery_size=..., **options) -> list``) and a default ``gallery_size``. Its queries are
``[{"query": {"image", "file_name", "box": xyxy, "pid", ...}, "gallery": [{"image", "box"}, ...]}]``; an
evaluator embeds each ``query["box"]`` in ``query["file_name"]`` and passes
``{"feat": embedding, "gallery": q["gallery"]}`` to ``search_performance``. Detections are keyed by the
dataset dicts' ``image_id`` (the image name), which is what gallery entries name.
"""
import logging

import numpy as np
from detectron2.data import MetadataCatalog

__all__ = ["get_queries", "check_query_boxes", "detection_ground_truth"]

_logger = logging.getLogger(__name__)


def get_queries(dataset_name: str, gallery_size: int = None, **options) -> list:
    """Queries of a registered person-search test set; ``gallery_size=None`` uses the metadata's default.

    ``options`` go to the loader (e.g. ``ignore_cam_id=False`` for PRW's cross-camera protocol). Query boxes
    are checked against their images (:func:`check_query_boxes`).
    """
    metadata = MetadataCatalog.get(dataset_name)
    loader = metadata.get("query_loader")
    if loader is None:
        raise KeyError(f"dataset {dataset_name!r} has no 'query_loader' in its metadata: "
                       "it is not a registered person-search test set")
    if gallery_size is None:
        gallery_size = metadata.get("gallery_size", -1)
    return check_query_boxes(loader(gallery_size=gallery_size, **options), dataset_name)


def check_query_boxes(queries: list, dataset_name: str = "queries", image_size=None) -> list:
    """``queries`` with each query box checked against its image (size from the image header).

    A box that is empty, not finite or wholly outside its image would be embedded from padding: an error
    naming the query. A box reaching partly outside (annotation slop of a few pixels, as in PRW) is clipped
    to the image, with one warning giving the count and the first query image.
    """
    if image_size is None:
        from reid2.data.datasets.coco_person import image_size
    sizes, clipped, first = {}, 0, None
    for number, q in enumerate(queries):
        query = q["query"]
        box = np.asarray(query["box"], dtype=np.float64).reshape(-1)
        file_name = query.get("file_name", query.get("image"))
        where = (f"{dataset_name}: query {number} (image {file_name}, pid {query.get('pid')}, "
                 f"box {box.round(2).tolist()})")
        if box.shape != (4,) or not np.isfinite(box).all() or not (box[2] > box[0] and box[3] > box[1]):
            raise ValueError(f"{where}: expected a finite x1 y1 x2 y2 box with x2 > x1 and y2 > y1")
        if file_name not in sizes:
            sizes[file_name] = image_size(file_name)
        height, width = sizes[file_name]
        inside = np.array([max(box[0], 0.0), max(box[1], 0.0), min(box[2], width), min(box[3], height)])
        if not (inside[2] > inside[0] and inside[3] > inside[1]):
            raise ValueError(f"{where} lies outside its {width}x{height} image: nothing of the person to embed "
                             "(fix the query annotation)")
        if not np.array_equal(inside, box):
            clipped += 1
            first = first or f"{file_name} (query {number}, box {box.round(2).tolist()})"
            q["query"] = dict(query, box=inside)
    if clipped:
        _logger.warning("%s: %d query boxes reaching outside their image clipped to it; first: %s",
                        dataset_name, clipped, first)
    return queries


def detection_ground_truth(dataset_dicts: list) -> tuple:
    """Person-search dicts → ``(gt_boxes, labeled_mask)`` for ``detection_performance``.

    ``gt_boxes``: image_id → (M,4) xyxy; ``labeled_mask``: image_id → bool (M,) true for ``person_id >= 0``.
    """
    gt_boxes, labeled_mask = {}, {}
    for record in dataset_dicts:
        anns = record["annotations"]
        gt_boxes[record["image_id"]] = np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        labeled_mask[record["image_id"]] = np.asarray([a["person_id"] >= 0 for a in anns], dtype=bool)
    return gt_boxes, labeled_mask
