"""The C4 split of person-search models: a backbone up to res4 (stride 16) and a per-RoI res5 head.

* ResNet-50/101 C4: Detectron2's ``build_resnet_backbone`` (``MODEL.RESNETS.OUT_FEATURES: ["res4"]``) and
  Detectron2's bottleneck res5 head.
* ResNet-18/34 C4: the same Detectron2 backbone builder (it supports BasicBlocks) and
  :func:`build_basic_res5_head`, because Detectron2 v0.6's ``Res5ROIHeads`` only builds bottlenecks.
* Tiny C4 (CPU demos, tests): :func:`build_tiny_c4_backbone` and :func:`build_tiny_res5_head`.
"""
from typing import Dict

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.resnet import BasicBlock, ResNet
from torch import nn

__all__ = ["TinyC4Backbone", "build_tiny_c4_backbone", "build_basic_res5_head", "build_tiny_res5_head"]

_BASIC_RES5_BLOCKS = {18: 2, 34: 3}
_TINY_NORMS = ("BN", "GN", "SyncBN")


class TinyC4Backbone(Backbone):
    """A stride-2 conv stem, then three stages of a stride-2 conv and a BasicBlock (2·width, 4·width, 4·width
    channels): ``{"res4": (B, 4·width, H/16, W/16)}``, with a receptive field that covers whole people."""

    def __init__(self, in_channels: int = 3, width: int = 16, norm: str = "BN"):
        super().__init__()
        if norm not in _TINY_NORMS:
            raise ValueError(f"MODEL.PERSON_SEARCH.TINY_NORM must be one of {_TINY_NORMS} (FrozenBN cannot "
                             f"train from random init), got {norm!r}")
        if width < 1 or (norm == "GN" and width % 32):
            raise ValueError(f"MODEL.PERSON_SEARCH.TINY_WIDTH must be positive (a multiple of 32 with GN's "
                             f"32 groups), got {width}")
        self.stem = Conv2d(in_channels, width, kernel_size=3, stride=2, padding=1, bias=False,
                           norm=get_norm(norm, width), activation=F.relu)
        channels = [width, 2 * width, 4 * width, 4 * width]
        self.stages = nn.Sequential(*[
            nn.Sequential(Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=False,
                                 norm=get_norm(norm, c_out), activation=F.relu),
                          BasicBlock(c_out, c_out, stride=1, norm=norm))
            for c_in, c_out in zip(channels[:-1], channels[1:])])
        self._out_shape = ShapeSpec(channels=channels[-1], stride=16)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"res4": self.stages(self.stem(x))}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {"res4": self._out_shape}


@BACKBONE_REGISTRY.register()
def build_tiny_c4_backbone(cfg, input_shape: ShapeSpec) -> TinyC4Backbone:
    c = cfg.MODEL.PERSON_SEARCH
    return TinyC4Backbone(input_shape.channels, width=c.TINY_WIDTH, norm=c.TINY_NORM)


def build_basic_res5_head(cfg):
    """(res5 stage of ResNet-18/34 built from BasicBlocks, out channels); input is res4 (256 channels)."""
    depth = cfg.MODEL.RESNETS.DEPTH
    if depth not in _BASIC_RES5_BLOCKS:
        raise ValueError(f"build_basic_res5_head: MODEL.RESNETS.DEPTH must be 18 or 34, got {depth}")
    res2_channels = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS
    if res2_channels != 64:
        raise ValueError(f"MODEL.RESNETS.RES2_OUT_CHANNELS must be 64 for ResNet-{depth}, got {res2_channels}")
    out_channels = res2_channels * 8
    num_blocks = _BASIC_RES5_BLOCKS[depth]
    blocks = ResNet.make_stage(BasicBlock, num_blocks, stride_per_block=[2] + [1] * (num_blocks - 1),
                               in_channels=out_channels // 2, out_channels=out_channels,
                               norm=cfg.MODEL.RESNETS.NORM)
    return nn.Sequential(*blocks), out_channels


def build_tiny_res5_head(cfg):
    """(one stride-2 BasicBlock 4·width → 8·width, out channels): the res5 head of the tiny C4 backbone."""
    c = cfg.MODEL.PERSON_SEARCH
    in_channels = 4 * c.TINY_WIDTH
    block = BasicBlock(in_channels, 2 * in_channels, stride=2, norm=c.TINY_NORM)
    return nn.Sequential(block), 2 * in_channels
