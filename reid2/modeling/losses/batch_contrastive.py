"""Batch-contrastive loss L_b (Zhang & Xu, ACML 2018, Eq. 3) and the two gradients it can back-propagate.

    L_b = ½ Σ_i [ Σ_j δ(y_i = y_j) ‖x_i - x_j‖²  +  max(0, τ - min_{j: y_j ≠ y_i} ‖x_i - x_j‖²) ]

Summed over the batch (not averaged), squared Euclidean distances, features used as given (the
paper L2-normalises pool5 first; the caller does that). An anchor whose batch holds no other
identity has no hard negative and contributes no hinge term.

``gradient="autograd"``: the exact derivative of Eq. 3. Every unordered positive pair appears twice in
the double sum, and an image is also pushed when it is some other anchor's hardest negative:

    ∂L_b/∂x_i = 2 Σ_j δ(y_i = y_j)(x_i - x_j)
                - a_i (x_i - x_{n(i)})  - Σ_k a_k δ(n(k) = i)(x_i - x_k)

with n(k) the hardest negative of k and a_k = 1 when τ - ‖x_k - x_{n(k)}‖² > 0, else 0.

``gradient="eq8"``: the paper's Eq. 8, which the authors' Caffe layer back-propagates. It writes the first
term without the factor 2 and omits the last sum:

    g_i = Σ_j δ(y_i = y_j)(x_i - x_j) - a_i (x_i - x_{n(i)})

Not the gradient of any loss; the forward value is Eq. 3 either way. Open choice: Eq. 8's text gates the
push on ‖x_i - x_min‖₂ < τ; we gate on the same squared distance as Eq. 3's hinge (the paper writes ‖·‖²₂
for "the Euclidean distance", and only then is the push on exactly when the hinge is).
"""
import torch

from .triplet import check_batch, pairwise_squared_distances

GRADIENTS = ("autograd", "eq8")


def _hardest_negatives(sq_dist: torch.Tensor, same_id: torch.Tensor):
    """Index and squared distance of each anchor's hardest negative, and whether it has one."""
    values, index = sq_dist.masked_fill(same_id, float("inf")).min(dim=1)
    return index, values, torch.isfinite(values)


def _eq3_value(features, targets, tau):
    sq_dist = pairwise_squared_distances(features)
    same_id = targets[:, None] == targets[None, :]
    # Self-pairs are 0 in exact arithmetic; leaving them out avoids the expansion's rounding error.
    self_pair = torch.eye(len(targets), dtype=torch.bool, device=targets.device)
    intra = sq_dist[same_id & ~self_pair].sum()
    _, hardest_neg, has_neg = _hardest_negatives(sq_dist, same_id)
    inter = (tau - hardest_neg[has_neg]).clamp(min=0.0).sum()
    return 0.5 * (intra + inter)


class _Eq8(torch.autograd.Function):
    """Forward: L_b of Eq. 3. Backward: the paper's Eq. 8 (see the module docstring)."""

    @staticmethod
    def forward(ctx, features, targets, tau):
        with torch.no_grad():
            same_id = targets[:, None] == targets[None, :]
            same = same_id.to(features.dtype)
            # Σ_j δ(y_i = y_j)(x_i - x_j) = n_i x_i - Σ_{j: y_j = y_i} x_j (the j = i term is zero)
            grad = same.sum(1, keepdim=True) * features - same @ features
            n, hardest_neg, has_neg = _hardest_negatives(pairwise_squared_distances(features), same_id)
            active = has_neg & (tau - hardest_neg > 0)
            grad -= active[:, None].to(features.dtype) * (features - features[n])
            ctx.save_for_backward(grad)
            return _eq3_value(features, targets, tau)

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad_output * grad, None, None


def batch_contrastive_loss(features: torch.Tensor, targets: torch.Tensor, tau: float,
                           gradient: str = "autograd") -> torch.Tensor:
    """L_b of Eq. 3 for ``features`` (B, D) with identity ``targets`` (B,) and margin ``tau``; ``gradient``
    is what backward propagates: ``"autograd"`` (exact) or ``"eq8"`` (the paper's Eq. 8)."""
    check_batch(features, targets, "batch_contrastive_loss")
    if gradient == "autograd":
        return _eq3_value(features, targets, tau)
    if gradient == "eq8":
        return _Eq8.apply(features, targets, tau)
    raise ValueError(f"batch_contrastive_loss: gradient must be one of {GRADIENTS} "
                     f"(MODEL.LOSSES.BATCH_CONTRASTIVE.GRADIENT), got {gradient!r}")
