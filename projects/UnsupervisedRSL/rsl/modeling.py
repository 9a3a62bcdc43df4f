"""``RSLReID``: reid2's ``ReIDBaseline`` trained on a round's mixed hard/soft targets.

The classifier has ``RSL.NUM_CLUSTERS`` outputs (never the number of training identities). A training
batch carries ``targets`` (pseudo-identity, -1 for a soft-labelled image) and ``soft_targets`` (B, M);
the loss is the per-image mean over the batch of

    RELIABLE_WEIGHT · CE(z_i, y_i)  for reliable images,   SOFT_WEIGHT · (-Σ_k q_ik log softmax(z_i)_k)  otherwise,

i.e. with both weights 1 one soft-target cross-entropy over the re-training set, a one-hot q for reliable images.
"""
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.utils.events import get_event_storage
from torch import nn

from reid2.modeling import ReIDBaseline, soft_cross_entropy

__all__ = ["RSLReID"]


@META_ARCH_REGISTRY.register()
class RSLReID(ReIDBaseline):
    # The classifier is re-initialised at every round's start, with M outputs: a starting model trained on
    # another labelled set (PUL's protocol: 702 DukeMTMC-reID identities for Market) loads with its own
    # classifier left out (another shape, or absent) instead of being refused by the checkpointer.
    optional_weight_prefixes = ("classifier.",)

    @configurable
    def __init__(self, *, reliable_weight=1.0, soft_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        self.reliable_weight, self.soft_weight = reliable_weight, soft_weight

    @classmethod
    def from_config(cls, cfg):
        return dict(super().from_config(cfg, num_classes=cfg.RSL.NUM_CLUSTERS, with_losses=False),
                    reliable_weight=cfg.RSL.RELIABLE_WEIGHT, soft_weight=cfg.RSL.SOFT_WEIGHT)

    def reset_classifier(self):
        """A new classifier for a new round: N(0, 0.001) as PUL's Dense layer."""
        nn.init.normal_(self.classifier.weight, std=0.001)

    def compute_losses(self, out, batched_inputs):
        """The reliable (hard) and soft terms of ReIDBaseline's head logits."""
        logits, targets = out["logits"], out["targets"]
        soft = batched_inputs["soft_targets"].to(logits.device)
        hard = targets >= 0
        # one soft-target cross-entropy: a reliable image's target is one-hot (its soft_targets row is zero)
        target = torch.where(hard[:, None], F.one_hot(targets.clamp(min=0), logits.shape[1]).to(soft.dtype), soft)
        per_image = soft_cross_entropy(logits, target, reduction="none")
        b = len(targets)
        loss_rel, loss_soft = per_image[hard].sum() / b, per_image[~hard].sum() / b
        try:
            storage = get_event_storage()
            if hard.any():
                storage.put_scalar("cls_accuracy", (logits[hard].argmax(1) == targets[hard]).float().mean().item())
            storage.put_scalar("soft_fraction", (~hard).float().mean().item())
        except AssertionError:  # called outside a trainer
            pass
        return {"loss_reliable": self.reliable_weight * loss_rel, "loss_soft": self.soft_weight * loss_soft}
