"""``ReIDTrainer``: the trainer of classification-style re-ID models (``REID2.TRAINER``)."""
from reid2.data.build import build_reid_test_loader, build_reid_train_loader
from reid2.evaluation.reid_evaluator import ReIDEvaluator

from .defaults import ReID2Trainer
from .registry import TRAINER_REGISTRY


@TRAINER_REGISTRY.register()
class ReIDTrainer(ReID2Trainer):
    """Re-ID loaders (P x K train, batched test) and the ``ReIDEvaluator``."""

    @classmethod
    def build_train_loader(cls, cfg):
        return build_reid_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_reid_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return ReIDEvaluator.from_config(cfg, dataset_name)
