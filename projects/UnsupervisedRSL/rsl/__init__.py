"""Unsupervised re-ID with reliable and soft labels (Sun & Jung) and the PUL baseline (Fan et al.) on reid2.

Importing the package registers the ``RSL`` config keys, the ``RSLReID`` meta-architecture and the
``RSLTrainer`` (``REID2.TRAINER: RSLTrainer``). The label computations are in :mod:`rsl.labels`.
"""
from . import config  # noqa: F401  (RSL keys)
from .config import add_rsl_config
from .data import RoundLoader, build_rsl_train_transform, label_free_records
from .labels import RoundLabels, cluster_quality, pul_labels, rsl_labels, soft_labels
from .modeling import RSLReID
from .trainer import RoundHook, RSLTrainer, compute_round_labels, report_round_quality

__all__ = ["RSLReID", "RSLTrainer", "RoundHook", "RoundLabels", "RoundLoader", "add_rsl_config",
           "build_rsl_train_transform", "cluster_quality", "compute_round_labels", "label_free_records",
           "pul_labels", "report_round_quality", "rsl_labels", "soft_labels"]
