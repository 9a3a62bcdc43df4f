"""Trainers, launch, set-up, the predictor and export for reid2's entry points."""
from . import person_search, reid_trainer  # noqa: F401  (trainer registration)
from .amp import ReID2AMPTrainer
from .checkpoint import AtomicCheckpointer
from .defaults import ReID2Trainer, check_pretrained, resolve_device, setup_cfg
from .hooks import INFERENCE_WEIGHTS, ExportInferenceWeights
from .launch import create_ddp_model, launch
from .person_search import PersonSearchTrainer
from .registry import TRAINER_REGISTRY
from .reid_trainer import ReIDTrainer

__all__ = ["AtomicCheckpointer", "ExportInferenceWeights", "INFERENCE_WEIGHTS", "PersonSearchTrainer",
           "ReID2AMPTrainer", "ReID2Trainer", "ReIDTrainer", "TRAINER_REGISTRY", "check_pretrained",
           "create_ddp_model", "launch", "resolve_device", "setup_cfg"]
