#!/usr/bin/env python
"""Extract features with a trained re-ID or person-search model into one .npz file.

Examples:
  # re-ID: every query + gallery image of a registered test set
  python tools/extract_features.py --config-file configs/synthetic/reid_tiny.yaml \\
      --weights output/synthetic/reid_tiny/model_final.pth --dataset synthetic_market_test --output feats.npz
  # re-ID: a folder of person crops (names only; pids/camids are -1)
  python tools/extract_features.py --config-file configs/synthetic/reid_tiny.yaml \\
      --weights output/synthetic/reid_tiny/model_final.pth --images my_crops/ --output my_feats.npz
  # person search: detections (boxes, scores, features) of every scene + the protocol's query features
  python tools/extract_features.py --config-file configs/synthetic/oim_tiny.yaml \\
      --weights output/synthetic/oim_tiny/model_final.pth --dataset synthetic_cuhk_sysu_test --output ps.npz

Output (np.load(path)):
  re-ID:          feats (N,D) float32, names (N,) file paths, image_ids, pids, camids, splits ("query"/"gallery"/"")
  person search:  image_names (M,), image_files (M,), det_image_index (K,), boxes (K,4) xyxy, scores (K,),
                  feats (K,D); with a registered test set also query_feats (Q,D), query_files, query_images,
                  query_boxes (Q,4), query_pids and queries_json (each query's gallery: image names + gt box)
  both:           meta_json (task, config, weights, dataset or folder, feature dimension)

Large sets: the features are written in chunks of --chunk-size images to OUTPUT.parts/ as they are
computed; an interrupted run started again with the same arguments continues after the last complete chunk
(--restart discards them). Trailing KEY VALUE pairs override the config (e.g. MODEL.DEVICE cuda).
An unreadable image is an error naming it; DATALOADER.SKIP_BAD_IMAGES True leaves such images (and queries)
out of the output, with a warning giving their count and the first one.
"""
import reid2  # noqa: F401  (first: it restores the PIL.Image names Detectron2 v0.6 uses, gone in Pillow >= 10)

# isort: split
import argparse
import hashlib
import json
import logging
import os
import shutil
import sys

import numpy as np

