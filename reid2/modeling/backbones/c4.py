"""The C4 split of person-search models: a backbone up to res4 (stride 16) and a per-RoI res5 head.

* ResNet-50/101 C4: Detectron2's ``build_resnet_backbone`` (``MODEL.RESNETS.OUT_FEATURES: ["res4"]``) and
  Detectron2's bottleneck res5 head.
* ResNet-18/34 C4: the same Detectron2 backbone builder (it supports BasicBlocks) and
  :func:`build_basic_res5_head`, because Detectron2 v0.6's ``Res5ROIHeads`` only builds bottlenecks.
* Tiny C4 (CPU demos, tests): :func:`build_tiny_c4_backbone` and :func:`build_tiny_res5_head`.

Where the ResNet is cut (``MODEL.PERSON_SEARCH.SPLIT``): "C4" pools RoIs after all of res4 (Detectron2, SeqNet,
NAE, COAT); "conv4_3" pools them after res4c, Caffe's conv4_3, and runs res4d-f and res5 per RoI (the original
OIM ``train.prototxt``). The same ResNet either way: the moved res4 blocks keep their index, as
``roi_heads.res4.<i>`` instead of ``backbone.res4.<i>`` (:func:`remap_res4_split_keys` loads either layout).
"""
import re
from collections import OrderedDict
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock, ResNet
from torch import nn

__all__ = ["TinyC4Backbone", "build_tiny_c4_backbone", "build_basic_res5_head", "build_tiny_res5_head",
           "SPLITS", "res4_trunk_blocks", "head_cfg", "build_res4_tail", "truncate_res4", "remap_res4_split_keys"]

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


SPLITS = ("C4", "conv4_3")
_RES4_BLOCKS = {18: 2, 34: 6, 50: 6, 101: 23, 152: 36}
_CONV4_3_TRUNK_BLOCKS = 3  # res4a-c = Caffe's conv4_1 .. conv4_3


def res4_trunk_blocks(cfg) -> Optional[int]:
    """res4 blocks the backbone keeps: None for the C4 split (all), 3 for conv4_3; a clear error otherwise."""
    split = cfg.MODEL.PERSON_SEARCH.SPLIT
    if split not in SPLITS:
        raise ValueError(f"MODEL.PERSON_SEARCH.SPLIT must be one of {SPLITS}, got {split!r}")
    if split == "C4":
        return None
    if cfg.MODEL.BACKBONE.NAME != "build_resnet_backbone" or cfg.MODEL.PERSON_SEARCH.RES5_HEAD != "resnet":
        raise ValueError("MODEL.PERSON_SEARCH.SPLIT 'conv4_3' needs Detectron2's ResNet (MODEL.BACKBONE.NAME "
                         f"'build_resnet_backbone', RES5_HEAD 'resnet'), got {cfg.MODEL.BACKBONE.NAME!r} / "
                         f"{cfg.MODEL.PERSON_SEARCH.RES5_HEAD!r}")
    depth = cfg.MODEL.RESNETS.DEPTH
    if _RES4_BLOCKS.get(depth, 0) <= _CONV4_3_TRUNK_BLOCKS:
        raise ValueError(f"MODEL.PERSON_SEARCH.SPLIT 'conv4_3' cuts res4 after its third block: ResNet-{depth} "
                         f"has {_RES4_BLOCKS.get(depth, '?')} res4 blocks (use ResNet-34/50/101/152, or SPLIT 'C4')")
    if cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE[2]:
        raise ValueError("MODEL.PERSON_SEARCH.SPLIT 'conv4_3' does not support deformable res4 blocks")
    return _CONV4_3_TRUNK_BLOCKS


def head_cfg(cfg):
    """``cfg`` with ``MODEL.RESNETS.NORM`` = ``MODEL.PERSON_SEARCH.HEAD_NORM`` when that is set: the norm of the
    per-RoI ResNet blocks (the original OIM's head BNs use batch statistics, its trunk BNs frozen ones)."""
    norm = cfg.MODEL.PERSON_SEARCH.HEAD_NORM
    if not norm:
        return cfg
    if cfg.MODEL.PERSON_SEARCH.RES5_HEAD != "resnet":
        raise ValueError(f"MODEL.PERSON_SEARCH.HEAD_NORM applies to ResNet heads (RES5_HEAD 'resnet'), got "
                         f"RES5_HEAD {cfg.MODEL.PERSON_SEARCH.RES5_HEAD!r}; leave HEAD_NORM ''")
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.RESNETS.NORM = norm
    return cfg


def build_res4_tail(cfg) -> nn.Sequential:
    """res4 blocks 3.. (res4d-f for ResNet-50) as ``build_resnet_backbone`` makes them, named by their res4 index
    (so the keys read ``roi_heads.res4.3.conv1.weight``); frozen with the backbone when ``FREEZE_AT`` >= 4."""
    trunk = res4_trunk_blocks(cfg)
    r = cfg.MODEL.RESNETS
    depth = r.DEPTH
    channels = r.RES2_OUT_CHANNELS * 4
    kwargs = dict(in_channels=channels, out_channels=channels, norm=r.NORM)
    if depth in (18, 34):
        block_class = BasicBlock
    else:
        block_class = BottleneckBlock
        kwargs.update(bottleneck_channels=r.NUM_GROUPS * r.WIDTH_PER_GROUP * 4, stride_in_1x1=r.STRIDE_IN_1X1,
                      num_groups=r.NUM_GROUPS, dilation=1)
    num = _RES4_BLOCKS[depth] - trunk
    blocks = ResNet.make_stage(block_class, num, stride_per_block=[1] * num, **kwargs)
    if cfg.MODEL.BACKBONE.FREEZE_AT >= 4:
        blocks = [block.freeze() for block in blocks]
    return nn.Sequential(OrderedDict((str(trunk + i), block) for i, block in enumerate(blocks)))


def truncate_res4(backbone: nn.Module, keep: int) -> None:
    """Drop res4 blocks ``keep``.. of a Detectron2 ResNet in place (the RoI head runs them); output shape unchanged."""
    res4 = getattr(backbone, "res4", None)
    if not isinstance(backbone, ResNet) or not isinstance(res4, nn.Sequential) or len(res4) <= keep:
        raise ValueError(f"MODEL.PERSON_SEARCH.SPLIT 'conv4_3': expected a Detectron2 ResNet with more than {keep} "
                         f"res4 blocks, got {type(backbone).__name__}")
    del res4[keep:]


def remap_res4_split_keys(state_dict: dict, trunk_blocks: int, prefix: str = "") -> dict:
    """Rename, in place, res4 block i to ``backbone.res4.i`` (i < trunk_blocks) or ``roi_heads.res4.i`` (the others):
    a checkpoint of either split (C4, conv4_3; e.g. ``tools/convert_weights.py --target person_search``) then
    loads into a model of the other. Returns ``state_dict``."""
    pattern = re.compile(rf"^{re.escape(prefix)}(backbone|roi_heads)\.res4\.(\d+)\.")
    moves = {}
    for key in state_dict:
        m = pattern.match(key)
        if m:
            place = "backbone" if int(m[2]) < trunk_blocks else "roi_heads"
            if place != m[1]:
                moves[key] = f"{prefix}{place}.res4.{m[2]}.{key[m.end():]}"
    clash = [new for new in moves.values() if new in state_dict]
    if clash:
        raise ValueError(f"checkpoint holds res4 blocks in both layouts (C4 and conv4_3), e.g. {clash[0]!r}")
    for old, new in moves.items():
        state_dict[new] = state_dict.pop(old)
    return state_dict
