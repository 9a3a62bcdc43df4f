"""Trainers, launch and set-up for reid2's entry points."""
from .checkpoint import AtomicCheckpointer
from .defaults import ReID2Trainer, read_last_evaluation, resolve_device, setup_cfg, write_metrics_json
from .launch import create_ddp_model, launch
from .registry import TRAINER_REGISTRY
