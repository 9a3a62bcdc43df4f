"""Training step time of the paper-scale KD configs against plain OIM (Munjal et al., Tables 1 and 3), and of the
two ResNet-50 splits (``--only split``: C4 ``oim_r50.yaml`` against the original OIM's cut,
``oim_r50_conv4_3.yaml``).

Builds each config of ``configs/`` as a user would train it (ResNet-50 / ResNet-18 C4, 9 anchors, 5,532 CUHK-SYSU
identities, the paper's RoI batch), with random weights: the step time does not depend on them. KD_reid gets a
random L2-normalised LUT file and KD_det a randomly initialised DET_50 teacher checkpoint, both written to a
temporary folder. Each step is a forward, backward and SGD step (learning rate 0: random weights under
FrozenBN diverge after one real update, and the work per step is the same) on ``IMS_PER_BATCH`` random images of
the given size with three people each. The baseline is plain OIM of the same backbone, timed in the same run:

* ``kd_oim*`` (KD_reid) should cost the same as OIM: the LUT is only frozen;
* ``kd_det_oim*`` adds the teacher's forward pass (backbone, RPN head, res5 head on the student's RoIs);
* ``oim_r50_conv4_3`` runs res4d-f per RoI (14×14) instead of once per image, and trains res2 (FREEZE_AT 1).

    .venv/bin/python -m bench.bench_kd_paper_steps [--size 600] [--steps 3] [--device cuda] [--only r18 split]

On the 2-core CPU machine use ``--size 240 --rois 64``: a ResNet-50 step at 600 px takes minutes there.
"""
import reid2  # noqa: F401  (first: it restores the PIL.Image names Detectron2 v0.6 uses, gone in Pillow >= 10)

# isort: split
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from tabulate import tabulate

from bench.common import REPO
from reid2.config import get_cfg

NUM_PIDS = 5532  # CUHK-SYSU training identities
# (config, baseline config) pairs; the baseline row is timed first.
ROWS = {
    "r50": [("oim_r50.yaml", None), ("kd_oim.yaml", "oim_r50.yaml"), ("kd_det_oim.yaml", "oim_r50.yaml"),
            ("kd_det_reid_oim.yaml", "oim_r50.yaml")],
    "r18": [("oim_r18.yaml", None), ("kd_oim_r18.yaml", "oim_r18.yaml"), ("kd_det_oim_r18.yaml", "oim_r18.yaml")],
    "split": [("oim_r50.yaml", None), ("oim_r50_conv4_3.yaml", "oim_r50.yaml")],
}


def make_cfg(name, args, tmp: Path):
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / name))
    opts = ["MODEL.DEVICE", args.device, "MODEL.WEIGHTS", "", "MODEL.OIM.NUM_PIDS", NUM_PIDS,
            "INPUT.MIN_SIZE_TRAIN", f"({args.size},)", "INPUT.MAX_SIZE_TRAIN", int(args.size * 5 / 3)]
    if args.rois:
        opts += ["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", args.rois]
    if cfg.MODEL.KD.REID.LUT_SOURCE:
        opts += ["MODEL.KD.REID.LUT_SOURCE", str(random_lut(tmp, cfg.MODEL.OIM.FEAT_DIM))]
    if cfg.MODEL.KD.TEACHER_CONFIG:
        opts += ["MODEL.KD.TEACHER_WEIGHTS", str(random_teacher(tmp, cfg.MODEL.KD.TEACHER_CONFIG, args.device))]
    cfg.merge_from_list(opts)
    return cfg


def zero_init_residuals(model):
    """Zero the last (frozen) norm scale of every residual block, so that a random, un-normalised ResNet-50
    keeps finite activations and its RPN proposes real boxes: the RoI batch, which dominates the step, is then
    full, as with trained weights. Same cost per step."""
    for block in model.modules():
        if isinstance(block, (BottleneckBlock, BasicBlock)):
            last = block.conv3 if isinstance(block, BottleneckBlock) else block.conv2
            if isinstance(last.norm, FrozenBatchNorm2d):
                last.norm.weight.zero_()
    return model


