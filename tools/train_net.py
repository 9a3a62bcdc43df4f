#!/usr/bin/env python
"""Train or evaluate any reid2 model: re-ID, person search (OIM), distillation, projects.

Examples:
  python tools/train_net.py --config-file configs/kd_oim.yaml
  python tools/train_net.py --config-file configs/kd_oim.yaml --eval-only MODEL.WEIGHTS out/model_final.pth
  python tools/train_net.py --config-file configs/market1501/bc_r50.yaml --num-gpus 2   # 2 processes (gloo on CPU)
  python tools/train_net.py --config-file my.yaml --import my_package.reid_ext      # your own registrations
  torchrun --nproc_per_node 4 tools/train_net.py --config-file my.yaml              # started by torchrun
  srun python tools/train_net.py --config-file my.yaml     # one SLURM task per GPU (see the README)

The trainer class comes from REID2.TRAINER. MODEL.DEVICE auto (the default) uses CUDA when available, else
the CPU; an explicit MODEL.DEVICE is honoured. --eval-only needs MODEL.WEIGHTS: a checkpoint that fits the model,
or "random" for an untrained model on purpose. Trailing KEY VALUE pairs override the config.
"""
import reid2  # noqa: F401  (first: it restores the PIL.Image names Detectron2 v0.6 uses, gone in Pillow >= 10)

# isort: split
from detectron2.engine import default_argument_parser

from reid2.engine import TRAINER_REGISTRY, launch, setup_cfg


def build_parser():
    parser = default_argument_parser(epilog=__doc__)
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import MODULE before the config is merged (its registrations and config keys)")
    # --num-gpus unset: 1 process, or as many as torchrun/srun started. --dist-url auto: a free
    # port on this machine (Detectron2's fixed port made a second run fail with EADDRINUSE).
    parser.set_defaults(num_gpus=None, dist_url="auto")
    return parser


def main(args):
    cfg = setup_cfg(args)  # imports --import modules and the config's REID2.IMPORTS before merging it
    trainer_cls = TRAINER_REGISTRY.get(cfg.REID2.TRAINER)
    if args.eval_only:
        model = trainer_cls.build_model(cfg)
        trainer_cls.checkpointer_cls(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume)
        return trainer_cls.test(cfg, model)
    trainer = trainer_cls(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = build_parser().parse_args()
    print("Command Line Args:", args)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
