"""Functions run inside the processes started by tests/engine/test_distributed.py (must be importable)."""
import reid2  # noqa: F401  (first: it restores the PIL.Image names Detectron2 v0.6 uses, gone in Pillow >= 10)

# isort: split
import json
import os

import torch
from detectron2.utils import comm
from torch import nn


def ddp_step_and_checkpoint(out_dir):
    from reid2.engine import AtomicCheckpointer, create_ddp_model

    torch.manual_seed(0)  # same initial weights on every rank
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    ddp = create_ddp_model(model, broadcast_buffers=False)
    rank = comm.get_rank()
    gen = torch.Generator().manual_seed(100 + rank)  # different data per rank
    x, y = torch.randn(5, 4, generator=gen), torch.randn(5, 2, generator=gen)
    loss = ((ddp(x) - y) ** 2).mean()
    loss.backward()
    grads = [p.grad.tolist() for p in model.parameters()]
    ckpt = AtomicCheckpointer(model, out_dir, save_to_disk=comm.is_main_process())
    ckpt.save("model_test")
    comm.synchronize()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"rank": rank, "world": comm.get_world_size(), "grads": grads,
                   "x": x.tolist(), "y": y.tolist(), "local_rank": comm.get_local_rank()}, f)


# ---- batch-contrastive loss on the global batch (tests/engine/test_distributed.py) --------------------------
BC_GLOBAL_BATCH = 8


def bc_data():
    """A batch of 8 whose identities pair up only across the two halves (no positive pair within a half)."""
    gen = torch.Generator().manual_seed(7)
    return torch.randn(BC_GLOBAL_BATCH, 6, generator=gen), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])


class BCNet(nn.Module):
    """Linear features → classifier; loss = softmax + the registered BatchContrastiveLoss (as ReIDBaseline)."""

    def __init__(self, gradient):
        super().__init__()
        from reid2.config import get_cfg
        from reid2.modeling.losses.registry import BatchContrastiveLoss

        cfg = get_cfg()
        cfg.MODEL.LOSSES.BATCH_CONTRASTIVE.merge_from_list(["TAU", 1.0, "GRADIENT", gradient, "CENTER_LR", "solver"])
        torch.manual_seed(0)
        self.features, self.classifier = nn.Linear(6, 5), nn.Linear(5, 4)
        self.bc = BatchContrastiveLoss(cfg, 4, 5)
        self.bc.center.centers.copy_(torch.randn(4, 5, generator=torch.Generator().manual_seed(3)))
        self.bc.set_solver_lr(0.1)

    def forward(self, x, y):
        feat = self.features(x)
        losses = self.bc({"pool_feat": feat, "targets": y})
        losses["loss_cls"] = nn.functional.cross_entropy(self.classifier(feat), y)
        return losses


def bc_step(model, x, y):
    """One SGD step (lr 0.1); returns the losses, the gradients, the new weights and the new centers."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = model(x, y)
    sum(losses.values()).backward()
    inner = getattr(model, "module", model)
    grads = [p.grad.tolist() for p in inner.parameters()]
    opt.step()
    return {"losses": {k: v.item() for k, v in losses.items()}, "grads": grads,
            "weights": [p.tolist() for p in inner.parameters()], "centers": inner.bc.center.centers.tolist()}


def bc_global_batch_step(out_dir):
    from reid2.engine import create_ddp_model

    rank, world = comm.get_rank(), comm.get_world_size()
    x, y = bc_data()
    rows = slice(rank * BC_GLOBAL_BATCH // world, (rank + 1) * BC_GLOBAL_BATCH // world)
    result = {}
    for gradient in ("autograd", "eq8"):
        ddp = create_ddp_model(BCNet(gradient), broadcast_buffers=False)
        result[gradient] = bc_step(ddp, x[rows], y[rows])
    with open(os.path.join(out_dir, f"bc_rank{rank}.json"), "w") as f:
        json.dump(result, f)
