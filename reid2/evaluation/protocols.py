"""Glue between registered person-search test sets and the pure functions of ``search.py``.

A test set registered with ``evaluator_type="person_search"`` has metadata ``query_loader`` (a callable
``query_loader(gallery_size=..., **options) -> list``) and a default ``gallery_size``. Its queries are
``[{"query": {"image", "file_name", "box": xyxy, "pid", ...}, "gallery": [{"image", "box"}, ...]}]``; an
evaluator embeds each ``query["box"]`` in ``query["file_name"]`` and passes
``{"feat": embedding, "gallery": q["gallery"]}`` to ``search_performance``. Detections are keyed by the
dataset dicts' ``image_id`` (the image name), which is what gallery entries name.
"""
import numpy as np
from detectron2.data import MetadataCatalog

__all__ = ["get_queries", "detection_ground_truth"]


def get_queries(dataset_name: str, gallery_size: int = None, **options) -> list:
    """Queries of a registered person-search test set; ``gallery_size=None`` uses the metadata's default.

    ``options`` go to the loader (e.g. ``ignore_cam_id=False`` for PRW's cross-camera protocol).
    """
    metadata = MetadataCatalog.get(dataset_name)
    loader = metadata.get("query_loader")
    if loader is None:
        raise KeyError(f"dataset {dataset_name!r} has no 'query_loader' in its metadata: "
                       "it is not a registered person-search test set")
    if gallery_size is None:
        gallery_size = metadata.get("gallery_size", -1)
    return loader(gallery_size=gallery_size, **options)


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
