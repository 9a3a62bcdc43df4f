"""``SLSRReID``: reid2's ``ReIDBaseline`` with the paper's noise layer (§4.3) and mean-pixel centring (§5.2).

Noise layer (``SLSR.NOISE_LAYER.TYPE feature``). The paper adds "an extra linear layer ... 2048x1x1 and
1024x1x1 ... in ResNet50 and DenseNet" that "adapts the network outputs to match the noisy GAN label
distribution". Those sizes are the pooled feature's, so it is read as a D x D linear layer A (with bias)
between the pooled feature and the classifier, A = I and bias 0 at initialisation:

    logits = W · (A f + b)   for the images it applies to (default: generated ones),   W · f   otherwise.

With ``APPLY_TO generated`` the generated images get their own (learnt) view of the classifier, so the
noisy labels can be absorbed by A rather than by the features and W the real images use. Retrieval uses
f (before A), so the layer never changes test features.
"""
import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from torch import nn

from reid2.modeling import ReIDBaseline

__all__ = ["SLSRReID", "NOISE_TYPES", "NOISE_APPLY_TO"]

NOISE_TYPES = ("feature", "softmax")
NOISE_APPLY_TO = ("generated", "all")


def check_noise_layer_cfg(cfg):
    n = cfg.SLSR.NOISE_LAYER
    if n.TYPE not in NOISE_TYPES:
        raise ValueError(f"SLSR.NOISE_LAYER.TYPE must be one of {NOISE_TYPES}, got {n.TYPE!r}")
    if n.APPLY_TO not in NOISE_APPLY_TO:
        raise ValueError(f"SLSR.NOISE_LAYER.APPLY_TO must be one of {NOISE_APPLY_TO}, got {n.APPLY_TO!r}")


@META_ARCH_REGISTRY.register()
class SLSRReID(ReIDBaseline):
    """``ReIDBaseline`` + the feature-level noise layer (``noise_layer``) + a stored mean pixel (``pixel_mean``)."""

    @configurable
    def __init__(self, *, feature_noise_layer=False, noise_apply_to="generated", mean_pixel_centering=False,
                 **kwargs):
        super().__init__(**kwargs)
        if noise_apply_to not in NOISE_APPLY_TO:
            raise ValueError(f"SLSR.NOISE_LAYER.APPLY_TO must be one of {NOISE_APPLY_TO}, got {noise_apply_to!r}")
        self.noise_apply_to = noise_apply_to
        self.noise_layer = None
        if feature_noise_layer:
            self.noise_layer = nn.Linear(self.feat_dim, self.feat_dim)
            with torch.no_grad():
                self.noise_layer.weight.copy_(torch.eye(self.feat_dim))
                self.noise_layer.bias.zero_()
        self.mean_pixel_centering = mean_pixel_centering
        # Set by SLSRTrainer from the training images (SLSR.MEAN_PIXEL_CENTERING); saved with the weights.
        self.register_buffer("pixel_mean", torch.zeros(3))

    @classmethod
    def from_config(cls, cfg):
        check_noise_layer_cfg(cfg)
        n = cfg.SLSR.NOISE_LAYER
        return dict(super().from_config(cfg), feature_noise_layer=bool(n.ENABLED and n.TYPE == "feature"),
                    noise_apply_to=n.APPLY_TO, mean_pixel_centering=cfg.SLSR.MEAN_PIXEL_CENTERING)

    def pooled_features(self, images):
        if self.mean_pixel_centering:
            images = images - self.pixel_mean.to(images.dtype).view(1, -1, 1, 1)
        return super().pooled_features(images)

    def head(self, pool_feat, generated=None):
        """``ReIDBaseline.head`` with the noise layer in front of the classifier for the rows it applies to:
        every row with ``APPLY_TO all``, else the rows ``generated`` (bool, (B,)) marks (none when None)."""
        if self.noise_layer is None:
            return super().head(pool_feat)
        bn_feat = self.bottleneck(pool_feat) if self.bottleneck is not None else pool_feat
        if self.noise_apply_to == "all":
            feat = self.noise_layer(bn_feat)
        elif generated is not None:  # always through the graph: batches without generated images give A zero grad
            feat = torch.where(generated[:, None], self.noise_layer(bn_feat), bn_feat)
        else:
            feat = bn_feat
        return {"logits": self.classifier(self.dropout(feat)), "pool_feat": pool_feat, "bn_feat": bn_feat}

    def forward(self, batched_inputs):
        images = batched_inputs["images"].to(self.device)
        if not self.training:
            return self.inference(images)
        targets = batched_inputs["targets"].to(self.device)
        out = dict(self.head(self.pooled_features(images), generated=targets < 0), targets=targets)
        return self.compute_losses(out, batched_inputs)
