"""Re-ID losses as plain functions, plus the stateful center-based modules.

Each module's docstring states its equation and reduction (mean or sum over the batch).
"""
from .batch_contrastive import batch_contrastive_loss
from .center import BatchContrastiveCenterLoss, CenterLoss, center_loss
from .cross_entropy import cross_entropy_loss
from .soft_cross_entropy import soft_cross_entropy
from .triplet import pairwise_distances, pairwise_squared_distances, triplet_loss

__all__ = [
    "BatchContrastiveCenterLoss",
    "CenterLoss",
    "batch_contrastive_loss",
    "center_loss",
    "cross_entropy_loss",
    "pairwise_distances",
    "pairwise_squared_distances",
    "soft_cross_entropy",
    "triplet_loss",
]
