"""Paper-scale person-search training step: time and peak memory, fp32 against mixed precision (``gpu_check`` 1).

Each config of ``configs/`` (ResNet-50 / ResNet-18 C4, 5,532 identities, the paper's RoI batch, random weights as
``bench.bench_kd_paper_steps`` builds them: ``MODEL.REQUIRE_PRETRAINED`` does not apply, nothing is loaded) is
trained by reid2's own trainer step (``SimpleTrainer`` / ``ReID2AMPTrainer.run_step``: forward, backward, SGD,
the metrics write) on ``--batch`` random images of each size with three people each. The first ``--warmup`` steps
are not timed (cuDNN autotuning, allocator); then the mean of ``--steps`` steps, synchronised, and the peak of
``torch.cuda.max_memory_allocated`` over them.

    python -m bench.gpu_paper_steps [--sizes 900x1500 600x1000] [--batch 4] [--out FILE.md]
"""
import reid2  # noqa: F401  (first: it restores the PIL.Image names Detectron2 v0.6 uses, gone in Pillow >= 10)

# isort: split
import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from detectron2.engine import SimpleTrainer
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from tabulate import tabulate

from bench.bench_kd_paper_steps import make_cfg, zero_init_residuals
from reid2.engine.amp import ReID2AMPTrainer

CONFIGS = ["oim_r50.yaml", "kd_oim.yaml", "kd_det_oim.yaml", "kd_oim_r18.yaml", "kd_det_oim_r18.yaml"]


def batch(n, h, w, seed):
    """``n`` random h×w images with three labelled people and one unlabelled each."""
    gen = torch.Generator().manual_seed(seed)
    rel = torch.tensor([[0.1, 0.2, 0.2, 0.9], [0.4, 0.1, 0.5, 0.8], [0.7, 0.3, 0.78, 0.95], [0.85, 0.2, 0.93, 0.7]])
    inputs = []
    for i in range(n):
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(rel * torch.tensor([w, h, w, h]))
        inst.gt_classes = torch.zeros(4, dtype=torch.int64)
        inst.gt_pids = torch.tensor([i, i + 10, i + 20, -1])
        image = torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8).float()
        inputs.append({"image": image, "height": h, "width": w, "instances": inst})
    return inputs


def time_config(cfg, size, amp, args):
    """(s/step, peak GiB) of reid2's trainer step on a fixed batch."""
    torch.manual_seed(0)
    model = zero_init_residuals(build_model(cfg)).train()
    # lr 0: random weights under FrozenBN diverge after a real update; the work per step is the same.
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0, momentum=0.9)
    data = batch(args.batch, *size, seed=0)
    loader = itertools.repeat(data)
    trainer = ReID2AMPTrainer(model, loader, optimizer) if amp else SimpleTrainer(model, loader, optimizer)
    cuda = cfg.MODEL.DEVICE.startswith("cuda")
    times = []
    with EventStorage() as storage:
        trainer.storage = storage
        for step in range(args.warmup + args.steps):
            if step == args.warmup and cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            trainer.run_step()
            if cuda:
                torch.cuda.synchronize()
            if step >= args.warmup:
                times.append(time.perf_counter() - start)
            storage.step()
    memory = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else float("nan")
    del trainer, model, optimizer
    if cuda:
        torch.cuda.empty_cache()
    return float(np.mean(times)), memory


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["900x1500", "600x1000"], help="HxW image sizes")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rois", type=int, default=0, help="override ROI_HEADS.BATCH_SIZE_PER_IMAGE (0: config)")
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="write the table (markdown) here too")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed sizes: let cuDNN pick its kernels (CUDNN_BENCHMARK)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            for size_text in args.sizes:
                h, w = (int(x) for x in size_text.lower().split("x"))
                # the bench helper takes the short side; MAX_SIZE = short * 5/3 (900 -> 1500)
                cfg = make_cfg(name, argparse.Namespace(device=args.device, size=h, rois=args.rois), Path(tmp))
                cfg.SOLVER.IMS_PER_BATCH = args.batch
                result = {}
                for amp in (False, True):
                    result[amp] = time_config(cfg, (h, w), amp, args)
                    print(f"{name} {h}x{w} {'amp' if amp else 'fp32'}: {result[amp][0]:.3f} s/step, "
                          f"{result[amp][1]:.2f} GiB", flush=True)
                rows.append([name, f"{h}x{w}", args.batch, *result[False], *result[True],
                             result[False][0] / result[True][0]])
                write_table(rows, args, final=False)  # a step stopped at its time limit keeps its rows
    write_table(rows, args, final=True)


def write_table(rows, args, final):
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"cpu, {torch.get_num_threads()} threads"
    title = (f"Person-search training step (reid2 trainer step: forward + backward + SGD), batch {args.batch}, "
             f"mean of {args.steps} steps after {args.warmup} warm-up, {device}, torch {torch.__version__}; "
             "AMP = fp16 autocast + grad scaler on CUDA, bf16 autocast on CPU")
    table = tabulate(rows, headers=["config", "image", "batch", "fp32 s/step", "fp32 peak GiB", "AMP s/step",
                                    "AMP peak GiB", "speed-up"], floatfmt=".3f", tablefmt="pipe")
    text = f"{title}\n\n{table}\n"
    if final:
        print("\n" + text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
