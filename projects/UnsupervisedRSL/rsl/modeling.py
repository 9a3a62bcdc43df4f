"""``RSLReID``: reid2's ``ReIDBaseline`` trained on a round's mixed hard/soft targets.

The classifier has ``RSL.NUM_CLUSTERS`` outputs (never the number of training identities). A training
batch carries ``targets`` (pseudo-identity, -1 for a soft-labelled image) and ``soft_targets`` (B, M);
the loss is the per-image mean over the batch of

    RELIABLE_WEIGHT · CE(z_i, y_i)  for reliable images,   SOFT_WEIGHT · (-Σ_k q_ik log softmax(z_i)_k)  otherwise,

i.e. with both weights 1 one soft-target cross-entropy over the re-training set, a one-hot q for reliable images.
"""
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.utils.events import get_event_storage
from torch import nn

from reid2.modeling import ReIDBaseline

__all__ = ["RSLReID"]


@META_ARCH_REGISTRY.register()
class RSLReID(ReIDBaseline):
    @configurable
    def __init__(self, *, reliable_weight=1.0, soft_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        self.reliable_weight, self.soft_weight = reliable_weight, soft_weight

    @classmethod
    def from_config(cls, cfg):
        r = cfg.MODEL.REID
        return dict(
            backbone=build_backbone(cfg), num_classes=cfg.RSL.NUM_CLUSTERS, pooling=r.POOLING, gem_p=r.GEM_P,
            dropout=r.DROPOUT, embedding_dim=r.EMBEDDING_DIM, bn_neck=r.BN_NECK, test_feat=r.TEST_FEAT,
            losses_cfg=None, flip_test=cfg.TEST.REID.FLIP_FEATS,
            reliable_weight=cfg.RSL.RELIABLE_WEIGHT, soft_weight=cfg.RSL.SOFT_WEIGHT)

    def reset_classifier(self):
        """A new classifier for a new round: N(0, 0.001) as PUL's Dense layer."""
        nn.init.normal_(self.classifier.weight, std=0.001)

    def round_features(self, images, which="before_bn"):
        """The feature a round clusters: pooled ("before_bn") or BN-neck ("after_bn"); eval mode expected."""
        pool = self.pooled_features(images)
        if which == "after_bn" and self.bottleneck is not None:
            return self.bottleneck(pool)
        return pool

    def forward(self, batched_inputs):
        images = batched_inputs["images"].to(self.device)
        if not self.training:
            return self.inference(images)
        targets = batched_inputs["targets"].to(self.device)
        soft = batched_inputs["soft_targets"].to(self.device)
        pool_feat = self.pooled_features(images)
        bn_feat = self.bottleneck(pool_feat) if self.bottleneck is not None else pool_feat
        logits = self.classifier(self.dropout(bn_feat))
        logp = F.log_softmax(logits, dim=1)
        hard = targets >= 0
        b = len(targets)
        zero = logits.sum() * 0.0
        loss_rel = -logp[hard].gather(1, targets[hard, None]).sum() / b if hard.any() else zero
        loss_soft = -(soft[~hard] * logp[~hard]).sum() / b if (~hard).any() else zero
        try:
            storage = get_event_storage()
            if hard.any():
                storage.put_scalar("cls_accuracy", (logits[hard].argmax(1) == targets[hard]).float().mean().item())
            storage.put_scalar("soft_fraction", (~hard).float().mean().item())
        except AssertionError:  # called outside a trainer
            pass
        return {"loss_reliable": self.reliable_weight * loss_rel, "loss_soft": self.soft_weight * loss_soft}
