"""``REID_LOSS_REGISTRY``: the loss terms a ``ReIDBaseline`` combines, chosen by name.

``MODEL.LOSSES.NAMES`` lists registered classes; each is built with
``cls(cfg, num_classes, feat_dim)`` and called with the head's outputs
(``logits``, ``pool_feat`` (before the BN neck), ``bn_feat``, ``targets``), returning a dict of
named, already weighted losses. A downstream package adds a term with
``@REID_LOSS_REGISTRY.register()``.
"""
import torch.nn.functional as F
from detectron2.utils.registry import Registry
from torch import nn

from .center import BatchContrastiveCenterLoss
from .center import CenterLoss as _CenterLossModule
from .cross_entropy import cross_entropy_loss
from .triplet import triplet_loss

REID_LOSS_REGISTRY = Registry("REID_LOSS")
REID_LOSS_REGISTRY.__doc__ = __doc__


def build_reid_losses(cfg, num_classes: int, feat_dim: int) -> nn.ModuleDict:
    return nn.ModuleDict({
        name: REID_LOSS_REGISTRY.get(name)(cfg, num_classes, feat_dim)
        for name in cfg.MODEL.LOSSES.NAMES
    })


@REID_LOSS_REGISTRY.register()
class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy on the classifier logits, optional label smoothing (LSR)."""

    def __init__(self, cfg, num_classes, feat_dim):
        super().__init__()
        self.weight, self.epsilon = cfg.MODEL.LOSSES.CE.WEIGHT, cfg.MODEL.LOSSES.CE.EPSILON

    def forward(self, out):
        return {"loss_cls": self.weight * cross_entropy_loss(out["logits"], out["targets"], self.epsilon)}


@REID_LOSS_REGISTRY.register()
class TripletLoss(nn.Module):
    """Batch-hard triplet loss on the pooled (pre-BN) feature."""

    def __init__(self, cfg, num_classes, feat_dim):
        super().__init__()
        c = cfg.MODEL.LOSSES.TRIPLET
        self.weight, self.margin, self.soft = c.WEIGHT, c.MARGIN, c.SOFT_MARGIN

    def forward(self, out):
        loss = triplet_loss(out["pool_feat"], out["targets"], margin=self.margin, soft_margin=self.soft)
        return {"loss_triplet": self.weight * loss}


@REID_LOSS_REGISTRY.register()
class CenterLoss(nn.Module):
    """Center loss (Wen et al.) on the pooled feature; centers follow their own update rule."""

    def __init__(self, cfg, num_classes, feat_dim):
        super().__init__()
        c = cfg.MODEL.LOSSES.CENTER
        self.weight = c.WEIGHT
        self.center = _CenterLossModule(num_classes, feat_dim, alpha=c.ALPHA)

    def forward(self, out):
        loss = self.center(out["pool_feat"], out["targets"])
        self.center.update_centers(out["pool_feat"].detach(), out["targets"])
        return {"loss_center": self.weight * loss}


CENTER_LR_MODES = ("solver", "constant")


@REID_LOSS_REGISTRY.register()
class BatchContrastiveLoss(BatchContrastiveCenterLoss):
    """Zhang & Xu: λ (L_b + L_c) on L2-normalised pool5 features (the softmax term is separate).

    L_b is the hard-negative batch-contrastive loss, L_c the center loss with the paper's
    center update (Eq. 5-6); both sum over the (global) batch, as in the paper. The center learning rate η
    is the solver's current learning rate (``CENTER_LR: "solver"``, Algorithm 1), which the trainer passes
    in before every step through ``set_solver_lr`` (``reid2.engine.hooks.SolverLRToModules``), or the
    constant ``CENTER_ALPHA`` (``CENTER_LR: "constant"``).
    """

    def __init__(self, cfg, num_classes, feat_dim):
        c = cfg.MODEL.LOSSES.BATCH_CONTRASTIVE
        if c.CENTER_LR not in CENTER_LR_MODES:
            raise ValueError(f"MODEL.LOSSES.BATCH_CONTRASTIVE.CENTER_LR must be one of {CENTER_LR_MODES}, "
                             f"got {c.CENTER_LR!r}")
        super().__init__(num_classes, feat_dim, tau=c.TAU, center_alpha=c.CENTER_ALPHA, weight=c.WEIGHT,
                         gradient=c.GRADIENT)
        self.center_lr = c.CENTER_LR
        self.solver_lr = None

    def set_solver_lr(self, lr: float) -> None:
        """The learning rate of the step about to run (η of Algorithm 1 when ``CENTER_LR`` is "solver")."""
        self.solver_lr = float(lr)

    def _center_step(self):
        if self.center_lr == "constant":
            return None  # CenterLoss's own alpha
        if self.solver_lr is None:
            raise RuntimeError(
                'MODEL.LOSSES.BATCH_CONTRASTIVE.CENTER_LR is "solver" but no learning rate was given: train with a '
                'reid2 trainer (its SolverLRToModules hook passes it), call set_solver_lr(lr) before each step, or '
                'set CENTER_LR "constant" (step CENTER_ALPHA)')
        return self.solver_lr

    def forward(self, out):
        x = F.normalize(out["pool_feat"], dim=1)
        step = self._center_step()
        losses = super().forward(x, out["targets"])
        self.update_centers(x.detach(), out["targets"], alpha=step)
        return losses
