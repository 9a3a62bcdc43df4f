#!/usr/bin/env python
"""Demo: rank a folder of gallery images (or scenes) against one query person, with any trained model.

Examples:
  # re-ID model: query crop vs. a folder of crops
  python tools/demo.py --config-file configs/synthetic/reid_tiny.yaml \\
      --weights output/synthetic/reid_tiny/model_final.pth --query me.jpg --gallery crops/ --output-dir demo_out/
  # the query is a box in a bigger picture
  python tools/demo.py ... --query street.jpg --query-box 40 20 90 180 --gallery crops/ --output-dir demo_out/
  # person-search model: query box in a scene vs. a folder of scenes (people are detected in each scene)
  python tools/demo.py --config-file configs/synthetic/oim_tiny.yaml \\
      --weights output/synthetic/oim_tiny/model_final.pth --query scene1.jpg --query-box 43 128 68 229 \\
      --gallery scenes/ --output-dir demo_out/ --det-thresh 0.5

Writes OUTPUT_DIR/demo.json (every gallery image ranked: re-ID by distance, ascending; person search by the
similarity of the best detection, descending, with its box) and OUTPUT_DIR/demo.png (the query and the
top-k). A person-search model with --gallery-crops treats each gallery image as one person (no detection).
Runs on CPU when CUDA is absent (--device to choose). Trailing KEY VALUE pairs override the config.
A --query-box reaching outside the query image is an error. An unreadable gallery image is an error naming
it; DATALOADER.SKIP_BAD_IMAGES True leaves such images out, with a warning giving their count.
"""
import argparse
import json
import os
import sys

import numpy as np


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--weights", metavar="FILE", help="checkpoint, or 'random' for an untrained model on "
                   "purpose (default: MODEL.WEIGHTS of the config)")
    p.add_argument("--query", required=True, metavar="IMAGE", help="query image")
    p.add_argument("--query-box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"),
                   help="the person in the query image (pixels); default: the whole image")
    p.add_argument("--gallery", required=True, metavar="DIR", help="folder of gallery images / scenes")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--topk", type=int, default=10, help="results drawn in demo.png (the JSON has all)")
    p.add_argument("--det-thresh", type=float, default=0.5, help="person search: minimum detection score")
    p.add_argument("--gallery-crops", action="store_true",
                   help="person search: gallery images are person crops (embed each whole image, no detection)")
    p.add_argument("--device", default=None)
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    return p


def rank_reid(cfg, model, query, box, gallery_files):
    from reid2.engine.predictor import ReIDEmbedder
    from reid2.evaluation import compute_distance_matrix

    embedder = ReIDEmbedder(cfg, model)
    qf = embedder.embed([query], [box])
    gf = embedder.embed(gallery_files)
    t = cfg.TEST.REID
    dist = compute_distance_matrix(qf, gf, metric=t.METRIC, normalize=t.NORMALIZE_FEATS)[0]
    order = np.argsort(dist, kind="stable")
    return [{"rank": r + 1, "file": gallery_files[i], "distance": float(dist[i])} for r, i in enumerate(order)], \
        {"key": "distance", "order": "ascending", "metric": t.METRIC, "normalized": bool(t.NORMALIZE_FEATS)}


def rank_person_search(cfg, model, query, box, gallery_files, det_thresh, crops):
    from reid2.engine.predictor import PersonSearchPredictor
    from reid2.utils.arrays import l2_normalize
    from reid2.utils.files import read_image

    predictor = PersonSearchPredictor(cfg, model)
    if box is None:
        w, h = read_image(query).size
        box = [0.0, 0.0, float(w), float(h)]
    q = l2_normalize(predictor.embed_boxes(query, [box])[0])
    results = []
    if crops:
        for f in gallery_files:
            w, h = read_image(f).size
            whole = [0.0, 0.0, float(w), float(h)]
            sim = float(l2_normalize(predictor.embed_boxes(f, [whole])[0]) @ q)
            results.append({"file": f, "box": whole, "similarity": sim, "score": None})
    else:
        for f, det in zip(gallery_files, predictor.detect(gallery_files)):
            keep = det["scores"] >= det_thresh
            if not keep.any() or det["feats"] is None:
                results.append({"file": f, "box": None, "similarity": None, "score": None})
                continue
            sims = l2_normalize(det["feats"][keep]) @ q
            best = int(np.argmax(sims))
            results.append({"file": f, "box": [float(v) for v in det["boxes"][keep][best]],
                            "similarity": float(sims[best]), "score": float(det["scores"][keep][best]),
                            "num_detections": int(keep.sum())})
    results.sort(key=lambda r: -np.inf if r["similarity"] is None else -r["similarity"])
    for r, item in enumerate(results):
        item["rank"] = r + 1
    return results, {"key": "similarity", "order": "descending", "det_thresh": det_thresh,
                     "gallery_crops": bool(crops)}


def main(argv=None):
    args = build_parser().parse_args(argv)
    from reid2.engine.predictor import load_model, model_task
    from reid2.utils.files import list_images, read_image, require_file
    from reid2.utils.visualizer import RankCell, SearchCell, rank_grid, search_grid

    require_file(args.query, "query image")
    query_img = read_image(args.query, args.query_box)
    gallery_files = list_images(args.gallery)
    cfg, model = load_model(args.config_file, args.weights, [o for o in args.opts if o != "--"], device=args.device)
    if cfg.DATALOADER.SKIP_BAD_IMAGES:
        from reid2.data.bad_images import readable_images

        gallery_files = readable_images(gallery_files, what="demo gallery images")
        if not gallery_files:
            raise ValueError(f"no readable image in {args.gallery}")
    task = model_task(model)
    topk = max(1, min(args.topk, len(gallery_files)))
    if task == "reid":
        ranked, ranking = rank_reid(cfg, model, args.query, args.query_box, gallery_files)
        img = rank_grid([query_img], [[RankCell(r["file"], r["distance"]) for r in ranked]], topk)
    else:
        ranked, ranking = rank_person_search(cfg, model, args.query, args.query_box, gallery_files,
                                             args.det_thresh, args.gallery_crops)
        cells = [SearchCell(r["file"], r["box"], r["similarity"] if r["similarity"] is not None else float("nan"))
                 for r in ranked]
        img = search_grid([query_img], [cells], topk)
    os.makedirs(args.output_dir, exist_ok=True)
    png, out_json = os.path.join(args.output_dir, "demo.png"), os.path.join(args.output_dir, "demo.json")
    img.save(png)
    with open(out_json, "w") as f:
        json.dump({"task": task, "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
                   "weights": os.path.abspath(cfg.MODEL.WEIGHTS),
                   "query": {"file": os.path.abspath(args.query), "box": args.query_box},
                   "gallery": os.path.abspath(args.gallery), "ranking": ranking, "results": ranked}, f, indent=1)
    best = ranked[0]
    print(f"{out_json} ({len(ranked)} gallery images), {png} ({img.width}x{img.height}); "
          f"top-1: {best['file']} ({ranking['key']} {best.get(ranking['key'])})")
    return out_json


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
