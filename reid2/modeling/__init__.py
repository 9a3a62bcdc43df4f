"""reid2 models: importing this registers every backbone, meta-architecture, head and loss."""
from . import backbones  # noqa: F401  (registration)
from .losses import REID_LOSS_REGISTRY, build_reid_losses, soft_cross_entropy
from .meta_arch.kd_person_search import KDPersonSearchRCNN
from .meta_arch.person_search import PersonSearchRCNN
from .meta_arch.reid_baseline import ReIDBaseline

__all__ = ["KDPersonSearchRCNN", "PersonSearchRCNN", "ReIDBaseline", "REID_LOSS_REGISTRY", "build_reid_losses",
           "soft_cross_entropy"]
