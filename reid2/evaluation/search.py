"""Person-search evaluation: search mAP / top-k and detection AP / recall, exactly as the original OIM code.

Reference: ``ShuangLI59/person_search lib/datasets/psdb.py`` (``evaluate_search``, ``evaluate_detections``),
whose search loop SeqNet/COAT ``eval_func.py`` copy. Semantics kept on purpose:

* search: detections with score >= ``det_thresh``; for a gallery entry holding the person, its detections are
  sorted by similarity and only the first with IoU >= min(0.5, w·h/((w+10)(h+10))) is a positive;
  AP = sklearn's ``average_precision_score`` over every kept detection of the gallery × found/ground-truth entries
  (0 when none found — also for a query without any ground truth, where psdb would divide by zero);
  an entry listed twice contributes twice (psdb; SeqNet evaluates it once but counts it twice).
* detection: IoU >= ``iou_thresh`` pairs kept only when each is the other's best (mutual max, not
  score-ordered greedy); AP = average precision × recall; with ``labeled_only_mask`` images without
  labelled people are skipped and detections of unlabelled people count as false positives (psdb/SeqNet).
* IoU on continuous coordinates (no +1), as psdb's ``_compute_iou``.
"""
import numpy as np

__all__ = ["average_precision", "pairwise_iou", "small_box_iou_threshold", "search_performance",
           "detection_performance"]


def average_precision(labels, scores, order=None) -> float:
    """``sklearn.metrics.average_precision_score`` of binary labels: Σ (R_i − R_{i−1})·P_i over distinct scores.

    Same value (tests compare), without sklearn's input validation, which costs more than the computation
    when called once per query. ``order``: indices sorting ``scores`` descending, if already computed.
    """
    labels, scores = np.asarray(labels, dtype=bool), np.asarray(scores)
    if order is None:
        order = np.argsort(scores)[::-1]
    scores, labels = scores[order], labels[order]
    last_of_each_score = np.append(np.flatnonzero(np.diff(scores)), len(scores) - 1)
    true_positives = np.cumsum(labels)[last_of_each_score]
    if true_positives[-1] == 0:
        raise ValueError("average_precision needs at least one positive label")
    precision = true_positives / (last_of_each_score + 1)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def pairwise_iou(boxes_a, boxes_b) -> np.ndarray:
    """(N,4) × (M,4) xyxy → (N,M) IoU; 0 where the union is empty."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    wh = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def small_box_iou_threshold(box) -> float:
    """OIM's matching threshold for a ground-truth box: 0.5, lowered for small people (w·h/((w+10)(h+10)))."""
    w, h = float(box[2] - box[0]), float(box[3] - box[1])
    return min(0.5, w * h / ((w + 10) * (h + 10)))


class _DetectionTable:
    """Kept detections of every image concatenated, so a gallery is a set of row ranges."""

    def __init__(self, detections: dict, det_thresh: float, with_feats: bool = True):
        names, boxes, scores, feats = [], [], [], []
        for name, det in detections.items():
            keep = np.asarray(det[1], dtype=np.float64).reshape(-1) >= det_thresh
            det_boxes = np.asarray(det[0], dtype=np.float64).reshape(-1, 4)
            if len(det_boxes) != len(keep) or (with_feats and len(det[2]) != len(keep)):
                raise ValueError(f"detections[{name!r}]: boxes, scores and feats must have the same length "
                                 f"(got {len(det_boxes)}, {len(keep)}, {len(det[2]) if with_feats else '-'})")
            if not keep.any():
                continue
            names.append(name)
            boxes.append(det_boxes[keep])
            scores.append(np.asarray(det[1], dtype=np.float64).reshape(-1)[keep])
            if with_feats:
                feats.append(np.asarray(det[2])[keep])
        self.index = {name: i for i, name in enumerate(names)}
        counts = np.asarray([len(s) for s in scores], dtype=np.int64)
        # one trailing empty image: index -1 = "no kept detection in this image"
        self.counts = np.append(counts, 0)
        self.starts = np.append(np.cumsum(counts) - counts, 0)
        self.boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
        self.scores = np.concatenate(scores) if scores else np.zeros(0)
        self.feats = np.concatenate(feats) if feats else np.zeros((0, 0), dtype=np.float32)

    def rows_of(self, image_names) -> tuple:
        """(rows, begins, ends): table rows of the images' detections, concatenated; [begins, ends) per image."""
        images = np.fromiter((self.index.get(name, -1) for name in image_names), np.int64)
        counts = self.counts[images]
        ends = np.cumsum(counts)
        begins = ends - counts
        total = int(ends[-1]) if len(ends) else 0
        rows = np.repeat(self.starts[images] - begins, counts) + np.arange(total)
        return rows, begins, ends

    def similarities(self, rows, feat) -> np.ndarray:
        """feats[rows] · feat, each distinct row computed once so that repeated rows tie exactly."""
        feat = np.asarray(feat, dtype=self.feats.dtype).reshape(-1)
        if len(rows) == 0:
            return np.zeros(0, dtype=self.feats.dtype)
        if 2 * len(rows) >= len(self.feats):  # rows cover most of the table: one product over all of it
            return (self.feats @ feat)[rows]
        distinct, inverse = np.unique(rows, return_inverse=True)
        return (self.feats[distinct] @ feat)[inverse]


