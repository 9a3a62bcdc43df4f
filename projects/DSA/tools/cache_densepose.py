#!/usr/bin/env python
"""Cache DensePose IUV per person image of a re-ID dataset, for DSA-reID training (MODEL.DSA.IUV_FORMAT npz).

Writes ``<root>/<folder>/<stem>.npz`` (``labels``, ``u``, ``v`` at the image's size, from the highest-score box;
all zero when DensePose found nobody) for every image ``<dataset>/<folder>/<stem>.jpg``; ``<root>`` defaults to
``<dataset>/densepose_iuv``, where ``dsa.data`` looks. Resumable: images whose file exists are skipped.

Two sources:
* run detectron2's DensePose (``densepose_rcnn_R_50_FPN_s1x``): needs the ``densepose`` package of Detectron2
  v0.6 (see ``INSTALL_HINT``) and the model's config (with its ``_BASE_`` file, Base-DensePose-RCNN-FPN.yaml:
  pip does not install DensePose's configs) and weights (``model_final_162be9.pkl``) as local files::

    python projects/DSA/tools/cache_densepose.py --dataset market1501_train \\
        --densepose-config path/to/densepose_rcnn_R_50_FPN_s1x.yaml --weights path/to/model_final_162be9.pkl

* convert an ``apply_net.py dump`` file (no ``densepose`` package needed)::

    python projects/DSA/tools/cache_densepose.py --dataset market1501_train --from-dump results.pkl
"""
import reid2  # noqa: F401  (first: it restores the PIL.Image names Detectron2 v0.6 uses, gone in Pillow >= 10)

# isort: split
import argparse
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

logger = logging.getLogger("dsa.cache_densepose")

# reid2 pins Detectron2 v0.6: take DensePose from the same tag, and --no-deps, because DensePose's setup.py
# requires `detectron2@git+...` (its main branch), which pip would build over the installed v0.6.
INSTALL_HINT = (
    "the `densepose` package (detectron2's projects/DensePose) is not installed. Install the DensePose of the\n"
    "installed Detectron2 (v0.6), without letting pip replace Detectron2:\n"
    "  pip install --no-deps 'git+https://github.com/facebookresearch/detectron2@v0.6#subdirectory=projects/DensePose'\n"
    "  pip install av scipy   # DensePose's other requirements\n"
    "or run apply_net.py dump in a separate DensePose environment and convert its output with --from-dump FILE.")


def image_dicts(names):
    from detectron2.data import DatasetCatalog


    dicts, seen = [], set()
    for name in names:
        if name not in DatasetCatalog.list():
            raise SystemExit(f"error: unknown dataset {name!r} (a name registered in reid2, e.g. market1501_train)")
        for d in DatasetCatalog.get(name):
            if d["file_name"] not in seen:
                seen.add(d["file_name"])
                dicts.append(d)
    return dicts


def check_densepose(config_file, weights):
    """Fail early (before reading any dataset) when the package or the model files are absent."""
    try:
        import densepose  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"error: {INSTALL_HINT}\n({e})") from e
    import detectron2

    if not detectron2.__version__.startswith("0.6"):
        logger.warning("Detectron2 %s is installed; reid2 is built for v0.6 (was it replaced by a DensePose "
                       "install with dependencies?)", detectron2.__version__)
    for path, what in ((config_file, "--densepose-config"), (weights, "--weights")):
        if not path or not os.path.isfile(path):
            raise SystemExit(f"error: {what} file not found: {path!r} (DensePose's densepose_rcnn_R_50_FPN_s1x "
                             "config / model_final_162be9.pkl must be local files; nothing is downloaded)")


def build_densepose_predictor(config_file, weights, device):
    """DefaultPredictor + DensePoseResultExtractor (detectron2 projects/DensePose)."""
    check_densepose(config_file, weights)
    from densepose import add_densepose_config
    from densepose.vis.extractor import DensePoseResultExtractor
    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor

    from reid2.config import safe_cfg
    from reid2.utils.serialization import SafeCheckpointer

    cfg = get_cfg()
    add_densepose_config(cfg)  # DensePose's nodes are Detectron2 CfgNodes: convert after adding them, or
    cfg = safe_cfg(cfg)  # merging the YAML fails with a CfgNode type mismatch; the YAML is read safely
    cfg.merge_from_file(config_file)
    cfg.MODEL.WEIGHTS = ""  # DefaultPredictor would read the .pkl with plain pickle.load: load it safely below
    cfg.MODEL.DEVICE = device
    cfg.freeze()
    predictor, extractor = DefaultPredictor(cfg), DensePoseResultExtractor()
    SafeCheckpointer(predictor.model).load(weights)

    def run(bgr):
        return densepose_entry(predictor(bgr)["instances"].to("cpu"), extractor)

    return run


def densepose_entry(instances, extractor):
    """DefaultPredictor's instances → an ``apply_net.py dump``-style entry (scores, XYXY boxes, one chart result
    per box), as ``apply_net.py``'s DumpAction builds it; ``iuv_from_dump_entry`` then keeps the best box."""
    results, _ = extractor(instances)
    return {"scores": instances.scores, "pred_boxes_XYXY": instances.pred_boxes.tensor,
            "pred_densepose": results or []}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", action="append", required=True, help="registered dataset name (repeatable)")
    p.add_argument("--output", default="", help="cache root (default <dataset folder>/densepose_iuv)")
    p.add_argument("--from-dump", default="", help="convert this apply_net.py dump instead of running DensePose")
    p.add_argument("--densepose-config", default="", help="densepose_rcnn_R_50_FPN_s1x.yaml (local file)")
    p.add_argument("--weights", default="", help="DensePose weights .pkl (local file)")
    p.add_argument("--device", default="cuda")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import cv2
    from tqdm import tqdm

    from reid2.projects.dsa.data import iuv_path
    from reid2.projects.dsa.iuv import iuv_from_dump_entry, load_densepose_dump, save_npz_iuv

    if not args.from_dump:
        check_densepose(args.densepose_config, args.weights)
    dicts = image_dicts(args.dataset)
    todo = [d for d in dicts if not os.path.isfile(iuv_path(d["file_name"], args.output, "npz"))]
    logger.info("%d images, %d already cached, %d to do", len(dicts), len(dicts) - len(todo), len(todo))
    if not todo:
        return 0
    if args.from_dump:
        index = {os.path.basename(str(e.get("file_name", ""))): e for e in load_densepose_dump(args.from_dump)}
        missing = [d["file_name"] for d in todo if os.path.basename(d["file_name"]) not in index]
        if missing:
            raise SystemExit(f"error: {args.from_dump} has no entry for {len(missing)} images, e.g. {missing[0]}")
        predict = None
    else:
        predict = build_densepose_predictor(args.densepose_config, args.weights, args.device)
    empty = 0
    for d in tqdm(todo, desc="DensePose IUV", unit="img"):
        bgr = cv2.imread(d["file_name"])
        if bgr is None:
            raise SystemExit(f"error: cannot read image {d['file_name']}")
        name = os.path.basename(d["file_name"])
        entry = index[name] if predict is None else predict(bgr)
        iuv = iuv_from_dump_entry(entry, image_hw=bgr.shape[:2])
        empty += iuv.empty
        save_npz_iuv(iuv_path(d["file_name"], args.output, "npz"), iuv)
    logger.info("cached %d images; DensePose found nobody in %d (their DSAP images will be mean-filled)",
                len(todo), empty)
    return 0


if __name__ == "__main__":
    sys.exit(main())
