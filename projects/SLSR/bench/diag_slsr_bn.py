#!/usr/bin/env python
"""Diagnostic for the synthetic SLSR bench: are generated images hurting through BatchNorm statistics?

Re-evaluates stage-3 checkpoints of ``bench_slsr_synthetic`` twice: as trained (BN running statistics of mixed
real + generated batches) and with every BN layer's statistics recomputed on the real training images only
(test transforms, cumulative average). The weights are unchanged; only the normalisation statistics differ.

  OMP_NUM_THREADS=1 nice -n 15 python -m projects.SLSR.bench.diag_slsr_bn --work-dir output/bench_slsr3 \\
      --runs m0_s0 m2_s0 m3_s0
"""
import argparse
import os
from pathlib import Path

import torch

from bench.common import REPO


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", required=True)
    p.add_argument("--runs", nargs="+", required=True, help="folders under <work-dir>/stage3_runs")
    args = p.parse_args()
    os.environ.setdefault("REID2_PROGRESS", "0")
    import reid2.projects.slsr  # noqa: F401
    from reid2.config import get_cfg
    from reid2.data import build_reid_test_loader, get_reid_train_dicts
    from reid2.engine import resolve_device
    from reid2.evaluation import flatten_results
    from reid2.projects.slsr.trainer import SLSRTrainer
    from reid2.utils.serialization import SafeCheckpointer

    work = Path(args.work_dir)
    for run in args.runs:
        cfg = get_cfg()
        cfg.merge_from_file(str(REPO / "projects" / "SLSR" / "configs" / "synthetic_tiny.yaml"))
        cfg.merge_from_list(["SLSR.WORK_DIR", str(work), "OUTPUT_DIR", str(work / "diag_bn" / run),
                             "SLSR.USE_GENERATED", "False"])  # the model's shape does not depend on it
        resolve_device(cfg)
        model = SLSRTrainer.build_model(cfg)
        SafeCheckpointer(model).load(str(work / "stage3_runs" / run / "model_final.pth"))
        before = flatten_results(SLSRTrainer.test(cfg, model))
        bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        model.train()
        with torch.no_grad():
            for batch in build_reid_test_loader(cfg, None, dicts=get_reid_train_dicts(cfg.DATASETS.TRAIN)):
                model.embed(batch["images"].to(model.device))
        model.eval()
        after = flatten_results(SLSRTrainer.test(cfg, model))
        print(f"{run}: rank-1 {before['reid/Rank-1']:.2f} → {after['reid/Rank-1']:.2f} with real-image BN "
              f"statistics; mAP {before['reid/mAP']:.2f} → {after['reid/mAP']:.2f}", flush=True)


if __name__ == "__main__":
    main()
