"""torchvision ResNet-18/34/50/101/152 as a Detectron2 backbone, with a re-ID last stride.

Module names are torchvision's (``conv1``, ``bn1``, ``layer1`` ... ``layer4``), so torchvision
ImageNet files load as they are; Detectron2 names (``stem.conv1``, ``res2.0.conv1.norm`` ...) are
renamed on load. With last stride 1 (Sun et al., PCB; BoT) layer4 keeps the res4 resolution:
a 256×128 crop gives a 16×8 res5 map instead of 8×4.
"""
import re
from typing import Dict

import torch
import torchvision
from detectron2.layers import ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

from .weights import load_pretrained_backbone

_RESNETS = {
    18: torchvision.models.resnet18,
    34: torchvision.models.resnet34,
    50: torchvision.models.resnet50,
    101: torchvision.models.resnet101,
    152: torchvision.models.resnet152,
}
NORMS = ("BN", "FrozenBN", "GN", "SyncBN")

# Detectron2 ResNet names -> torchvision names (res2..res5 are layer1..layer4).
_D2_TO_TORCHVISION = [
    (re.compile(r"^stem\.conv1\.norm\."), lambda m: "bn1."),
    (re.compile(r"^stem\.conv1\."), lambda m: "conv1."),
    (re.compile(r"^res(\d)\.(\d+)\.conv(\d)\.norm\."),
     lambda m: f"layer{int(m[1]) - 1}.{m[2]}.bn{m[3]}."),
    (re.compile(r"^res(\d)\.(\d+)\.conv(\d)\."),
     lambda m: f"layer{int(m[1]) - 1}.{m[2]}.conv{m[3]}."),
    (re.compile(r"^res(\d)\.(\d+)\.shortcut\.norm\."),
     lambda m: f"layer{int(m[1]) - 1}.{m[2]}.downsample.1."),
    (re.compile(r"^res(\d)\.(\d+)\.shortcut\."),
     lambda m: f"layer{int(m[1]) - 1}.{m[2]}.downsample.0."),
]


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"MODEL.REID_BACKBONE.NORM must be one of {NORMS}, got {norm!r}")
    return norm


def check_rgb_input(input_shape: ShapeSpec, name: str) -> None:
    if input_shape.channels != 3:
        raise ValueError(f"{name} takes 3-channel images (MODEL.PIXEL_MEAN), got {input_shape.channels}")


class ReIDResNet(Backbone):
    """conv1 … layer4 of a torchvision ResNet; returns ``{"res5": (B, C, H/s, W/s)}``, s = 16 or 32."""

    def __init__(self, depth: int = 50, last_stride: int = 1, norm: str = "BN"):
        super().__init__()
        if depth not in _RESNETS:
            raise ValueError(f"MODEL.REID_BACKBONE.DEPTH must be one of {sorted(_RESNETS)}, got {depth}")
        if last_stride not in (1, 2):
            raise ValueError(f"MODEL.REID_BACKBONE.LAST_STRIDE must be 1 or 2, got {last_stride}")
        check_norm(norm)
        net = _RESNETS[depth](weights=None, norm_layer=lambda channels: get_norm(norm, channels))
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if last_stride == 1:  # stride-2 3×3 conv (or 1×1 in BasicBlock) and its shortcut
            for conv in self.layer4[0].modules():
                if isinstance(conv, nn.Conv2d) and conv.stride == (2, 2):
                    conv.stride = (1, 1)
        self._out_feature = "res5"
        self._out_shape = ShapeSpec(channels=net.fc.in_features, stride=16 * last_stride)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return {self._out_feature: x}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {self._out_feature: self._out_shape}

    @staticmethod
    def remap_pretrained_keys(weights: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Rename Detectron2-style keys to torchvision's; torchvision keys pass unchanged."""
        renamed = {}
        for key, value in weights.items():
            for pattern, replacement in _D2_TO_TORCHVISION:
                key, hits = pattern.subn(replacement, key, count=1)
                if hits:
                    break
            renamed[key] = value
        return renamed


@BACKBONE_REGISTRY.register()
def build_reid_resnet_backbone(cfg, input_shape: ShapeSpec) -> ReIDResNet:
    check_rgb_input(input_shape, "build_reid_resnet_backbone")
    c = cfg.MODEL.REID_BACKBONE
    backbone = ReIDResNet(depth=c.DEPTH, last_stride=c.LAST_STRIDE, norm=c.NORM)
    if c.PRETRAINED:
        load_pretrained_backbone(backbone, c.PRETRAINED)
    return backbone
