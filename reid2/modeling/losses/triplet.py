"""Batch-hard triplet loss (Hermans et al. 2017) on Euclidean distances.

For each anchor i, with d the (non-squared) Euclidean distance:

    d_ap(i) = max_{j ≠ i, y_j = y_i} d(x_i, x_j)        (hardest positive)
    d_an(i) = min_{j: y_j ≠ y_i}    d(x_i, x_j)        (hardest negative)
    ℓ_i = max(0, d_ap - d_an + m)          or, soft margin,  ℓ_i = log(1 + exp(d_ap - d_an))
    L = mean of ℓ_i over the valid anchors

An anchor is valid when the batch holds at least one other image of its identity and one image
of another identity; other anchors form no triplet and are left out of the mean (a P×K sampler
with K ≥ 2 makes every anchor valid). With no valid anchor the loss is 0, still attached to the
graph so that ``backward()`` works.
"""
import torch
import torch.nn.functional as F


def pairwise_squared_distances(x: torch.Tensor) -> torch.Tensor:
    """(B, B) squared distances ‖x_i - x_j‖² = ‖x_i‖² + ‖x_j‖² - 2 x_i·x_j, clamped at 0."""
    sq_norms = x.pow(2).sum(dim=1)
    return (sq_norms[:, None] + sq_norms[None, :] - 2.0 * x @ x.t()).clamp(min=0.0)


def pairwise_distances(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(B, B) Euclidean distances; the clamp keeps sqrt's gradient finite at zero distance."""
    return pairwise_squared_distances(x).clamp(min=eps).sqrt()


def check_batch(features: torch.Tensor, targets: torch.Tensor, name: str) -> None:
    if features.dim() != 2 or targets.shape != (features.shape[0],):
        raise ValueError(
            f"{name}: expected features (B, D) and targets (B,), got {tuple(features.shape)} "
            f"and {tuple(targets.shape)}"
        )


def triplet_loss(embeddings: torch.Tensor, targets: torch.Tensor, margin: float = 0.3,
                 soft_margin: bool = False) -> torch.Tensor:
    """Batch-hard triplet loss of ``embeddings`` (B, D) with identity ``targets`` (B,)."""
    check_batch(embeddings, targets, "triplet_loss")
    dist = pairwise_distances(embeddings)
    same_id = targets[:, None] == targets[None, :]
    is_pos = same_id & ~torch.eye(len(targets), dtype=torch.bool, device=targets.device)
    is_neg = ~same_id
    d_ap = dist.masked_fill(~is_pos, float("-inf")).max(dim=1).values
    d_an = dist.masked_fill(~is_neg, float("inf")).min(dim=1).values
    valid = is_pos.any(dim=1) & is_neg.any(dim=1)
    gap = d_ap[valid] - d_an[valid]
    if gap.numel() == 0:
        return embeddings.sum() * 0.0
    losses = F.softplus(gap) if soft_margin else F.relu(gap + margin)
    return losses.mean()
