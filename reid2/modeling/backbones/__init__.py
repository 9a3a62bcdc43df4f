"""Re-ID backbones registered in Detectron2's ``BACKBONE_REGISTRY`` (selected by
``MODEL.BACKBONE.NAME``), configured by ``MODEL.REID_BACKBONE``.

Each returns a single feature map: ``{"res5": ...}`` for ResNets, ``{"features": ...}`` otherwise.
"""
from .densenet import ReIDDenseNet121, build_reid_densenet_backbone
from .mobilenet import ReIDMobileNetV2, build_reid_mobilenetv2_backbone
from .mobilenet_c4 import MobileNetV2C4Backbone, build_mobilenet_c4_backbone, shipped_mobilenetv2_weights
from .resnet import ReIDResNet, build_reid_resnet_backbone, check_rgb_input
from .tiny import TinyBackbone, build_reid_tiny_backbone
from .weights import load_pretrained_backbone, read_weight_file

__all__ = [
    "MobileNetV2C4Backbone",
    "ReIDDenseNet121",
    "ReIDMobileNetV2",
    "ReIDResNet",
    "TinyBackbone",
    "build_mobilenet_c4_backbone",
    "build_reid_densenet_backbone",
    "build_reid_mobilenetv2_backbone",
    "build_reid_resnet_backbone",
    "build_reid_tiny_backbone",
    "check_rgb_input",
    "load_pretrained_backbone",
    "read_weight_file",
    "shipped_mobilenetv2_weights",
]
