"""RoI heads of the person-search models (registered in Detectron2's ``ROI_HEADS_REGISTRY``)."""
from ..losses.oim import OIMLoss
from .oim_roi_heads import BACKGROUND_PID, EmbeddingHead, OIMROIHeads

__all__ = ["OIMLoss", "OIMROIHeads", "EmbeddingHead", "BACKGROUND_PID"]
