"""Registry of trainer classes, chosen by ``cfg.REID2.TRAINER`` in ``tools/train_net.py``."""
from detectron2.utils.registry import Registry

TRAINER_REGISTRY = Registry("TRAINER")
TRAINER_REGISTRY.__doc__ = """
Trainer classes (Detectron2 ``DefaultTrainer`` subclasses). ``tools/train_net.py`` builds
``TRAINER_REGISTRY.get(cfg.REID2.TRAINER)``; a downstream package registers its own with
``@TRAINER_REGISTRY.register()``.
"""
