#!/usr/bin/env python
"""Which features of a trained DSA-reID model retrieve best: MF-only (f_G, f_L, [f_G, f_L], what the paper
deploys) vs fused with the DSAG-Stream (z_G, z_L, [z_G, z_L]; the paper's "Joint" rows of Table 3, which need
DensePose at test time; in training runs: MODEL.DSA.TEST_FEATURE). Diagnostic for bench_dsa_synthetic.py's runs:
  OMP_NUM_THREADS=1 nice -n 15 python -m projects.DSA.bench.bench_dsa_features \
      output/bench_dsa_synthetic/dsa_seed0 [more run dirs]
"""
import reid2  # noqa: F401  (first: it restores the PIL.Image names Detectron2 v0.6 uses, gone in Pillow >= 10)

# isort: split
import argparse
from pathlib import Path


def evaluate_run(run_dir):
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import build_model
    from torch.utils.data import DataLoader

    from reid2.config import get_cfg
    from reid2.data import build_reid_transforms
    from reid2.evaluation import ReIDEvaluator
    from reid2.projects.dsa.data import DSADataset, dsa_collate

    cfg = get_cfg()
    cfg.merge_from_file(str(Path(run_dir) / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(str(Path(run_dir) / "model_final.pth"))
    name = cfg.DATASETS.TEST[0]
    dicts = DatasetCatalog.get(name)
    d = cfg.MODEL.DSA
    ds = DSADataset(dicts, build_reid_transforms(cfg, is_train=False), mode="csa" if d.MODE == "csa" else "dsa",
                    size=d.DSAP_SIZE, iuv_root=d.IUV_ROOT, iuv_format=d.IUV_FORMAT, flip_prob=0.0,
                    normalize=cfg.INPUT.REID.NORMALIZE, collision=d.COLLISION)
    variants = ["f_G", "f_L", "[f_G, f_L]"] + (["z_G", "z_L", "[z_G, z_L]"] if model.dsag is not None else [])
    evaluators = {v: ReIDEvaluator.from_config(cfg, name) for v in variants}
    with torch.no_grad():
        for batch in DataLoader(ds, batch_size=64, collate_fn=dsa_collate):
            f_g, f_l = model.mf(batch["images"])
            feats = {"f_G": f_g, "f_L": f_l, "[f_G, f_L]": torch.cat([f_g, f_l], 1)}
            if model.dsag is not None:
                z_g, z_l = model.fuse(f_g, f_l, *model.dsag(batch["dsap"]))
                feats.update({"z_G": z_g, "z_L": z_l, "[z_G, z_L]": torch.cat([z_g, z_l], 1)})
            for v in variants:
                evaluators[v].process(batch, feats[v])
    return [(v, evaluators[v].evaluate()["reid"]) for v in variants]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="OUTPUT_DIRs of DSAReID runs (config.yaml + model_final.pth)")
    args = p.parse_args()
    from tabulate import tabulate

    rows = []
    for run in args.runs:
        for variant, res in evaluate_run(run):
            rows.append([Path(run).name, variant, f"{res['Rank-1']:.1f}", f"{res['Rank-5']:.1f}", f"{res['mAP']:.1f}"])
    print(tabulate(rows, headers=["run", "features", "rank-1", "rank-5", "mAP"], tablefmt="pipe"))


if __name__ == "__main__":
    main()
