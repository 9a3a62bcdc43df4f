"""Batch-contrastive loss L_b (Zhang & Xu, ACML 2018, Eq. 3).

    L_b = ½ Σ_i [ Σ_j δ(y_i = y_j) ‖x_i - x_j‖²  +  max(0, τ - min_{j: y_j ≠ y_i} ‖x_i - x_j‖²) ]

Summed over the batch (not averaged), squared Euclidean distances, features used as given (the
paper L2-normalises pool5 first; the caller does that). An anchor whose batch holds no other
identity has no hard negative and contributes no hinge term.

Gradient (exact derivative of Eq. 3; every unordered positive pair appears twice in the double
sum, and an image is also pushed when it is some other anchor's hardest negative):

    ∂L_b/∂x_i = 2 Σ_j δ(y_i = y_j)(x_i - x_j)
                - a_i (x_i - x_{n(i)})  - Σ_k a_k δ(n(k) = i)(x_i - x_k)

with n(k) the hardest negative of k and a_k = 1 when τ - ‖x_k - x_{n(k)}‖² > 0, else 0.
The paper's Eq. 8 writes the first term without the factor 2 and omits the last sum.
"""
import torch

from .triplet import check_batch, pairwise_squared_distances


def batch_contrastive_loss(features: torch.Tensor, targets: torch.Tensor, tau: float) -> torch.Tensor:
    """L_b of Eq. 3 for ``features`` (B, D) with identity ``targets`` (B,) and margin ``tau``."""
    check_batch(features, targets, "batch_contrastive_loss")
    sq_dist = pairwise_squared_distances(features)
    same_id = targets[:, None] == targets[None, :]
    # Self-pairs are 0 in exact arithmetic; leaving them out avoids the expansion's rounding error.
    self_pair = torch.eye(len(targets), dtype=torch.bool, device=targets.device)
    intra = sq_dist[same_id & ~self_pair].sum()
    hardest_neg = sq_dist.masked_fill(same_id, float("inf")).min(dim=1).values
    has_neg = torch.isfinite(hardest_neg)
    inter = (tau - hardest_neg[has_neg]).clamp(min=0.0).sum()
    return 0.5 * (intra + inter)
