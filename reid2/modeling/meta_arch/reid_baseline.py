"""``ReIDBaseline``: backbone → pooling → dropout → (embedding) → BN neck → classifier."""
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.utils.events import get_event_storage
from torch import nn

from ..losses import build_reid_losses

__all__ = ["ReIDBaseline", "GeneralizedMeanPooling"]


class GeneralizedMeanPooling(nn.Module):
    """GeM pooling: (mean x^p)^(1/p) over the spatial positions (p=1 average, p→∞ max)."""

    def __init__(self, p=3.0, eps=1e-6):
        super().__init__()
        self.p, self.eps = p, eps

    def forward(self, x):
        return F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(self.p), 1).pow(1.0 / self.p)


def build_pooling(name, gem_p):
    if name == "avg":
        return nn.AdaptiveAvgPool2d(1)
    if name == "max":
        return nn.AdaptiveMaxPool2d(1)
    if name == "gem":
        return GeneralizedMeanPooling(gem_p)
    raise ValueError(f"MODEL.REID.POOLING must be avg, max or gem, got {name!r}")


@META_ARCH_REGISTRY.register()
class ReIDBaseline(nn.Module):
    """Classification-style re-ID model.

    Input: the batch dict of ``build_reid_*_loader`` (``images`` normalised (B,3,H,W),
    ``targets`` pids). Training returns a dict of weighted losses (and logs the classifier
    accuracy); inference returns the (B, D) embeddings (``TEST_FEAT``: pooled or BN-neck feature),
    averaged with the mirrored image's when ``flip_test``.
    """

    class_count_keys = {"MODEL.REID.NUM_CLASSES": ("classifier.weight", "losses.CenterLoss.center.centers")}

    @configurable
    def __init__(self, *, backbone, num_classes, pooling="avg", gem_p=3.0, dropout=0.0,
                 embedding_dim=0, bn_neck=True, test_feat="after_bn", losses_cfg=None,
                 flip_test=False):
        super().__init__()
        self.backbone = backbone
        shapes = backbone.output_shape()
        self._in_feature = list(shapes)[-1]
        channels = shapes[self._in_feature].channels
        self.pool = build_pooling(pooling, gem_p)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.embedding = nn.Linear(channels, embedding_dim) if embedding_dim > 0 else None
        feat_dim = embedding_dim if embedding_dim > 0 else channels
        self.bottleneck = nn.BatchNorm1d(feat_dim) if bn_neck else None
        if self.bottleneck is not None:
            self.bottleneck.bias.requires_grad_(False)  # BoT: no shift before the classifier
        self.classifier = nn.Linear(feat_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)
        if test_feat not in ("after_bn", "before_bn"):
            raise ValueError(f"MODEL.REID.TEST_FEAT must be after_bn or before_bn, got {test_feat!r}")
        self.test_feat = test_feat if bn_neck else "before_bn"
        self.flip_test = flip_test
        self.losses = build_reid_losses(losses_cfg, num_classes, feat_dim) if losses_cfg else nn.ModuleDict()
        self.feat_dim = feat_dim

    @classmethod
    def from_config(cls, cfg, num_classes=None, with_losses=True):
        """Subclasses call this (``super().from_config(cfg, num_classes=..., with_losses=False)``) and add their
        own keys, so every ``ReIDBaseline`` argument reaches them."""
        from reid2.data import num_train_classes

        r = cfg.MODEL.REID
        return dict(
            backbone=build_backbone(cfg), num_classes=num_train_classes(cfg) if num_classes is None else num_classes,
            pooling=r.POOLING, gem_p=r.GEM_P, dropout=r.DROPOUT, embedding_dim=r.EMBEDDING_DIM, bn_neck=r.BN_NECK,
            test_feat=r.TEST_FEAT, losses_cfg=cfg if with_losses else None, flip_test=cfg.TEST.REID.FLIP_FEATS)

    @property
    def device(self):
        return self.classifier.weight.device

    def pooled_features(self, images):
        """(B, D) pooled (and embedded) features of normalised images: the "before_bn" feature."""
        feat = self.backbone(images)[self._in_feature]
        pooled = self.pool(feat).flatten(1)
        if self.embedding is not None:
            pooled = self.embedding(pooled)
        return pooled

    def head(self, pool_feat):
        """The training head on pooled features: ``{"logits", "pool_feat", "bn_feat"}`` (bn_feat = pool_feat
        without a BN neck); what every re-ID loss reads."""
        bn_feat = self.bottleneck(pool_feat) if self.bottleneck is not None else pool_feat
        return {"logits": self.classifier(self.dropout(bn_feat)), "pool_feat": pool_feat, "bn_feat": bn_feat}

    def embed(self, images, feature=None):
        """(B, D) features of normalised images, no flip: ``feature`` "before_bn" (pooled) or "after_bn" (BN neck;
        the pooled feature when there is none); default ``TEST_FEAT``. Call in eval mode for test features."""
        feature = feature or self.test_feat
        if feature not in ("after_bn", "before_bn"):
            raise ValueError(f"ReIDBaseline.embed: feature must be before_bn or after_bn, got {feature!r}")
        pool_feat = self.pooled_features(images)
        if feature == "after_bn" and self.bottleneck is not None:
            return self.bottleneck(pool_feat)
        return pool_feat

    def forward(self, batched_inputs):
        images = batched_inputs["images"].to(self.device)
        if not self.training:
            return self.inference(images)
        out = dict(self.head(self.pooled_features(images)), targets=batched_inputs["targets"].to(self.device))
        return self.compute_losses(out, batched_inputs)

    def compute_losses(self, out, batched_inputs):
        """Training losses from the head's outputs (plus ``targets``); a subclass with other targets overrides
        this alone. Logs the classifier accuracy."""
        targets = out["targets"]
        losses = {}
        for term in self.losses.values():
            losses.update(term(out))
        with torch.no_grad():
            acc = (out["logits"].argmax(1) == targets).float().mean()
        try:
            get_event_storage().put_scalar("cls_accuracy", acc.item())
        except AssertionError:  # called outside a trainer
            pass
        return losses

    def export_inference_model(self):
        """What runs at test time: the whole model (see ``reid2.modeling.meta_arch``)."""
        return self

    def inference(self, images):
        feats = self.embed(images)
        if self.flip_test:
            feats = 0.5 * (feats + self.embed(images.flip(3)))
        return feats
