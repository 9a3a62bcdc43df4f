"""Sparse Label Smoothing Regularization (Ainam et al.) on reid2, with LSRO and LSR as baselines.

Importing the package registers the ``SLSR`` config keys, the ``SLSRLoss`` re-ID loss term, the ``SLSRReID``
model (the noise layer, mean-pixel centring) and the ``SLSRTrainer`` (``REID2.TRAINER: SLSRTrainer``).
``projects/SLSR/tools/train_net.py`` runs the three stages.
"""
from . import config  # noqa: F401  (SLSR keys)
from .config import add_slsr_config
from .dcgan import Discriminator, Generator, sample_z
from .loss import NoiseAdaptationLayer, SLSRLoss, slsr_loss
from .modeling import SLSRReID
from .targets import batch_targets, cluster_label_sets, cluster_target_matrix, generated_pid
from .trainer import SLSRTrainer

__all__ = ["Discriminator", "Generator", "NoiseAdaptationLayer", "SLSRLoss", "SLSRReID", "SLSRTrainer",
           "add_slsr_config", "batch_targets", "cluster_label_sets", "cluster_target_matrix", "generated_pid",
           "sample_z", "slsr_loss"]
