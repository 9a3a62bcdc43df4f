"""Functions run inside the processes started by tests/engine/test_distributed.py (must be importable)."""
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
