"""Re-ID backbones registered in Detectron2's ``BACKBONE_REGISTRY`` (selected by
``MODEL.BACKBONE.NAME``), configured by ``MODEL.REID_BACKBONE``.

Each returns a single feature map: ``{"res5": ...}`` for ResNets, ``{"features": ...}`` otherwise.
"""
from detectron2.config import CfgNode as CN

from .densenet import ReIDDenseNet121, build_reid_densenet_backbone
from .mobilenet import ReIDMobileNetV2, build_reid_mobilenetv2_backbone
from .resnet import ReIDResNet, build_reid_resnet_backbone
from .tiny import TinyBackbone, build_reid_tiny_backbone
from .weights import load_pretrained_backbone, read_weight_file


def add_backbone_config(cfg: CN) -> None:
    """Add ``MODEL.REID_BACKBONE`` (read by the ``build_reid_*_backbone`` functions)."""
    _C = cfg
    _C.MODEL.REID_BACKBONE = CN()
    # ResNet depth: 18 | 34 | 50 | 101 | 152 (build_reid_resnet_backbone).
    _C.MODEL.REID_BACKBONE.DEPTH = 50
    # Stride of layer4's first block: 1 keeps res5 at 1/16 of the input (re-ID), 2 = ImageNet (1/32).
    _C.MODEL.REID_BACKBONE.LAST_STRIDE = 1
    # Normalisation layers: "BN" | "FrozenBN" | "GN" | "SyncBN" (detectron2.layers.get_norm).
    _C.MODEL.REID_BACKBONE.NORM = "BN"
    # Local ImageNet weights: torchvision .pth/.pt state dict or Detectron2/Caffe2 .pkl; "" = random
    # init. Never downloaded. Loaded before MODEL.WEIGHTS, which (if set) overrides it.
    _C.MODEL.REID_BACKBONE.PRETRAINED = ""
    # Tiny backbone only (build_reid_tiny_backbone): channels of the first stage ...
    _C.MODEL.REID_BACKBONE.WIDTH = 32
    # ... and output stride, a power of 2 (one stride-2 conv stage per factor 2).
    _C.MODEL.REID_BACKBONE.OUT_STRIDE = 16


__all__ = [
    "ReIDDenseNet121",
    "ReIDMobileNetV2",
    "ReIDResNet",
    "TinyBackbone",
    "add_backbone_config",
    "build_reid_densenet_backbone",
    "build_reid_mobilenetv2_backbone",
    "build_reid_resnet_backbone",
    "build_reid_tiny_backbone",
    "load_pretrained_backbone",
    "read_weight_file",
]
