"""Re-ID keys. Filled in by the re-ID data/model work."""
from detectron2.config import CfgNode as CN


def add_reid_data_config(cfg: CN) -> None:
    pass


def add_reid_model_config(cfg: CN) -> None:
    pass
