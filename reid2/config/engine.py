"""Keys that choose the trainer and control the run (device, seed, evaluation)."""
from detectron2.config import CfgNode as CN


def add_engine_config(cfg: CN) -> None:
    cfg.REID2 = CN()
    # Trainer class from reid2.engine.TRAINER_REGISTRY ("ReIDTrainer", "PersonSearchTrainer", ...).
    cfg.REID2.TRAINER = "ReIDTrainer"
    # Device: "auto" = CUDA when available, else CPU. Overrides MODEL.DEVICE at setup.
    cfg.REID2.DEVICE = "auto"
    # Keep the checkpoint with the best value of this metric (e.g. "reid/mAP"); "" disables.
    cfg.REID2.BEST_METRIC = ""
