"""Cross-entropy against soft (probability) targets, for SLSR / LSRO / reliable-soft-label training.

    L = -1/B Σ_i Σ_k p_ik log softmax(z_i)_k

LSRO uses p_ik = 1/K for generated images; SLSR a uniform distribution over the identities of
the image's cluster; RSL a temperature softmax of cluster similarities. Rows of ``target_probs``
should sum to 1 (not checked, to avoid a device sync per step).
"""
import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-Σ_k p_k log softmax(logits)_k``; both arguments are (B, K)."""
    if logits.shape != target_probs.shape:
        raise ValueError(
            f"soft_cross_entropy: target_probs must have the logits' shape {tuple(logits.shape)}, "
            f"got {tuple(target_probs.shape)}"
        )
    return -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
