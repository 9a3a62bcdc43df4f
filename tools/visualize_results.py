#!/usr/bin/env python
"""Look at re-ID and person-search results: ranked lists, CMC curves, search results, detections.

Examples (on the .npz files of tools/extract_features.py; no model needed):

  # re-ID ranked lists of 8 queries, top 10, green = same identity, red = different, distance below
  python tools/visualize_results.py ranks --features feats.npz --output-dir vis/ --num-queries 8 --topk 10
  python tools/visualize_results.py ranks --features feats.npz --output-dir vis/ --rerank   # after re-ranking
  # CMC curves (rank 1..50) of several result files in one plot (.npz features or results.json of `ranks`)
  python tools/visualize_results.py cmc --results a.npz b.npz --labels baseline bc --output vis/cmc.png
  # person search: query crop beside its top-5 gallery scenes, the matched box and its similarity
  python tools/visualize_results.py search --features ps.npz --output-dir vis/ --num-queries 4 --topk 5
  # person search: detections drawn on scenes (names as in the dataset, or --num-images N)
  python tools/visualize_results.py detections --features ps.npz --images s1.jpg s2.jpg --output-dir vis/

`ranks` writes ranked_list.png and results.json (CMC 1..50, mAP, mINP, each shown query's ranking);
`search` writes search.png and search.json; `detections` writes detections_<image>.png.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    fmt, examples = argparse.RawDescriptionHelpFormatter, __doc__.split("\n", 1)[1]

    r = sub.add_parser("ranks", epilog=examples, formatter_class=fmt,
                       help="re-ID ranked lists (PNG grid) + results.json")
    r.add_argument("--features", required=True, help="re-ID .npz of extract_features.py (query + gallery)")
    r.add_argument("--output-dir", required=True)
    r.add_argument("--num-queries", type=int, default=8, help="queries shown (default 8)")
    r.add_argument("--queries", type=int, nargs="*", help="indices of the queries to show (default: evenly spaced)")
    r.add_argument("--topk", type=int, default=10)
    r.add_argument("--metric", default="euclidean", choices=("euclidean", "cosine"))
    r.add_argument("--no-normalize", action="store_true", help="do not L2-normalise the features first")
    r.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1 20, k2 6, lambda 0.3)")
    r.add_argument("--keep-same-camera", action="store_true",
                   help="show gallery items of the query's identity and camera (the protocol removes them)")
    r.add_argument("--cell", type=int, nargs=2, default=(64, 128), metavar=("W", "H"), help="crop size in the grid")

    c = sub.add_parser("cmc", epilog=examples, formatter_class=fmt,
                       help="CMC curves of one or several result files in one PNG")
    c.add_argument("--results", nargs="+", required=True, help=".npz features or results.json of `ranks`")
    c.add_argument("--labels", nargs="*", help="one legend label per result file (default: file names)")
    c.add_argument("--output", required=True, help="PNG path")
    c.add_argument("--max-rank", type=int, default=50)
    c.add_argument("--metric", default="euclidean", choices=("euclidean", "cosine"))
    c.add_argument("--rerank", action="store_true", help="re-rank .npz inputs first")

    s = sub.add_parser("search", epilog=examples, formatter_class=fmt,
                       help="person search: query crops beside their top-k gallery scenes")
    s.add_argument("--features", required=True, help="person-search .npz of extract_features.py on a test set")
    s.add_argument("--output-dir", required=True)
    s.add_argument("--num-queries", type=int, default=4)
    s.add_argument("--queries", type=int, nargs="*", help="indices of the queries to show")
    s.add_argument("--topk", type=int, default=5)
    s.add_argument("--det-thresh", type=float, default=0.5, help="detections scored below are ignored")
    s.add_argument("--scene-size", type=int, nargs=2, default=(240, 180), metavar=("W", "H"))

    d = sub.add_parser("detections", epilog=examples, formatter_class=fmt,
                       help="person search: detections drawn on scenes")
    d.add_argument("--features", required=True, help="person-search .npz of extract_features.py")
    d.add_argument("--output-dir", required=True)
    d.add_argument("--images", nargs="*", help="image names (as in the .npz image_names); default: the first ones")
    d.add_argument("--num-images", type=int, default=4)
    d.add_argument("--det-thresh", type=float, default=0.5)
    return p


# ---- shared --------------------------------------------------------------------------------------------
def load_npz(path, task):
    from reid2.utils.files import require_file

    require_file(path, "features file")
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(str(data.get("meta_json", "{}")))
    if meta.get("task", task) != task:
        raise ValueError(f"{path} holds {meta.get('task')} features; this command needs {task} features")
    return data


def reid_distances(data, metric="euclidean", normalize=True, rerank=False):
    """(distmat, q, g) of a re-ID .npz with query/gallery splits."""
    from reid2.evaluation import compute_distance_matrix, re_ranking

    q, g = data["splits"] == "query", data["splits"] == "gallery"
    if not q.any() or not g.any():
        raise ValueError("the features need 'query' and 'gallery' images (extract them from a registered test set "
                         "with --dataset)")
    qf, gf = data["feats"][q], data["feats"][g]
    dist = compute_distance_matrix(qf, gf, metric=metric, normalize=normalize)
    if rerank:
        dist = re_ranking(dist, compute_distance_matrix(qf, qf, metric=metric, normalize=normalize),
                          compute_distance_matrix(gf, gf, metric=metric, normalize=normalize))
    return dist, np.flatnonzero(q), np.flatnonzero(g)


def _pick(total, count, explicit):
    if explicit:
        bad = [i for i in explicit if not 0 <= i < total]
        if bad:
            raise ValueError(f"query indices {bad} out of range (0..{total - 1})")
        return list(explicit)
    count = min(count, total)
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, count)}) if count > 0 else []


# ---- ranks ---------------------------------------------------------------------------------------------
def cmd_ranks(args):
    from reid2.evaluation import evaluate_rank
    from reid2.utils.visualizer import RankCell, rank_grid

    data = load_npz(args.features, "reid")
    dist, qi, gi = reid_distances(data, args.metric, not args.no_normalize, args.rerank)
    pids, camids, names = data["pids"], data["camids"], data["names"]
    res = evaluate_rank(dist, pids[qi], pids[gi], camids[qi], camids[gi], max_rank=50)
    shown, rows, listing = _pick(len(qi), args.num_queries, args.queries), [], []
    for j in shown:
        order = np.argsort(dist[j], kind="stable")
        q_pid, q_cam = pids[qi[j]], camids[qi[j]]
        keep = [o for o in order if args.keep_same_camera or not (pids[gi[o]] == q_pid and camids[gi[o]] == q_cam)]
        cells = [RankCell(names[gi[o]], float(dist[j, o]), bool(pids[gi[o]] == q_pid)) for o in keep[:args.topk]]
        rows.append(cells)
        listing.append({"query": str(names[qi[j]]), "pid": int(q_pid), "camid": int(q_cam),
                        "ranked": [{"file": str(names[gi[o]]), "pid": int(pids[gi[o]]), "distance": float(dist[j, o]),
                                    "correct": bool(pids[gi[o]] == q_pid)} for o in keep[:args.topk]]})
    os.makedirs(args.output_dir, exist_ok=True)
    img = rank_grid([names[qi[j]] for j in shown], rows, args.topk, tuple(args.cell))
    png = os.path.join(args.output_dir, "ranked_list.png")
    img.save(png)
    results = {"features": os.path.abspath(args.features), "rerank": args.rerank, "metric": args.metric,
               "cmc": [float(x) for x in res["cmc"]], "mAP": float(res["mAP"]), "mINP": float(res.get("mINP", 0)),
               "num_query": int(len(qi)), "num_gallery": int(len(gi)), "queries": listing}
    out_json = os.path.join(args.output_dir, "results.json")
    with open(out_json, "w") as f:
        json.dump(results, f, indent=1)
    print(f"{png} ({img.width}x{img.height}), {out_json}: Rank-1 {100 * res['cmc'][0]:.1f}%, "
          f"mAP {100 * res['mAP']:.1f}%")


# ---- cmc -----------------------------------------------------------------------------------------------
def cmd_cmc(args):
    from reid2.evaluation import evaluate_rank
    from reid2.utils.files import require_file
    from reid2.utils.visualizer import plot_cmc

    labels = args.labels or [Path(p).stem if Path(p).stem != "results" else Path(p).parent.name for p in args.results]
    if len(labels) != len(args.results):
        raise ValueError(f"{len(args.results)} result files but {len(labels)} labels")
    curves = {}
    for label, path in zip(labels, args.results):
        require_file(path, "result file")
        if path.endswith(".json"):
            with open(path) as f:
                cmc = json.load(f).get("cmc")
            if cmc is None:
                raise ValueError(f"{path} has no 'cmc' list (expected the results.json of `ranks`)")
        else:
            data = load_npz(path, "reid")
            dist, qi, gi = reid_distances(data, args.metric, True, args.rerank)
            cmc = evaluate_rank(dist, data["pids"][qi], data["pids"][gi], data["camids"][qi], data["camids"][gi],
                                max_rank=args.max_rank)["cmc"]
        curves[label] = cmc
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    plot_cmc(curves, args.output, max_rank=args.max_rank)
    rank1 = {k: float(np.asarray(v, dtype=float)[0]) for k, v in curves.items()}
    print(f"{args.output}: " + ", ".join(f"{k} Rank-1 {100 * r if r <= 1 else r:.1f}%" for k, r in rank1.items()))


# ---- person search -------------------------------------------------------------------------------------
def rank_gallery(query_feat, gallery, data, det_thresh):
    """Gallery scenes of one query ranked by their best detection's cosine similarity.

    Returns ``[{"image", "file", "box", "similarity", "score", "correct", "gt_box"}]`` (correct: the matched
    detection overlaps the query person's box with OIM's IoU threshold; None when the scene has no detection).
    """
    from reid2.evaluation.search import pairwise_iou, small_box_iou_threshold
    from reid2.utils.arrays import l2_normalize

    index = {str(n): i for i, n in enumerate(data["image_names"])}
    keep = data["scores"] >= det_thresh
    q = l2_normalize(query_feat)
    ranked = []
    for entry in gallery:
        i = index.get(entry["image"])
        if i is None:
            continue
        rows = np.flatnonzero((data["det_image_index"] == i) & keep)
        gt = entry.get("box")
        if len(rows) == 0:
            ranked.append({"image": entry["image"], "file": str(data["image_files"][i]), "box": None,
                           "similarity": float("-inf"), "score": None, "correct": False if gt else None, "gt_box": gt})
            continue
        sims = l2_normalize(data["feats"][rows]) @ q
        best = rows[int(np.argmax(sims))]
        box = data["boxes"][best]
        correct = bool(pairwise_iou(box, gt)[0, 0] >= small_box_iou_threshold(gt)) if gt is not None else False
        ranked.append({"image": entry["image"], "file": str(data["image_files"][i]), "box": [float(v) for v in box],
                       "similarity": float(sims.max()), "score": float(data["scores"][best]), "correct": correct,
                       "gt_box": gt})
    ranked.sort(key=lambda r: -r["similarity"])
    return ranked


def cmd_search(args):
    from reid2.utils.files import read_image
    from reid2.utils.visualizer import SearchCell, search_grid

    data = load_npz(args.features, "person_search")
    if "query_feats" not in data:
        raise ValueError(f"{args.features} has no query features: extract them from a registered person-search "
                         "test set (--dataset) without --no-queries")
    galleries = json.loads(str(data["queries_json"]))
    shown = _pick(len(galleries), args.num_queries, args.queries)
    crops, rows, listing = [], [], []
    for j in shown:
        ranked = rank_gallery(data["query_feats"][j], galleries[j], data, args.det_thresh)[:args.topk]
        crops.append(read_image(str(data["query_files"][j]), data["query_boxes"][j]))
        rows.append([SearchCell(r["file"], r["box"], r["similarity"], r["correct"], r["gt_box"]) for r in ranked])
        listing.append({"query": str(data["query_images"][j]), "pid": str(data["query_pids"][j]),
                        "box": [float(v) for v in data["query_boxes"][j]],
                        "ranked": [dict(r, similarity=None if r["box"] is None else r["similarity"]) for r in ranked]})
    os.makedirs(args.output_dir, exist_ok=True)
    img = search_grid(crops, rows, args.topk, tuple(args.scene_size))
    png = os.path.join(args.output_dir, "search.png")
    img.save(png)
    with open(os.path.join(args.output_dir, "search.json"), "w") as f:
        json.dump({"features": os.path.abspath(args.features), "det_thresh": args.det_thresh, "queries": listing},
                  f, indent=1)
    print(f"{png} ({img.width}x{img.height})")


def cmd_detections(args):
    from reid2.utils.visualizer import draw_detections

    data = load_npz(args.features, "person_search")
    names = [str(n) for n in data["image_names"]]
    wanted = args.images or names[:args.num_images]
    os.makedirs(args.output_dir, exist_ok=True)
    for name in wanted:
        if name not in names:
            raise KeyError(f"image {name!r} is not in {args.features} (e.g. {', '.join(names[:3])})")
        i = names.index(name)
        rows = data["det_image_index"] == i
        img = draw_detections(str(data["image_files"][i]), data["boxes"][rows], data["scores"][rows], args.det_thresh)
        png = os.path.join(args.output_dir, f"detections_{Path(name).stem}.png")
        img.save(png)
        print(f"{png} ({img.width}x{img.height}, {int((data['scores'][rows] >= args.det_thresh).sum())} detections)")


def main(argv=None):
    args = build_parser().parse_args(argv)
    {"ranks": cmd_ranks, "cmc": cmd_cmc, "search": cmd_search, "detections": cmd_detections}[args.command](args)


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
