"""reid2 configuration: Detectron2's defaults plus every key reid2 and its projects add."""
from .defaults import add_reid_config, get_cfg

__all__ = ["add_reid_config", "get_cfg"]
