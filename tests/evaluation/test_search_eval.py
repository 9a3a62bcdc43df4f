"""Person-search evaluation: hand-built cases and agreement with straightforward loop implementations."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from reid2.evaluation.search import (
    average_precision,
    detection_performance,
    pairwise_iou,
    search_performance,
    small_box_iou_threshold,
)


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


E1, E2, E3 = np.eye(3)
BOX_A = np.array([0.0, 0.0, 100.0, 200.0])
BOX_B = np.array([300.0, 0.0, 400.0, 200.0])


def dets(boxes, scores, feats):
    return np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores, float), np.asarray(feats, float).reshape(-1, 3)


# ----------------------------------------------------------------------------------------------- basics
def test_pairwise_iou_hand_values():
    iou = pairwise_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10], [3, 3, 3, 8]])
    np.testing.assert_allclose(iou, [[50 / 150, 0.0, 1.0, 0.0]])


def test_small_box_iou_threshold():
    assert small_box_iou_threshold([0, 0, 100, 200]) == 0.5
    # 20x40: 800 / (30 * 50) = 0.533 -> still 0.5; 10x20: 200 / (20 * 30) = 1/3
    assert small_box_iou_threshold([5, 5, 25, 45]) == 0.5
    assert small_box_iou_threshold([5, 5, 15, 25]) == pytest.approx(1 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_equals_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, 60).astype(float)  # many ties
    labels = rng.random(60) < 0.3
    labels[0] = True
    assert average_precision(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


# ----------------------------------------------------------------------------------------------- search
def test_perfect_detections_give_one():
    detections = {
        "a.jpg": dets([BOX_A, BOX_B], [0.9, 0.9], [E1, E2]),
        "b.jpg": dets([BOX_A, BOX_B], [0.9, 0.9], [E2, E1]),
        "c.jpg": dets([BOX_A], [0.9], [E3]),
    }
    queries = [
        {"feat": E1, "gallery": [{"image": "a.jpg", "box": BOX_A}, {"image": "b.jpg", "box": BOX_B},
                                 {"image": "c.jpg", "box": None}]},
        {"feat": E3, "gallery": [{"image": "c.jpg", "box": BOX_A}, {"image": "a.jpg", "box": None}]},
    ]
    assert search_performance(queries, detections) == {"mAP": 1.0, "top1": 1.0, "top5": 1.0, "top10": 1.0}


def test_missed_person_scales_ap_by_recall():
    # two ground truths; the second image has no detection of the person: AP 1.0 (ranking) x recall 1/2
    detections = {"a.jpg": dets([BOX_A, BOX_B], [0.9, 0.9], [E1, E2]),
                  "b.jpg": dets([BOX_B], [0.9], [E3])}
    queries = [{"feat": E1, "gallery": [{"image": "a.jpg", "box": BOX_A}, {"image": "b.jpg", "box": BOX_A},
                                        {"image": "absent.jpg", "box": None}]}]
    result = search_performance(queries, detections)
    assert result["mAP"] == pytest.approx(0.5)
    assert result["top1"] == 1.0
    # an image absent from the detections still counts its ground truth
    queries[0]["gallery"].append({"image": "absent.jpg", "box": BOX_A})
    assert search_performance(queries, detections)["mAP"] == pytest.approx(1 / 3)


def test_most_similar_overlapping_detection_is_the_only_positive():
    # two detections overlap the ground truth; only the more similar one counts, the other is a false positive
    shifted = BOX_A + [0, 20, 0, 20]  # IoU 180/220 with BOX_A
    detections = {"a.jpg": dets([BOX_A, shifted], [0.9, 0.9], [unit([1, 1, 0]), E1])}
    queries = [{"feat": E1, "gallery": [{"image": "a.jpg", "box": BOX_A}]}]
    result = search_performance(queries, detections)
    assert result["mAP"] == 1.0 and result["top1"] == 1.0  # the shifted (more similar) box is the positive
    queries[0]["feat"] = unit([1, 1, 0])
    assert search_performance(queries, detections)["mAP"] == 1.0


def test_small_box_rule_accepts_lower_iou_for_small_people():
    small_gt = np.array([0.0, 0.0, 10.0, 20.0])  # threshold 1/3
    small_det = np.array([0.0, 0.0, 10.0, 8.0])  # IoU 0.4
    big_gt, big_det = small_gt * 10, small_det * 10  # same IoU 0.4, threshold 0.5
    detections = {"s.jpg": dets([small_det], [0.9], [E1]), "b.jpg": dets([big_det], [0.9], [E1])}
    small = search_performance([{"feat": E1, "gallery": [{"image": "s.jpg", "box": small_gt}]}], detections)
    big = search_performance([{"feat": E1, "gallery": [{"image": "b.jpg", "box": big_gt}]}], detections)
    assert small["mAP"] == 1.0 and big["mAP"] == 0.0 and big["top10"] == 0.0


def test_detection_below_threshold_is_ignored():
    # a wrong detection more similar to the query than the right one, but with score 0.4 < 0.5
    detections = {"a.jpg": dets([BOX_A], [0.9], [unit([1, 1, 0])]),
                  "b.jpg": dets([BOX_A], [0.4], [E1])}
    queries = [{"feat": E1, "gallery": [{"image": "a.jpg", "box": BOX_A}, {"image": "b.jpg", "box": None}]}]
    assert search_performance(queries, detections)["top1"] == 1.0
    lowered = search_performance(queries, detections, det_thresh=0.3)
    assert lowered["top1"] == 0.0 and lowered["top5"] == 1.0 and lowered["mAP"] == pytest.approx(0.5)


def test_duplicate_gallery_entries_are_evaluated_twice():
    # one image listed twice with two different boxes: labels (1,0) and (0,1) over scores (s1,s2,s1,s2)
    # -> sklearn AP over 4 items = 0.5·0.5 + 0.5·0.5 = 0.5, recall 2/2
    detections = {"a.jpg": dets([BOX_A, BOX_B], [0.9, 0.9], [unit([2, 1, 0]), unit([1, 2, 0])])}
    queries = [{"feat": E1, "gallery": [{"image": "a.jpg", "box": BOX_A}, {"image": "a.jpg", "box": BOX_B}]}]
    assert search_performance(queries, detections)["mAP"] == pytest.approx(0.5)


def test_custom_topk_and_query_without_ground_truth():
    detections = {"a.jpg": dets([BOX_A], [0.9], [E1])}
    queries = [{"feat": E1, "gallery": [{"image": "a.jpg", "box": BOX_A}]},
               {"feat": E1, "gallery": [{"image": "a.jpg", "box": None}]}]
    assert search_performance(queries, detections, topk=(1, 3)) == {"mAP": 0.5, "top1": 0.5, "top3": 0.5}


def test_bad_input_errors():
    with pytest.raises(ValueError, match="at least one query"):
        search_performance([], {})
    with pytest.raises(ValueError, match="'feat' and 'gallery'"):
        search_performance([{"gallery": []}], {})
    with pytest.raises(ValueError, match="same length"):
        search_performance([{"feat": E1, "gallery": []}], {"a.jpg": (np.zeros((2, 4)), np.ones(3), np.zeros((2, 3)))})


# ----------------------------------------------------------------------------------------------- detection
def test_detection_perfect_and_missed():
    gt = {"a.jpg": np.array([BOX_A, BOX_B]), "b.jpg": np.array([BOX_A])}
    perfect = {"a.jpg": (np.array([BOX_A, BOX_B]), np.array([0.9, 0.8])), "b.jpg": (np.array([BOX_A]), [0.7])}
    assert detection_performance(gt, perfect) == {"AP": 1.0, "recall": 1.0}
    missed = {"a.jpg": (np.array([BOX_A]), np.array([0.9])), "b.jpg": (np.array([BOX_A]), [0.7])}
    result = detection_performance(gt, missed)
    assert result["recall"] == pytest.approx(2 / 3) and result["AP"] == pytest.approx(2 / 3)


def test_detection_mutual_best_matching_and_threshold():
    gt = {"a.jpg": np.array([BOX_A])}
    # two detections on one person: only the highest-IoU one matches, the other is a false positive ranked first
    boxes = np.array([BOX_A + [0, 10, 0, 10], BOX_A])
    result = detection_performance(gt, {"a.jpg": (boxes, np.array([0.9, 0.8]))})
    assert result["recall"] == 1.0 and result["AP"] == pytest.approx(0.5)
    # the same false positive below det_thresh disappears
    result = detection_performance(gt, {"a.jpg": (boxes, np.array([0.3, 0.8]))})
    assert result == {"AP": 1.0, "recall": 1.0}


def test_detection_labeled_only():
    gt = {"a.jpg": np.array([BOX_A, BOX_B]), "b.jpg": np.array([BOX_A])}
    mask = {"a.jpg": np.array([True, False]), "b.jpg": np.array([False])}
    detections = {"a.jpg": (np.array([BOX_A, BOX_B]), np.array([0.9, 0.95])), "b.jpg": (np.array([BOX_B]), [0.99])}
    # image b has no labelled person: skipped; the detection of the unlabelled person in a is a false positive
    result = detection_performance(gt, detections, labeled_only_mask=mask)
    assert result["recall"] == 1.0 and result["AP"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no entry for image"):
        detection_performance(gt, detections, labeled_only_mask={"a.jpg": mask["a.jpg"]})


# ----------------------------------------------------------------------------------------------- vs loops
def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union


def loop_search(queries, detections, det_thresh=0.5, topk=(1, 5, 10)):
    """Per entry, per detection, in plain Python (the original evaluate_search, including its orderings,
    which decide top-k between equal scores: an image listed twice gives tied scores)."""
    aps, hits = [], []
    for query in queries:
        labels, scores, num_gt = [], [], 0
        for entry in query["gallery"]:
            num_gt += entry["box"] is not None
            boxes, det_scores, feats = detections.get(entry["image"], (np.zeros((0, 4)), [], []))
            kept = [(float(np.dot(f, query["feat"])), b)
                    for b, s, f in zip(boxes, det_scores, feats) if s >= det_thresh]
            if entry["box"] is not None:
                kept = [kept[i] for i in np.argsort([sim for sim, _ in kept])[::-1]]
            matched = entry["box"] is None
            for sim, box in kept:
                positive = False
                if not matched:
                    w, h = entry["box"][2] - entry["box"][0], entry["box"][3] - entry["box"][1]
                    positive = matched = _iou(box, entry["box"]) >= min(0.5, w * h / ((w + 10) * (h + 10)))
                labels.append(positive)
                scores.append(sim)
        found = sum(labels)
        aps.append(average_precision_score(labels, scores) * found / num_gt if found else 0.0)
        ranked = np.asarray(labels, dtype=bool)[np.argsort(scores)[::-1]]
        hits.append([bool(ranked[:k].any()) for k in topk])
    return {"mAP": np.mean(aps), **{f"top{k}": np.mean([h[i] for h in hits]) for i, k in enumerate(topk)}}


def loop_detection(gt_boxes, detections, det_thresh=0.5, iou_thresh=0.5):
    labels, scores, num_gt, num_tp = [], [], 0, 0
    for name, gts in gt_boxes.items():
        boxes, det_scores = detections.get(name, (np.zeros((0, 4)), []))[:2]
        kept = [(b, s) for b, s in zip(boxes, det_scores) if s >= det_thresh]
        num_gt += len(gts)
        for j, (box, score) in enumerate(kept):
            ious = [_iou(g, box) for g in gts]
            i = int(np.argmax(ious)) if ious else -1
            # mutual best: det j's best gt i, and gt i's best det is j
            tp = i >= 0 and ious[i] >= iou_thresh and int(np.argmax([_iou(gts[i], b) for b, _ in kept])) == j
            num_tp += tp
            labels.append(tp)
            scores.append(score)
    recall = num_tp / num_gt
    return {"AP": average_precision_score(labels, scores) * recall if num_tp else 0.0, "recall": recall}


def random_case(seed, num_images=12, num_queries=15, dim=8):
    rng = np.random.default_rng(seed)
    gt_boxes, detections = {}, {}
    for i in range(num_images):
        xy = rng.uniform(0, 300, (rng.integers(0, 4), 2))
        gts = np.hstack([xy, xy + rng.uniform([5, 10], [80, 160], (len(xy), 2))])
        gt_boxes[f"{i}.jpg"] = gts
        if i == 0:
            continue  # one image without any detection entry
        around = gts[rng.integers(0, len(gts), rng.integers(0, 6))] if len(gts) else np.zeros((0, 4))
        noise = rng.normal(0, 4, around.shape)
        boxes = np.vstack([around + noise, [[10, 10, 60, 120]]])
        feats = rng.standard_normal((len(boxes), dim))
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        detections[f"{i}.jpg"] = (boxes, rng.uniform(0.1, 1, len(boxes)), feats)
    queries = []
    for _ in range(num_queries):
        gallery = []
        for image in rng.choice(list(gt_boxes), 8):  # duplicates allowed
            gts = gt_boxes[image]
            box = gts[rng.integers(len(gts))] if len(gts) and rng.random() < 0.4 else None
            gallery.append({"image": str(image), "box": box})
        queries.append({"feat": unit(rng.standard_normal(dim)), "gallery": gallery})
    return queries, detections, gt_boxes


@pytest.mark.parametrize("seed", range(8))
def test_search_matches_loop_implementation(seed):
    queries, detections, _ = random_case(seed)
    for thresh in (0.3, 0.5):
        fast, slow = search_performance(queries, detections, thresh), loop_search(queries, detections, thresh)
        assert fast.keys() == slow.keys()
        for key in fast:
            assert fast[key] == pytest.approx(slow[key], abs=1e-12), key


@pytest.mark.parametrize("seed", range(8))
def test_detection_matches_loop_implementation(seed):
    _, detections, gt_boxes = random_case(seed)
    for thresh in (0.05, 0.5):
        fast, slow = detection_performance(gt_boxes, detections, thresh), loop_detection(gt_boxes, detections, thresh)
        assert fast["recall"] == pytest.approx(slow["recall"], abs=1e-12)
        assert fast["AP"] == pytest.approx(slow["AP"], abs=1e-12)
