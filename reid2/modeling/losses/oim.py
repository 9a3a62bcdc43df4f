"""Online Instance Matching loss (Xiao et al., CVPR'17) with a look-up table and a circular queue.

Behaviour (notes/person_search.md §1.5): logits ``s·[x·LUTᵀ, x·queueᵀ]`` against copies of the buffers;
cross-entropy over labelled rows only; then, without gradient, every labelled feature moves its LUT row
(``row ← m·row + (1−m)·x``, re-normalised unless the Caffe behaviour is asked for) and every unlabelled
foreground feature is written into the queue (all dimensions, not Caffe's 64-float GPU quirk).
Background never touches either buffer.

Under ``torch.distributed`` the (feature, pid) pairs of all ranks are gathered before the update and
applied in rank order, so every rank holds the same buffers as one process fed the concatenated batch.
"""
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from reid2.utils.precision import fp32_region

from .pids import UNLABELED_PID

__all__ = ["OIMLoss", "all_gather_rows", "occurrence_rank"]



def all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (N_r, ...) of every rank in rank order; N_r may differ between ranks."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    world = dist.get_world_size()
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    if max(counts) == 0:
        return tensor
    padded = tensor.new_zeros((max(counts), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, counts)])


def occurrence_rank(ids: torch.Tensor) -> torch.Tensor:
    """For each element, how many earlier elements hold the same id: [5, 3, 5, 5] → [0, 0, 1, 2]."""
    order = torch.sort(ids, stable=True).indices
    sorted_ids = ids[order]
    positions = torch.arange(len(ids), device=ids.device)
    starts_group = torch.ones_like(sorted_ids, dtype=torch.bool)
    starts_group[1:] = sorted_ids[1:] != sorted_ids[:-1]
    group_start = torch.cummax(torch.where(starts_group, positions, 0), dim=0).values
    rank = torch.empty_like(positions)
    rank[order] = positions - group_start
    return rank


class OIMLoss(nn.Module):
    """OIM over L2-normalised features; buffers ``lut`` (P×D), ``queue`` (Q×D), ``queue_ptr`` (long).

    Args:
        num_pids: P, labelled training identities (pids 0..P-1).
        queue_size: Q, unlabelled features remembered (0 disables the queue).
        feat_dim: D.
        scalar: logit scale 1/τ (30 in the PyTorch ports, 10 in Caffe).
        momentum: m of the LUT update.
        normalize_lut: L2-normalise LUT rows after each update (ports) or not (Caffe).
        fixed_lut: never update the LUT (KD_reid); the queue keeps moving.
    """

    def __init__(self, num_pids: int, queue_size: int, feat_dim: int = 256, scalar: float = 30.0,
                 momentum: float = 0.5, normalize_lut: bool = True, fixed_lut: bool = False):
        super().__init__()
        if num_pids < 1:
            raise ValueError(f"OIMLoss: num_pids (MODEL.OIM.NUM_PIDS) must be >= 1, got {num_pids}")
        if queue_size < 0 or feat_dim < 1:
            raise ValueError(f"OIMLoss: need queue_size >= 0 and feat_dim >= 1, got {queue_size}, {feat_dim}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"OIMLoss: momentum (MODEL.OIM.MOMENTUM) must be in [0, 1], got {momentum}")
        self.num_pids, self.queue_size, self.feat_dim = num_pids, queue_size, feat_dim
        self.scalar, self.momentum = scalar, momentum
        self.normalize_lut, self.fixed_lut = normalize_lut, fixed_lut
        self.register_buffer("lut", torch.zeros(num_pids, feat_dim))
        self.register_buffer("queue", torch.zeros(queue_size, feat_dim))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return (f"num_pids={self.num_pids}, queue_size={self.queue_size}, feat_dim={self.feat_dim}, "
                f"scalar={self.scalar}, momentum={self.momentum}, normalize_lut={self.normalize_lut}, "
                f"fixed_lut={self.fixed_lut}")

    @torch.no_grad()
    def load_lut(self, table: torch.Tensor) -> None:
        """Copy a (P, D) table into the LUT (e.g. a teacher's, for KD_reid); shape must match."""
        table = torch.as_tensor(table)
        if tuple(table.shape) != tuple(self.lut.shape):
            raise ValueError(f"OIMLoss.load_lut: table shape {tuple(table.shape)} != LUT shape "
                             f"{tuple(self.lut.shape)} (num_pids × feat_dim)")
        self.lut.copy_(table.to(self.lut))

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """(N, P + Q) scaled similarities against copies of the buffers (later updates leave autograd intact);
        fp32 under autocast too (the buffers are fp32, and bf16 products would blur logits scaled by 30)."""
        memory = torch.cat([self.lut, self.queue]).detach().clone()
        with fp32_region(feats):
            return self.scalar * feats.float() @ memory.t()

    def forward(self, feats: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the labelled rows (a zero still attached to the graph when none)."""
        if feats.dim() != 2 or feats.shape[1] != self.feat_dim or pids.shape != feats.shape[:1]:
            raise ValueError(f"OIMLoss: expected feats (N, {self.feat_dim}) and pids (N,), got "
                             f"{tuple(feats.shape)} and {tuple(pids.shape)}")
        feats, pids = feats.float(), pids.long()
        if (pids >= self.num_pids).any():
            raise ValueError(f"OIMLoss: person id {int(pids.max())} >= num_pids {self.num_pids} "
                             "(MODEL.OIM.NUM_PIDS must cover every training id)")
        labeled = pids >= 0
        if labeled.any():
            with fp32_region(feats):
                loss = F.cross_entropy(self.logits(feats[labeled]), pids[labeled])
        else:
            loss = feats.sum() * 0.0
        if self.training:
            self.update(feats.detach(), pids)
        return loss

    @torch.no_grad()
    def update(self, feats: torch.Tensor, pids: torch.Tensor) -> None:
        """Apply the buffer updates of a batch (gathered over ranks), in batch order."""
        feats, pids = all_gather_rows(feats.float()), all_gather_rows(pids.long())
        if not self.fixed_lut:
            self._update_lut(feats[pids >= 0], pids[pids >= 0])
        self._enqueue(feats[pids == UNLABELED_PID])

    def _update_lut(self, feats: torch.Tensor, pids: torch.Tensor) -> None:
        """Same result as the ports' per-sample loop: the k-th features of all ids are applied in round k."""
        if len(pids) == 0:
            return
        rank = occurrence_rank(pids)
        for round_ in range(int(rank.max()) + 1):
            selected = rank == round_
            ids = pids[selected]
            rows = self.momentum * self.lut[ids] + (1.0 - self.momentum) * feats[selected]
            if self.normalize_lut:
                rows = F.normalize(rows, dim=1)
            self.lut[ids] = rows

    def _enqueue(self, feats: torch.Tensor) -> None:
        """Write ``feats`` at the pointer, wrapping; only the last Q survive when more arrive."""
        count = len(feats)
        if count == 0 or self.queue_size == 0:
            return
        kept = feats[-self.queue_size:]
        first = int(self.queue_ptr) + count - len(kept)
        slots = (first + torch.arange(len(kept), device=feats.device)) % self.queue_size
        self.queue[slots] = kept
        self.queue_ptr.fill_((int(self.queue_ptr) + count) % self.queue_size)
