"""A tiny conv-BN-ReLU backbone for tests and CPU demos (not for accuracy).

``log2(OUT_STRIDE)`` stride-2 3×3 convs; channels WIDTH, 2·WIDTH, then 4·WIDTH for every
later stage (32-64-128-128 by default, stride 16).
"""
from typing import Dict

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

from .resnet import check_norm
from .weights import load_pretrained_backbone


class TinyBackbone(Backbone):
    """Returns ``{"features": (B, C, H/s, W/s)}`` with s = ``out_stride``."""

    def __init__(self, in_channels: int = 3, width: int = 32, out_stride: int = 16, norm: str = "BN"):
        super().__init__()
        if out_stride not in (2, 4, 8, 16, 32, 64):
            raise ValueError(
                f"MODEL.REID_BACKBONE.OUT_STRIDE must be a power of 2 in [2, 64], got {out_stride}")
        if width < 1:
            raise ValueError(f"MODEL.REID_BACKBONE.WIDTH must be positive, got {width}")
        check_norm(norm)
        stages = []
        for i in range(out_stride.bit_length() - 1):
            out_channels = width * 2 ** min(i, 2)
            stages.append(Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1, bias=False,
                                 norm=get_norm(norm, out_channels), activation=F.relu))
            in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        self._out_feature = "features"
        self._out_shape = ShapeSpec(channels=in_channels, stride=out_stride)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {self._out_feature: self.stages(x)}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {self._out_feature: self._out_shape}


@BACKBONE_REGISTRY.register()
def build_reid_tiny_backbone(cfg, input_shape: ShapeSpec) -> TinyBackbone:
    c = cfg.MODEL.REID_BACKBONE
    backbone = TinyBackbone(input_shape.channels, width=c.WIDTH, out_stride=c.OUT_STRIDE, norm=c.NORM)
    if c.PRETRAINED:
        load_pretrained_backbone(backbone, c.PRETRAINED)
    return backbone
