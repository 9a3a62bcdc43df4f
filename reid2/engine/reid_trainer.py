"""``ReIDTrainer``: the trainer of classification-style re-ID models (``REID2.TRAINER``)."""
from reid2.data.build import build_reid_test_loader, build_reid_train_loader

from .defaults import ReID2Trainer
from .registry import TRAINER_REGISTRY


@TRAINER_REGISTRY.register()
class ReIDTrainer(ReID2Trainer):
    """Re-ID loaders (P x K train, batched test); the evaluator comes from the test set's metadata."""

    @classmethod
    def build_train_loader(cls, cfg):
        return build_reid_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_reid_test_loader(cfg, dataset_name)