logger = logging.getLogger("reid2.extract_features")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help="the model's config (YAML)")
    p.add_argument("--weights", metavar="FILE", help="checkpoint (.pth), or 'random' for an untrained "
                   "model on purpose; default: MODEL.WEIGHTS of the config")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", metavar="NAME", help="registered dataset name (read from $REID2_DATASETS)")
    src.add_argument("--images", metavar="DIR", help="folder of images (searched recursively)")
    p.add_argument("--output", required=True, metavar="FILE.npz", help="where to write the features")
    p.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default: the config's)")
    p.add_argument("--chunk-size", type=int, default=2048, help="images per resumable chunk (default 2048)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    p.add_argument("--restart", action="store_true", help="discard the partial results of an earlier run")
    p.add_argument("--keep-parts", action="store_true", help="keep OUTPUT.parts/ after the merge")
    p.add_argument("--no-queries", action="store_true", help="person search: skip the protocol's query features")
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    return p


def _items(args, task):
    """[{"file_name", "image_id", "pid", "camid", "split"}] of the dataset or the folder."""
    from reid2.utils.files import list_images, require_file

    if args.images:
        files = list_images(args.images)
        return [{"file_name": f, "image_id": os.path.relpath(f, args.images), "pid": -1, "camid": -1, "split": ""}
                for f in files]
    from detectron2.data import DatasetCatalog

    if args.dataset not in DatasetCatalog.list():
        raise KeyError(f"dataset {args.dataset!r} is not registered (registered: "
                       f"{', '.join(sorted(DatasetCatalog.list()))})")
    try:
        dicts = DatasetCatalog.get(args.dataset)
    except (FileNotFoundError, OSError) as e:
        root = os.environ.get("REID2_DATASETS", "datasets")
        raise FileNotFoundError(f"dataset {args.dataset!r} cannot be read under $REID2_DATASETS={root}: {e}") from e
    if not dicts:
        raise ValueError(f"dataset {args.dataset!r} is empty")
    if task == "reid" and "annotations" in dicts[0]:
        raise ValueError(f"{args.dataset!r} is a person-search (scene) dataset but the model is a re-ID model")
    if task == "person_search" and "annotations" not in dicts[0]:
        raise ValueError(f"{args.dataset!r} is a re-ID (crop) dataset but the model is a person-search model")
    require_file(dicts[0]["file_name"], f"image of dataset {args.dataset!r}")
    return [{"file_name": d["file_name"], "image_id": str(d.get("image_id", os.path.basename(d["file_name"]))),
             "pid": int(d.get("pid", -1)), "camid": int(d.get("camid", -1)), "split": d.get("split", "")}
            for d in dicts]


def _weights_id(weights):
    """The checkpoint's absolute path, or ``random`` (an untrained model asked for explicitly)."""
    return weights if weights == "random" else os.path.abspath(weights)


def _fingerprint(args, cfg, items):
    weights = cfg.MODEL.WEIGHTS
    st = os.stat(weights) if weights != "random" else os.stat_result((0,) * 10)  # untrained: nothing to stat
    h = hashlib.sha1()
    for it in items:
        h.update(it["file_name"].encode() + b"\0")
    same = cfg.clone()  # the device may change between runs (resume a CPU run on a GPU)
    same.defrost()
    same.MODEL.DEVICE, same.REID2.DEVICE = "", ""
    return {"config": hashlib.sha1(same.dump().encode()).hexdigest(), "weights": _weights_id(weights),
            "weights_size": st.st_size, "weights_mtime": int(st.st_mtime), "items": h.hexdigest(),
            "num_items": len(items), "chunk_size": args.chunk_size}


def _prepare_parts(parts, fingerprint, restart):
    manifest = os.path.join(parts, "manifest.json")
    if restart and os.path.isdir(parts):
        shutil.rmtree(parts)
    if os.path.isfile(manifest):
        with open(manifest) as f:
            old = json.load(f)
        if old != fingerprint:
            changed = sorted(k for k in fingerprint if old.get(k) != fingerprint[k])
            raise RuntimeError(f"{parts} holds partial results of a different run ({', '.join(changed)} changed): "
                               "pass --restart to discard them, or another --output")
    else:
        os.makedirs(parts, exist_ok=True)
        with open(manifest, "w") as f:
            json.dump(fingerprint, f, indent=1)


def _reid_chunk(embedder, items, bar):
    feats = embedder.embed([it["file_name"] for it in items], progress=bar)
    return {"feats": feats.astype(np.float32)}


def _ps_chunk(predictor, items, start, bar):
    dets = predictor.detect([it["file_name"] for it in items], progress=bar)
    dim = next((d["feats"].shape[1] for d in dets if d["feats"] is not None), 0)
    index = np.concatenate([np.full(len(d["scores"]), start + i, np.int64) for i, d in enumerate(dets)])
    return {"det_image_index": index,
            "boxes": np.concatenate([d["boxes"] for d in dets]).reshape(-1, 4),
            "scores": np.concatenate([d["scores"] for d in dets]),
            "feats": np.concatenate([d["feats"] if d["feats"] is not None else np.zeros((len(d["scores"]), dim),
                                                                                       np.float32)
                                     for d in dets]).reshape(len(index), dim)}


def _query_arrays(predictor, dataset, skip_bad_images=False):
    """Features of the protocol's queries of a registered person-search test set (empty dict otherwise)."""
    from detectron2.data import MetadataCatalog

    from reid2.evaluation.protocols import get_queries
    from reid2.utils.progress import progress_bar

    if MetadataCatalog.get(dataset).get("query_loader", None) is None:
        return {}
    queries = get_queries(dataset)
    if skip_bad_images:
        from reid2.data.bad_images import readable_images

        queries = readable_images(queries, lambda q: q["query"]["file_name"], "extract_features query images")
    feats = []
    for q in progress_bar(queries, desc="query features", unit="query"):
        feats.append(predictor.embed_boxes(q["query"]["file_name"], [q["query"]["box"]])[0])
    gallery = [[{"image": g["image"], "box": None if g["box"] is None else [float(v) for v in g["box"]]}
                for g in q["gallery"]] for q in queries]
    return {"query_feats": np.stack(feats).astype(np.float32),
            "query_files": np.asarray([q["query"]["file_name"] for q in queries]),
            "query_images": np.asarray([q["query"]["image"] for q in queries]),
            "query_boxes": np.asarray([q["query"]["box"] for q in queries], np.float32).reshape(-1, 4),
            "query_pids": np.asarray([str(q["query"].get("pid", "")) for q in queries]),
            "queries_json": np.asarray(json.dumps(gallery))}


def main(argv=None):
    args = build_parser().parse_args(argv)
    from detectron2.utils.logger import setup_logger

    setup_logger(name="reid2")
    setup_logger(name="detectron2", abbrev_name="d2")
    from reid2.engine.predictor import build_embedder, load_model, model_task
    from reid2.utils.files import atomic_write
    from reid2.utils.progress import progress_bar

    if args.chunk_size < 1:
        raise ValueError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    opts = [o for o in args.opts if o != "--"]
    cfg, model = load_model(args.config_file, args.weights, opts, device=args.device)
    task = model_task(model)
    items = _items(args, task)
    if cfg.DATALOADER.SKIP_BAD_IMAGES:  # decode each image once beforehand: the output lists what was embedded
        from reid2.data.bad_images import readable_images

        items = readable_images(items, lambda it: it["file_name"], "extract_features images")
    embedder = build_embedder(cfg, model, args.batch_size)
    out = os.path.abspath(args.output)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    parts = out + ".parts"
    _prepare_parts(parts, _fingerprint(args, cfg, items), args.restart)

    starts = list(range(0, len(items), args.chunk_size))
    done = [s for s in starts if os.path.isfile(os.path.join(parts, f"chunk_{s:09d}.npz"))]
    if done:
        logger.info("resuming: %d of %d chunks already in %s", len(done), len(starts), parts)
    bar = progress_bar(total=len(items), desc="features", unit="img")
    bar.update(sum(min(args.chunk_size, len(items) - s) for s in done))
    chunks = []
    for start in starts:
        path = os.path.join(parts, f"chunk_{start:09d}.npz")
        if not os.path.isfile(path):
            batch = items[start:start + args.chunk_size]
            arrays = _reid_chunk(embedder, batch, bar) if task == "reid" else _ps_chunk(embedder, batch, start, bar)
            atomic_write(path, lambda f: np.savez(f, **arrays))
            logger.info("chunk %d/%d (%d images) written", starts.index(start) + 1, len(starts), len(batch))
        with np.load(path, allow_pickle=False) as z:
            chunks.append({k: z[k] for k in z.files})
    bar.close()

    meta = {"task": task, "config": os.path.abspath(args.config_file), "weights": _weights_id(cfg.MODEL.WEIGHTS),
            "dataset": args.dataset, "images": os.path.abspath(args.images) if args.images else None,
            "meta_architecture": cfg.MODEL.META_ARCHITECTURE}
    if task == "reid":
        feats = np.concatenate([c["feats"] for c in chunks])
        arrays = {"feats": feats, "names": np.asarray([it["file_name"] for it in items]),
                  "image_ids": np.asarray([it["image_id"] for it in items]),
                  "pids": np.asarray([it["pid"] for it in items], np.int64),
                  "camids": np.asarray([it["camid"] for it in items], np.int64),
                  "splits": np.asarray([it["split"] for it in items])}
        summary = f"{len(items)} images, {feats.shape[1]}-d features"
    else:
        arrays = {k: np.concatenate([c[k] for c in chunks]) for k in ("det_image_index", "boxes", "scores")}
        dim = max(c["feats"].shape[1] for c in chunks)
        arrays["feats"] = np.concatenate([c["feats"] if c["feats"].shape[1] == dim
                                          else np.zeros((len(c["scores"]), dim), np.float32) for c in chunks])
        arrays["image_names"] = np.asarray([it["image_id"] for it in items])
        arrays["image_files"] = np.asarray([it["file_name"] for it in items])
        if args.dataset and not args.no_queries:
            arrays.update(_query_arrays(embedder, args.dataset, cfg.DATALOADER.SKIP_BAD_IMAGES))
        summary = (f"{len(items)} scenes, {len(arrays['scores'])} detections, {dim}-d features"
                   + (f", {len(arrays['query_feats'])} queries" if "query_feats" in arrays else ""))
    meta["feat_dim"] = int(arrays["feats"].shape[1])
    arrays["meta_json"] = np.asarray(json.dumps(meta))
    atomic_write(out, lambda f: np.savez(f, **arrays))
    if not args.keep_parts:
        shutil.rmtree(parts)
    logger.info("wrote %s: %s", out, summary)
    print(f"features written to {out} ({summary})")
    return out


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
