"""Knowledge-distillation keys (MODEL.KD). Filled in by the distillation issue."""
from detectron2.config import CfgNode as CN


def add_kd_config(cfg: CN) -> None:
    pass
