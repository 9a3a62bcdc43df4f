"""Center loss (Wen et al., ECCV 2016) and the batch-contrastive total L_B-C (Zhang & Xu, Eq. 4-7).

    L_c = ½ Σ_i ‖x_i - c_{y_i}‖²                                  (summed over the batch, Eq. 4)
    Δc_j = Σ_i δ(y_i = j)(c_j - x_i) / (1 + Σ_i δ(y_i = j))       (Eq. 5)
    c_j ← c_j - α Δc_j                                            (centers move toward their features)

Eq. 6 of Zhang & Xu prints ``c + η Δc``, which would push centers away from their features; the
minus sign is Wen et al.'s rule and their reference Caffe layer's. Centers are a buffer, not a
parameter: the optimizer never touches them (no weight decay, no momentum), they only follow the
rule above. Note Wen et al.'s own layer averages L_c over the batch (1/2M); Zhang & Xu sum it.
"""
from typing import Dict, Optional

import torch
from detectron2.utils import comm
from torch import nn

from .batch_contrastive import GRADIENTS, batch_contrastive_loss
from .gather import all_gather_rows, all_gather_rows_with_grad
from .triplet import check_batch


def center_loss(features: torch.Tensor, targets: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """½ Σ_i ‖x_i - c_{y_i}‖² for ``features`` (B, D), ``targets`` (B,) and ``centers`` (C, D)."""
    check_batch(features, targets, "center_loss")
    return 0.5 * (features - centers[targets]).pow(2).sum()


class CenterLoss(nn.Module):
    """L_c with class centers kept in the ``centers`` buffer (C, D), zero-initialised.

    ``forward`` only computes the loss; call ``update_centers`` once per iteration after it (as
    Algorithm 1 of Zhang & Xu does after back-propagation). Under DDP the per-class sums are
    all-reduced so that every process applies the same update of the global batch.
    """

    def __init__(self, num_classes: int, feat_dim: int, alpha: float = 0.5):
        super().__init__()
        if num_classes < 1 or feat_dim < 1:
            raise ValueError(f"CenterLoss needs num_classes, feat_dim >= 1, got {num_classes}, {feat_dim}")
        self.alpha = alpha
        self.register_buffer("centers", torch.zeros(num_classes, feat_dim))

    def _check_targets(self, targets: torch.Tensor) -> None:
        if targets.numel() and not (0 <= int(targets.min()) and int(targets.max()) < len(self.centers)):
            raise ValueError(
                f"CenterLoss: targets must lie in [0, {len(self.centers)}), got "
                f"[{int(targets.min())}, {int(targets.max())}]"
            )

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self._check_targets(targets)
        return center_loss(features, targets, self.centers)

    @torch.no_grad()
    def update_centers(self, features: torch.Tensor, targets: torch.Tensor, alpha: Optional[float] = None) -> None:
        """c_j ← c_j - α Σ_i δ(y_i = j)(c_j - x_i) / (1 + n_j), for the classes present in the batch;
        ``alpha`` overrides the constant ``self.alpha`` (e.g. with the solver's current learning rate)."""
        self._check_targets(targets)
        features = features.detach().to(self.centers.dtype)
        diff_sums = torch.zeros_like(self.centers).index_add_(0, targets, self.centers[targets] - features)
        counts = torch.bincount(targets, minlength=len(self.centers)).to(self.centers.dtype)
        if comm.get_world_size() > 1:
            torch.distributed.all_reduce(diff_sums)
            torch.distributed.all_reduce(counts)
        self.centers -= (self.alpha if alpha is None else alpha) * diff_sums / (1.0 + counts[:, None])


class BatchContrastiveCenterLoss(nn.Module):
    """weight · (L_b + L_c), the batch-contrastive loss of Zhang & Xu (Eq. 7, times λ of Eq. 9).

    Features are used as given (the paper L2-normalises pool5 before this loss). As with
    ``CenterLoss``, call ``update_centers`` after computing the loss. ``gradient``: ``"autograd"`` | ``"eq8"``
    (see ``batch_contrastive_loss``).

    Under multi-process training both terms are the paper's on the *global* batch: the features are gathered
    from every process with their gradient (``all_gather_rows_with_grad``), so W processes of B/W images give
    the loss value and the parameter gradient of one process fed all B (after DDP's averaging); the center
    update all-reduces its sums, so it is the global batch's too.
    """

    def __init__(self, num_classes: int, feat_dim: int, tau: float, center_alpha: float = 0.5,
                 weight: float = 1.0, gradient: str = "autograd"):
        super().__init__()
        self.tau, self.weight, self.gradient = tau, weight, gradient
        if gradient not in GRADIENTS:
            raise ValueError(f"BatchContrastiveCenterLoss: gradient must be one of {GRADIENTS} "
                             f"(MODEL.LOSSES.BATCH_CONTRASTIVE.GRADIENT), got {gradient!r}")
        self.center = CenterLoss(num_classes, feat_dim, alpha=center_alpha)

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``{"loss_bc": weight · L_b, "loss_bc_center": weight · L_c}`` (logged separately; their sum is the loss)."""
        features, targets = all_gather_rows_with_grad(features), all_gather_rows(targets)
        return {"loss_bc": self.weight * batch_contrastive_loss(features, targets, self.tau, self.gradient),
                "loss_bc_center": self.weight * self.center(features, targets)}

    def update_centers(self, features: torch.Tensor, targets: torch.Tensor, alpha: Optional[float] = None) -> None:
        self.center.update_centers(features, targets, alpha)
