"""Re-ID ResNet-50 training throughput: reid2's trainer step against a plain PyTorch loop (``gpu_check`` 2).

Both train the same network on the same pre-staged batch (``--batch`` random 256×128 images, P×K identities, on
the device): torchvision ResNet-50 with last stride 1 → average pooling → BN neck (no shift) → linear classifier,
with label-smoothed cross-entropy (ε 0.1) on the logits plus the batch-hard triplet loss (margin 0.3) on the pooled
feature, Adam (``configs/Base-ReID.yaml``). reid2's side is ``ReIDBaseline`` built from that config and stepped by
its trainer (``SimpleTrainer`` / ``ReID2AMPTrainer.run_step``: per-step loss logging included); the plain side is
the usual hand-written loop (autocast + ``GradScaler`` for AMP, no per-step host synchronisation). The sides
alternate ``--rounds`` times (so clock or thermal drift hits both) and each keeps its best round. The ratio is
reid2 images/s over plain images/s (the goal is >= 0.95 with AMP). Extra reid2 rows show the speed options
(``MODEL.CHANNELS_LAST``, ``SOLVER.FUSED_OPTIMIZER``) against reid2 AMP.

    python -m bench.gpu_reid_throughput [--batch 64] [--steps 20] [--out FILE.md]
"""
import reid2  # noqa: F401  (first: it restores the PIL.Image names Detectron2 v0.6 uses, gone in Pillow >= 10)

# isort: split
import argparse
import itertools
import time

import torch
import torch.nn.functional as F
import torchvision
from detectron2.engine import SimpleTrainer
from detectron2.utils.events import EventStorage
from tabulate import tabulate
from torch import nn

from bench.common import REPO, emit_table
from reid2.config import get_cfg
from reid2.engine import ReID2Trainer
from reid2.engine.amp import ReID2AMPTrainer, amp_dtype
from reid2.modeling.meta_arch.reid_baseline import ReIDBaseline

NUM_CLASSES = 751  # Market-1501 training identities


class PlainReID(nn.Module):
    """The same network written directly on torchvision."""

    def __init__(self, depth=50):
        super().__init__()
        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        for conv in net.layer4[0].modules():  # last stride 1
            if isinstance(conv, nn.Conv2d) and conv.stride == (2, 2):
                conv.stride = (1, 1)
        net.fc = nn.Identity()
        self.net = net
        self.neck = nn.BatchNorm1d(net.layer4[-1].conv1.in_channels)
        self.neck.bias.requires_grad_(False)
        self.classifier = nn.Linear(self.neck.num_features, NUM_CLASSES, bias=False)

    def forward(self, images, targets):
        pooled = self.net(images)
        logits = self.classifier(self.neck(pooled))
        dist = torch.cdist(pooled.float(), pooled.float())
        same = targets[:, None] == targets[None, :]
        d_ap = dist.masked_fill(~same, float("-inf")).max(1).values
        d_an = dist.masked_fill(same, float("inf")).min(1).values
        return F.cross_entropy(logits, targets, label_smoothing=0.1) + F.relu(d_ap - d_an + 0.3).mean()


def reid_cfg(args, **options):
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / "Base-ReID.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", args.device, "MODEL.REQUIRE_PRETRAINED", False,
                         "MODEL.REID_BACKBONE.DEPTH", args.depth, "SOLVER.IMS_PER_BATCH", args.batch])
    cfg.MODEL.CHANNELS_LAST = options.get("channels_last", False)
    cfg.SOLVER.FUSED_OPTIMIZER = options.get("fused", False)
    return cfg


def staged_batch(args):
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.height, args.width, generator=gen).to(args.device)
    targets = torch.arange(args.batch // 4).repeat_interleave(4).to(args.device)  # P x K, K = 4
    return images, targets


def _timed(step, args):
    """Images/s of ``step()`` over ``args.steps`` steps after ``args.warmup``."""
    cuda = args.device.startswith("cuda")
    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return args.steps * args.batch / (time.perf_counter() - start)


def make_reid2(args, amp, **options):
    """A step function of reid2's trainer on the staged batch."""
    torch.manual_seed(0)
    cfg = reid_cfg(args, **options)
    model = ReIDBaseline(cfg, num_classes=NUM_CLASSES).to(args.device).train()
    if cfg.MODEL.CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    optimizer = ReID2Trainer.build_optimizer(cfg, model)
    images, targets = staged_batch(args)
    loader = itertools.repeat({"images": images, "targets": targets})
    trainer = ReID2AMPTrainer(model, loader, optimizer) if amp else SimpleTrainer(model, loader, optimizer)
    storage = EventStorage().__enter__()  # the trainer logs its losses to the current storage

    def step():
        trainer.run_step()
        storage.step()
    return step, sum(p.numel() for p in model.parameters())


def make_plain(args, amp):
    torch.manual_seed(0)
    model = PlainReID(args.depth).to(args.device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3.5e-4, weight_decay=5e-4)
    device_type = torch.device(args.device).type
    dtype = amp_dtype("auto", device_type)
    scaler = torch.amp.GradScaler(device_type, enabled=amp and dtype == torch.float16)
    images, targets = staged_batch(args)

    def step():
        with torch.autocast(device_type, dtype=dtype, enabled=amp):
            loss = model(images, targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return step, sum(p.numel() for p in model.parameters())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-options", action="store_true", help="skip the channels-last / fused rows")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", help="write the table (markdown) here too")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    variants = [("plain", False, {}), ("reid2", False, {}), ("plain", True, {}), ("reid2", True, {})]
    if not args.no_options:
        variants += [("reid2", True, {"channels_last": True}), ("reid2", True, {"fused": True}),
                     ("reid2", True, {"channels_last": True, "fused": True})]
    steps, best, params = {}, {}, {}
    for side, amp, options in variants:
        key = (side, amp, tuple(sorted(options)))
        steps[key], params[key] = make_reid2(args, amp, **options) if side == "reid2" else make_plain(args, amp)
    for _ in range(args.rounds):
        for key, step in steps.items():
            best[key] = max(best.get(key, 0.0), _timed(step, args))
            print(f"{key}: {best[key]:.1f} img/s", flush=True)
    rows = []
    for (side, amp, options), rate in best.items():
        base = best[("plain", amp, ())] if not options else best[("reid2", True, ())]
        against = f"plain {'AMP' if amp else 'fp32'}" if not options else "reid2 AMP"
        label = side + ("" if not options else " + " + " + ".join(options))
        rows.append([label, "AMP" if amp else "fp32", params[(side, amp, options)], rate, rate / base, against])
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"cpu, {torch.get_num_threads()} threads"
    title = (f"Re-ID ResNet-{args.depth} training throughput, batch {args.batch} at {args.height}x{args.width}, "
             f"best of {args.rounds} rounds of {args.steps} steps, {device}, torch {torch.__version__}")
    table = tabulate(rows, headers=["trainer", "precision", "parameters", "images/s", "ratio", "against"],
                     floatfmt=".3f", tablefmt="pipe")
    emit_table(title, table, args.out)


if __name__ == "__main__":
    main()