def random_lut(tmp: Path, feat_dim: int) -> Path:
    path = tmp / f"lut_{feat_dim}.npy"
    if not path.exists():
        lut = np.random.default_rng(0).standard_normal((NUM_PIDS, feat_dim)).astype(np.float32)
        np.save(path, lut / np.linalg.norm(lut, axis=1, keepdims=True))
    return path


def random_teacher(tmp: Path, config: str, device: str) -> Path:
    path = tmp / (Path(config).stem + "_random.pth")
    if not path.exists():
        cfg = get_cfg()
        cfg.merge_from_file(str(REPO / config))
        cfg.merge_from_list(["MODEL.DEVICE", device, "MODEL.WEIGHTS", ""])
        torch.save({"model": zero_init_residuals(build_model(cfg)).state_dict()}, path)
    return path


def batch(cfg, size: int, seed: int):
    """IMS_PER_BATCH random (size × 4/3·size) images, three labelled people each (one unlabelled)."""
    gen = torch.Generator().manual_seed(seed)
    h, w = size, size * 4 // 3
    boxes = torch.tensor([[0.1, 0.2, 0.25, 0.9], [0.4, 0.1, 0.55, 0.8], [0.7, 0.3, 0.8, 0.95]]) * torch.tensor(
        [w, h, w, h])
    inputs = []
    for i in range(cfg.SOLVER.IMS_PER_BATCH):
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(boxes.clone())
        inst.gt_classes = torch.zeros(3, dtype=torch.int64)
        inst.gt_pids = torch.tensor([i, i + 10, -1])
        image = torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8).float()
        inputs.append({"image": image, "height": h, "width": w, "instances": inst})
    return inputs


def time_steps(cfg, args) -> tuple:
    """(seconds per step, sampled RoIs per image, peak accelerator memory in GiB or nan) after one warm-up step."""
    torch.manual_seed(0)
    model = zero_init_residuals(build_model(cfg)).train()
    # lr 0: the same work per step, but random weights under FrozenBN would diverge after one real update.
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0, momentum=0.9)
    cuda = args.device.startswith("cuda")
    times, rois = [], []
    with EventStorage() as storage:
        for step in range(args.steps + 1):
            inputs = batch(cfg, args.size, step)
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            losses = model(inputs)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            if cuda:
                torch.cuda.synchronize()
            if step:  # the first step warms up allocators and kernels
                times.append(time.perf_counter() - start)
                latest = storage.latest()
                rois.append(latest["roi_head/num_fg_samples"][0] + latest["roi_head/num_bg_samples"][0])
    memory = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else float("nan")
    return float(np.mean(times)), float(np.mean(rois)), memory


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=600, help="short side of the images (paper: 600)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per config (after one warm-up)")
    parser.add_argument("--rois", type=int, default=0, help="override ROI_HEADS.BATCH_SIZE_PER_IMAGE (0: config)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", choices=sorted(ROWS), nargs="*", default=sorted(ROWS))
    args = parser.parse_args()
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for group in args.only:
            seconds = {}
            for name, baseline in ROWS[group]:
                cfg = make_cfg(name, args, Path(tmp))
                seconds[name], rois, memory = time_steps(cfg, args)
                ratio = seconds[name] / seconds[baseline] if baseline else 1.0
                table.append([name, cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.PERSON_SEARCH.SPLIT, cfg.SOLVER.IMS_PER_BATCH,
                              rois, seconds[name], ratio, memory])
                print(f"{name}: {seconds[name]:.3f} s/step", flush=True)
    cuda = args.device.startswith("cuda")
    device = torch.cuda.get_device_name() if cuda else f"cpu, {torch.get_num_threads()} threads"
    print(f"\nTraining step (forward + backward + SGD), {args.size}-px images, mean of {args.steps} steps, {device}:")
    print(tabulate(table, headers=["config", "depth", "split", "images", "RoIs/img sampled", "s/step",
                                   "× first row of its group",
                                   "peak GiB"], floatfmt=".3f", tablefmt="pipe"))


if __name__ == "__main__":
    main()
