"""Speed of ``search_performance`` on the CUHK-SYSU protocol at real scale, vs the psdb/SeqNet per-entry loop.

The G=100 case is built from the real ``TestG100.mat`` structure (2,900 queries × 100 gallery entries, ~6,978
images): every image gets its protocol ground truths plus extra people, ~10 detections jittered around them or
random, and 256-d features that resemble the person's identity vector. A second case gives a subset of the
queries psdb's full-set gallery (gallery_size=-1: every image). Both implementations run on the same cases;
their results must agree.

    OMP_NUM_THREADS=2 .venv/bin/python -m bench.bench_search_eval [--mat PATH] [--gallery-size 100]
"""
import argparse
import os
import time

import numpy as np
from sklearn.metrics import average_precision_score

from bench.common import REPO
from reid2.data.datasets.coco_person import xywh_to_xyxy
from reid2.data.datasets.cuhk_sysu import read_test_protocol
from reid2.evaluation.search import search_performance

DEFAULT_ROOT = REPO.parent / "shared" / "data" / "CUHK-SYSU"


def build_case(protocol, dets_per_image=10, dim=256, seed=0):
    """(queries, detections) with features correlated to identities and boxes jittered around ground truths."""
    rng = np.random.default_rng(seed)
    identity = rng.standard_normal((len(protocol), dim)).astype(np.float32)
    people = {}  # image → [(xyxy, identity row or -1)]
    for row, (query_image, query_box, _, gallery) in enumerate(protocol):
        people.setdefault(query_image, []).append((xywh_to_xyxy(query_box)[0], row))
        for image, box in gallery:
            entry = people.setdefault(image, [])
            if box is not None:
                entry.append((xywh_to_xyxy(box)[0], row))
    detections = {}
    for image, persons in people.items():
        for _ in range(int(rng.integers(1, 4))):  # unlabelled people
            x, y = rng.uniform(0, 600, 2)
            persons.append((np.array([x, y, x + rng.uniform(20, 120), y + rng.uniform(50, 300)]), -1))
        boxes, feats = [], []
        for k in range(dets_per_image):
            box, row = persons[k % len(persons)]
            w, h = box[2:] - box[:2]
            boxes.append(box + rng.normal(0, 0.08, 4) * np.array([w, h, w, h]))
            base = identity[row] if row >= 0 else rng.standard_normal(dim)
            feats.append(base + 1.2 * rng.standard_normal(dim))
        feats = np.asarray(feats, dtype=np.float32)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        detections[image] = (np.asarray(boxes), rng.uniform(0.2, 1.0, dets_per_image), feats)
    queries = []
    for row, (_, _, _, gallery) in enumerate(protocol):
        feat = identity[row] + 1.2 * rng.standard_normal(dim).astype(np.float32)
        queries.append({"feat": feat / np.linalg.norm(feat),
                        "gallery": [{"image": image, "box": None if box is None else xywh_to_xyxy(box)[0]}
                                    for image, box in gallery]})
    return queries, detections


def full_set(queries, detections, count):
    """The first ``count`` queries with psdb's gallery_size=-1 layout: protocol entries, then every other image."""
    images = list(detections)
    extended = []
    for query in queries[:count]:
        listed = {entry["image"] for entry in query["gallery"]}
        negatives = [{"image": image, "box": None} for image in images if image not in listed]
        extended.append({"feat": query["feat"], "gallery": query["gallery"] + negatives})
    return extended


def _compute_iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter * 1.0 / union


def loop_search_performance(queries, detections, det_thresh=0.5, topk=(1, 5, 10)):
    """The straightforward psdb.py / SeqNet ``eval_search_cuhk`` loop (per entry, per detection)."""
    name_to_det_feat = {}
    for name, (boxes, scores, feats) in detections.items():
        keep = scores >= det_thresh
        if keep.any():
            name_to_det_feat[name] = (boxes[keep], feats[keep])
    aps, accs = [], []
    for query in queries:
        y_true, y_score = [], []
        count_gt = count_tp = 0
        for entry in query["gallery"]:
            gt = entry["box"]
            count_gt += gt is not None
            if entry["image"] not in name_to_det_feat:
                continue
            det, feat_g = name_to_det_feat[entry["image"]]
            sim = feat_g.dot(query["feat"]).ravel()
            label = np.zeros(len(sim), dtype=np.int32)
            if gt is not None:
                w, h = gt[2] - gt[0], gt[3] - gt[1]
                iou_thresh = min(0.5, (w * h * 1.0) / ((w + 10) * (h + 10)))
                inds = np.argsort(sim)[::-1]
                sim, det = sim[inds], det[inds]
                for j, roi in enumerate(det[:, :4]):
                    if _compute_iou(roi, gt) >= iou_thresh:
                        label[j] = 1
                        count_tp += 1
                        break
            y_true.extend(list(label))
            y_score.extend(list(sim))
        y_score, y_true = np.asarray(y_score), np.asarray(y_true)
        recall_rate = count_tp * 1.0 / count_gt
        aps.append(0 if count_tp == 0 else average_precision_score(y_true, y_score) * recall_rate)
        y_true = y_true[np.argsort(y_score)[::-1]]
        accs.append([min(1, sum(y_true[:k])) for k in topk])
    accs = np.mean(accs, axis=0)
    return {"mAP": float(np.mean(aps)), **{f"top{k}": float(a) for k, a in zip(topk, accs)}}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="CUHK-SYSU root holding annotation/test/train_test")
    parser.add_argument("--gallery-size", type=int, default=100)
    parser.add_argument("--dets-per-image", type=int, default=10)
    parser.add_argument("--full-set-queries", type=int, default=200,
                        help="queries of the gallery_size=-1 case (each against every image)")
    args = parser.parse_args()

    protocol = read_test_protocol(args.root, args.gallery_size)
    queries, detections = build_case(protocol, args.dets_per_image)
    num_dets = sum(len(d[1]) for d in detections.values())
    print(f"case: {len(queries)} queries × {len(queries[0]['gallery'])} gallery entries, {len(detections)} images, "
          f"{num_dets} detections, 256-d; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")

    print(f"{'case':<22}{'implementation':<30}{'seconds':>9}  result")
    cases = [(f"G={args.gallery_size}", queries),
             (f"full set, {args.full_set_queries} queries", full_set(queries, detections, args.full_set_queries))]
    for case, case_queries in cases:
        start = time.perf_counter()
        fast = search_performance(case_queries, detections)
        fast_time = time.perf_counter() - start
        start = time.perf_counter()
        slow = loop_search_performance(case_queries, detections)
        slow_time = time.perf_counter() - start
        for name, seconds, result in (("reid2 search_performance", fast_time, fast),
                                      ("psdb/SeqNet per-entry loop", slow_time, slow)):
            print(f"{case:<22}{name:<30}{seconds:>9.2f}  " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
        print(f"{case:<22}speed-up {slow_time / fast_time:.1f}x, "
              f"max |difference| {max(abs(fast[k] - slow[k]) for k in fast):.1e}")

if __name__ == "__main__":
    main()