def _evaluate_query(feat, gallery, table: _DetectionTable, topk) -> tuple:
    """(AP, [top-k hit for k in topk]) of one query."""
    rows, begins, ends = table.rows_of(entry["image"] for entry in gallery)
    sims = table.similarities(rows, feat)
    labels = np.zeros(len(rows), dtype=bool)
    num_gt = 0
    for j, entry in enumerate(gallery):
        if entry["box"] is None:
            continue
        num_gt += 1
        segment = slice(begins[j], ends[j])
        order = np.argsort(sims[segment])[::-1]  # psdb's order, so ties break the same way downstream
        rows[segment], sims[segment] = rows[segment][order], sims[segment][order]
        gt_box = np.asarray(entry["box"], dtype=np.float64)
        ious = pairwise_iou(table.boxes[rows[segment]], gt_box)[:, 0]
        matches = np.flatnonzero(ious >= small_box_iou_threshold(gt_box))
        if matches.size:
            labels[begins[j] + matches[0]] = True
    found = int(labels.sum())
    if found == 0:
        return 0.0, [False] * len(topk)
    order = np.argsort(sims)[::-1]  # psdb's ranking (its tie order decides top-k between equal scores)
    ap = average_precision(labels, sims, order) * found / num_gt
    first_hit = int(np.argmax(labels[order]))
    return ap, [first_hit < k for k in topk]


def search_performance(queries, detections, det_thresh=0.5, topk=(1, 5, 10)) -> dict:
    """Search mAP and top-k (fractions) over ``queries``.

    Args:
        queries: ``[{"feat": (D,), "gallery": [{"image": str, "box": (4,) xyxy or None}, ...]}, ...]``.
        detections: image name → ``(boxes (N,4) xyxy, scores (N,), feats (N,D))``; images absent here have no
            detections (their ground truths still count). Similarity is the plain dot product: pass
            L2-normalised query and detection features for cosine similarity.
    Returns:
        ``{"mAP", "top1", "top5", "top10"}`` (one ``top<k>`` per ``k`` in ``topk``).
    """
    if len(queries) == 0:
        raise ValueError("search_performance needs at least one query")
    table = _DetectionTable(detections, det_thresh)
    aps, hits = [], []
    for number, query in enumerate(queries):
        if "feat" not in query or "gallery" not in query:
            raise ValueError(f"query {number}: expected a dict with 'feat' and 'gallery', got keys {list(query)}")
        ap, hit = _evaluate_query(query["feat"], query["gallery"], table, topk)
        aps.append(ap)
        hits.append(hit)
    hits = np.asarray(hits, dtype=np.float64)
    result = {"mAP": float(np.mean(aps))}
    result.update({f"top{k}": float(hits[:, i].mean()) for i, k in enumerate(topk)})
    return result


def _mutual_best_matches(ious, iou_thresh) -> np.ndarray:
    """Bool (M,N): IoU >= thresh and each is the other's highest-IoU partner (first index on ties, as argmax)."""
    best_gt_of_det = ious.argmax(axis=0)
    best_det_of_gt = ious.argmax(axis=1)
    matched = ious >= iou_thresh
    matched &= best_gt_of_det[None, :] == np.arange(ious.shape[0])[:, None]
    matched &= best_det_of_gt[:, None] == np.arange(ious.shape[1])[None, :]
    return matched


def detection_performance(gt_boxes, detections, det_thresh=0.5, iou_thresh=0.5, labeled_only_mask=None) -> dict:
    """Detection ``{"AP", "recall"}`` over the images of ``gt_boxes``.

    Args:
        gt_boxes: image name → (M,4) xyxy ground-truth boxes; it defines the evaluated images.
        detections: image name → ``(boxes (N,4), scores (N,), ...)`` (extra items such as feats ignored).
        labeled_only_mask: image name → bool (M,): evaluate labelled people only.
    """
    table = _DetectionTable(detections, det_thresh, with_feats=False)
    y_true, y_score = [], []
    num_gt = num_tp = 0
    for name, gt in gt_boxes.items():
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
        if labeled_only_mask is not None:
            if name not in labeled_only_mask:
                raise ValueError(f"labeled_only_mask has no entry for image {name!r}")
            gt = gt[np.asarray(labeled_only_mask[name], dtype=bool)]
            if len(gt) == 0:
                continue
        rows, _, _ = table.rows_of([name])
        num_gt += len(gt)
        if len(rows) == 0:
            continue
        matched = np.zeros((0, len(rows)), dtype=bool)
        if len(gt):
            matched = _mutual_best_matches(pairwise_iou(gt, table.boxes[rows]), iou_thresh)
        y_true.append(matched.any(axis=0))
        y_score.append(table.scores[rows])
        num_tp += int(matched.sum())
    recall = num_tp / num_gt if num_gt else 0.0
    if num_tp == 0:
        return {"AP": 0.0, "recall": recall}
    ap = average_precision(np.concatenate(y_true), np.concatenate(y_score)) * recall
    return {"AP": float(ap), "recall": float(recall)}
