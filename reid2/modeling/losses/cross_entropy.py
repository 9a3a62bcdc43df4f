"""Softmax cross-entropy with optional label-smoothing regularisation (LSR, Szegedy et al. 2016).

    L = -1/B Σ_i Σ_k q_ik log softmax(z_i)_k,   q_ik = (1 - ε)·δ(k = y_i) + ε / K

ε = 0 gives the plain softmax loss (Eq. 2 of Zhang & Xu).
"""
import torch
import torch.nn.functional as F


def cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 0.0) -> torch.Tensor:
    """Batch mean of the (label-smoothed) cross-entropy of ``logits`` (B, K) and int ``targets`` (B,)."""
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"label-smoothing epsilon must be in [0, 1), got {epsilon}")
    # PyTorch's label_smoothing is exactly LSR: (1 - ε)·onehot + ε/K.
    return F.cross_entropy(logits, targets, label_smoothing=epsilon)
