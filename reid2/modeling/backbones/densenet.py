"""torchvision DenseNet-121 ``features`` (+ the final ReLU) as a Detectron2 backbone, stride 32."""
import re
from typing import Dict

import torch
import torch.nn.functional as F
import torchvision
from detectron2.layers import ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

from .resnet import check_norm, check_rgb_input
from .weights import load_pretrained_backbone

# torchvision's own densenet121-a639ec97.pth still uses the pre-1.0 names "norm.1", "conv.2" ...
_LEGACY_DENSE_LAYER_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
    r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def _replace_batchnorm(module: nn.Module, norm: str) -> None:
    """Swap every BatchNorm2d for ``get_norm(norm)``: torchvision's DenseNet takes no norm_layer."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, get_norm(norm, child.num_features))
        else:
            _replace_batchnorm(child, norm)


class ReIDDenseNet121(Backbone):
    """DenseNet-121 dense blocks; returns ``{"features": (B, 1024, H/32, W/32)}``."""

    def __init__(self, norm: str = "BN"):
        super().__init__()
        check_norm(norm)
        self.features = torchvision.models.densenet121(weights=None).features
        if norm != "BN":
            _replace_batchnorm(self.features, norm)
        self._out_feature = "features"
        self._out_shape = ShapeSpec(channels=1024, stride=32)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        # torchvision applies this ReLU in DenseNet.forward, after norm5.
        return {self._out_feature: F.relu(self.features(x))}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {self._out_feature: self._out_shape}

    @staticmethod
    def remap_pretrained_keys(weights: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``denselayerN.norm.1.weight`` -> ``denselayerN.norm1.weight`` (as torchvision does)."""
        return {_LEGACY_DENSE_LAYER_KEY.sub(r"\1\2", key): value for key, value in weights.items()}


@BACKBONE_REGISTRY.register()
def build_reid_densenet_backbone(cfg, input_shape: ShapeSpec) -> ReIDDenseNet121:
    check_rgb_input(input_shape, "build_reid_densenet_backbone")
    backbone = ReIDDenseNet121(norm=cfg.MODEL.REID_BACKBONE.NORM)
    if cfg.MODEL.REID_BACKBONE.PRETRAINED:
        load_pretrained_backbone(backbone, cfg.MODEL.REID_BACKBONE.PRETRAINED)
    return backbone
