"""Gather a batch from every process with the gradient flowing back to each process's own rows."""
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn

from .oim import all_gather_rows

__all__ = ["all_gather_rows", "all_gather_rows_with_grad"]


def all_gather_rows_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` (N_r, ...) of every rank concatenated in rank order, differentiable.

    ``torch.distributed.nn``'s all_gather sums the gradients every rank sends back to a rank's rows, so a
    loss L computed identically on every rank from the gathered batch gives each rank W · ∂L/∂(its rows);
    DDP's 1/W averaging of the parameter gradients then leaves exactly ∂L/∂θ of one process that saw the
    whole batch (checked in tests/engine/test_distributed.py). N_r may differ between ranks (padded).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    pad = tensor.new_zeros((max(counts) - tensor.shape[0], *tensor.shape[1:]))
    parts = dist_nn.all_gather(torch.cat([tensor, pad]))
    return torch.cat([part[:n] for part, n in zip(parts, counts)])
