#!/usr/bin/env python
"""SLSR in one command: stage 1 (clusters) → stage 2 (a DCGAN per cluster) → stage 3 (re-ID with SLSR).

  python projects/SLSR/tools/train_net.py --config-file projects/SLSR/configs/market1501_r50.yaml
  python projects/SLSR/tools/train_net.py --config-file projects/SLSR/configs/synthetic_tiny.yaml --stages stage1,stage2
  python projects/SLSR/tools/train_net.py --config-file projects/SLSR/configs/market1501_r50.yaml --redo stage2
  python projects/SLSR/tools/train_net.py --config-file projects/SLSR/configs/market1501_r50.yaml --eval-only \
      MODEL.WEIGHTS output/slsr/market1501_r50/stage3/model_final.pth

Every stage writes under OUTPUT_DIR (stage1/, stage2/, stage3/) and is skipped when its DONE.json marker
exists; an interrupted stage resumes (CNN and stage-3 checkpoints, per-epoch GAN checkpoints, finished
clusters kept). Trailing KEY VALUE pairs override the config. Runs in one process (no --num-gpus > 1).
"""
import reid2  # noqa: F401  (first: it restores the PIL.Image names Detectron2 v0.6 uses, gone in Pillow >= 10)

# isort: split
import argparse
import sys

from detectron2.engine import default_argument_parser

import reid2.projects.slsr as slsr  # noqa: F401  (registrations)
from reid2.engine import setup_cfg
from reid2.projects.slsr.pipeline import STAGES, redo, run_pipeline, stage3_config


def _stages(text):
    stages = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise argparse.ArgumentTypeError(f"stages must be among {','.join(STAGES)}, got {text!r}")
    return stages


def build_parser():
    parser = default_argument_parser(epilog=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--stages", type=_stages, default=STAGES, metavar="S1,S2",
                        help="comma-separated stages to run, e.g. stage1,stage2 (default: all, in order)")
    parser.add_argument("--redo", choices=STAGES, default=None,
                        help="delete this stage's outputs and those after it, then run")
    return parser


def main(args):
    cfg = setup_cfg(args)  # imports reid2.projects.slsr (the config's REID2.IMPORTS) before merging
    if args.eval_only:
        from reid2.engine import AtomicCheckpointer
        from reid2.projects.slsr.trainer import SLSRTrainer

        cfg3 = stage3_config(cfg)
        model = SLSRTrainer.build_model(cfg3)
        AtomicCheckpointer(model, save_dir=cfg3.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        return SLSRTrainer.test(cfg3, model)
    if args.redo:
        redo(cfg, args.redo)
    return run_pipeline(cfg, args.stages)


if __name__ == "__main__":
    args = build_parser().parse_args()
    if args.num_gpus > 1 or args.num_machines > 1:
        sys.exit("projects/SLSR/tools/train_net.py runs in one process; use tools/train_net.py with the stage-3 config "
                 "(REID2.TRAINER SLSRTrainer, SLSR.WORK_DIR <pipeline folder>) for multi-GPU stage 3")
    print("Command Line Args:", args)
    main(args)
