"""Cross-entropy against soft (probability) targets, for SLSR / LSRO / reliable-soft-label training.

    ℓ_i = -Σ_k p_ik log softmax(z_i)_k,    L = 1/B Σ_i ℓ_i  (reduction "mean"; "sum" or "none" for the ℓ_i)

LSRO uses p_ik = 1/K for generated images; SLSR a uniform distribution over the identities of
the image's cluster; RSL a temperature softmax of cluster similarities (a one-hot row is the ordinary
cross-entropy). Rows of ``target_probs`` should sum to 1 (not checked, to avoid a device sync per step).
A row that already is a log-distribution (e.g. the log of a noise-adapted softmax) can be passed as
logits: log-softmax leaves it unchanged.
"""
import torch
import torch.nn.functional as F

_REDUCTIONS = ("mean", "sum", "none")


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``-Σ_k p_k log softmax(logits)_k`` per row, reduced by ``reduction``; both arguments are (B, K)."""
    if logits.shape != target_probs.shape:
        raise ValueError(
            f"soft_cross_entropy: target_probs must have the logits' shape {tuple(logits.shape)}, "
            f"got {tuple(target_probs.shape)}"
        )
    if reduction not in _REDUCTIONS:
        raise ValueError(f"soft_cross_entropy: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    per_row = -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1)
    return per_row.mean() if reduction == "mean" else per_row.sum() if reduction == "sum" else per_row
