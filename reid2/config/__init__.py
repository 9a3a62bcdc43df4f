"""reid2 configuration: Detectron2's defaults plus every key reid2 and its projects add."""
from .defaults import CfgNode, add_reid_config, get_cfg, safe_cfg

__all__ = ["CfgNode", "add_reid_config", "get_cfg", "safe_cfg"]
