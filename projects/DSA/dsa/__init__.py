"""DSA-reID (Zhang et al., CVPR 2019) on reid2: DensePose IUV readers, DSAP warping, the two-stream network.

Importing the package registers ``MODEL.DSA`` keys, the ``DSAReID`` meta-architecture, the
``build_dsa_resnet_trunk`` backbone and the ``DSATrainer``. The DSAP warping is ``dsa.warp_to_dsap``.
"""
from . import config  # noqa: F401  (MODEL.DSA keys)
from .config import add_dsa_config
from .dsap import csa_part_images, flip_iuv, warp_to_dsap
from .iuv import IUV, read_iuv
from .modeling import DSAGStream, DSAReID, MFStream, build_dsa_resnet_trunk
from .trainer import DSATrainer

__all__ = ["IUV", "DSAGStream", "DSAReID", "DSATrainer", "MFStream", "add_dsa_config", "build_dsa_resnet_trunk",
           "csa_part_images", "flip_iuv", "read_iuv", "warp_to_dsap"]
