"""Knowledge distillation for person search (Munjal et al., BMVC'19): KD_det losses, hint adapter,
and the teacher-LUT import/export used by KD_reid."""
from ..losses.kd import (
    HINT_REDUCTIONS,
    bounded_regression_loss,
    distillation_cls_loss,
    hint_loss,
    rcn_class_weights,
    rpn_soft_objectness_loss,
    soft_cross_entropy_with_temperature,
)
from .hint import TRAINING_ONLY_MODULES, HintAdapter, strip_training_only_weights
from .lut import KNOWN_LUT_KEYS, LutTable, export_lut, load_lut, read_lut_table

__all__ = [
    "HINT_REDUCTIONS",
    "HintAdapter",
    "KNOWN_LUT_KEYS",
    "TRAINING_ONLY_MODULES",
    "LutTable",
    "bounded_regression_loss",
    "distillation_cls_loss",
    "export_lut",
    "hint_loss",
    "load_lut",
    "rcn_class_weights",
    "read_lut_table",
    "rpn_soft_objectness_loss",
    "soft_cross_entropy_with_temperature",
    "strip_training_only_weights",
]
