"""Every loss of reid2, in one wing: re-ID loss functions and their registry, OIM, knowledge distillation.

Each module's docstring states its equation and reduction (mean or sum over the batch). ``REID_LOSS_REGISTRY``
holds the loss terms a ``ReIDBaseline`` combines by name; ``pids`` defines the person-id code space.
"""
from .batch_contrastive import batch_contrastive_loss
from .center import BatchContrastiveCenterLoss, CenterLoss, center_loss
from .cross_entropy import cross_entropy_loss
from .oim import OIMLoss
from .pids import BACKGROUND_PID, UNLABELED_PID
from .registry import REID_LOSS_REGISTRY, build_reid_losses
from .soft_cross_entropy import soft_cross_entropy
from .triplet import pairwise_distances, pairwise_squared_distances, triplet_loss

__all__ = [
    "BACKGROUND_PID",
    "BatchContrastiveCenterLoss",
    "CenterLoss",
    "OIMLoss",
    "REID_LOSS_REGISTRY",
    "UNLABELED_PID",
    "batch_contrastive_loss",
    "build_reid_losses",
    "center_loss",
    "cross_entropy_loss",
    "pairwise_distances",
    "pairwise_squared_distances",
    "soft_cross_entropy",
    "triplet_loss",
]
