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
    def from_config(cls, cfg):
        from reid2.data.build import num_train_classes

        r = cfg.MODEL.REID
        return dict(
            backbone=build_backbone(cfg), num_classes=num_train_classes(cfg), pooling=r.POOLING,
            gem_p=r.GEM_P, dropout=r.DROPOUT, embedding_dim=r.EMBEDDING_DIM, bn_neck=r.BN_NECK,
            test_feat=r.TEST_FEAT, losses_cfg=cfg, flip_test=cfg.TEST.REID.FLIP_FEATS)

    @property
    def device(self):
        return self.classifier.weight.device

    def pooled_features(self, images):
        feat = self.backbone(images)[self._in_feature]
        pooled = self.pool(feat).flatten(1)
        if self.embedding is not None:
            pooled = self.embedding(pooled)
        return pooled

    def forward(self, batched_inputs):
        images = batched_inputs["images"].to(self.device)
        if not self.training:
            return self.inference(images)
        targets = batched_inputs["targets"].to(self.device)
        pool_feat = self.pooled_features(images)
        bn_feat = self.bottleneck(pool_feat) if self.bottleneck is not None else pool_feat
        logits = self.classifier(self.dropout(bn_feat))
        out = {"logits": logits, "pool_feat": pool_feat, "bn_feat": bn_feat, "targets": targets}
        losses = {}
        for term in self.losses.values():
            losses.update(term(out))
        with torch.no_grad():
            acc = (logits.argmax(1) == targets).float().mean()
        try:
            get_event_storage().put_scalar("cls_accuracy", acc.item())
        except AssertionError:  # called outside a trainer
            pass
        return losses

    def _embed(self, images):
        pool_feat = self.pooled_features(images)
        if self.test_feat == "after_bn":
            return self.bottleneck(pool_feat)
        return pool_feat

    def inference(self, images):
        feats = self._embed(images)
        if self.flip_test:
            feats = 0.5 * (feats + self._embed(images.flip(3)))
        return feats
