"""reid2 configuration: Detectron2's defaults plus every key reid2 and the imported projects add."""
from .defaults import CfgNode, add_reid_config, get_cfg, load_config, register_config_adder, safe_cfg
from .imports import declared_imports, import_modules

__all__ = ["CfgNode", "add_reid_config", "declared_imports", "get_cfg", "import_modules", "load_config",
           "register_config_adder", "safe_cfg"]
