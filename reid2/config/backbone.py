"""``MODEL.REID_BACKBONE``: the keys of the re-ID backbones (``reid2.modeling.backbones``)."""
from detectron2.config import CfgNode as CN


def add_backbone_config(cfg: CN) -> None:
    """Add ``MODEL.REID_BACKBONE`` (read by the ``build_reid_*_backbone`` functions; NORM and PRETRAINED
    also by the person-search ``build_mobilenet_c4_backbone``)."""
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
    # Whether the backbone must start from ImageNet weights (every paper config: True; the tiny synthetic
    # configs: False). When True and no weights are given, training stops before the first step naming the key
    # to set: MODEL.REID_BACKBONE.PRETRAINED for the re-ID backbones, MODEL.WEIGHTS for person search (a
    # Detectron2 ImageNet .pkl or a tools/convert_weights.py --target person_search file). Set it False to
    # train from random initialisation on purpose.
    _C.MODEL.REQUIRE_PRETRAINED = True
    # Tiny backbone only (build_reid_tiny_backbone): channels of the first stage ...
    _C.MODEL.REID_BACKBONE.WIDTH = 32
    # ... and output stride, a power of 2 (one stride-2 conv stage per factor 2).
    _C.MODEL.REID_BACKBONE.OUT_STRIDE = 16
