"""``PersonSearchTrainer``: trains and evaluates person-search models (``REID2.TRAINER: PersonSearchTrainer``).

The evaluator comes from the test set's metadata (``reid2.evaluation.build_evaluator``), which gives the
person-search evaluator the model being tested (it embeds the queries).
"""
from reid2.data.person_search_mapper import build_person_search_test_loader, build_person_search_train_loader

from .defaults import ReID2Trainer
from .hooks import INFERENCE_WEIGHTS, ExportInferenceWeights
from .registry import TRAINER_REGISTRY

__all__ = ["PersonSearchTrainer", "ExportInferenceWeights", "INFERENCE_WEIGHTS"]


@TRAINER_REGISTRY.register()
class PersonSearchTrainer(ReID2Trainer):
    """Detection loaders that keep person ids, and batched test loaders."""

    @classmethod
    def build_train_loader(cls, cfg):
        return build_person_search_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_person_search_test_loader(cfg, dataset_name)
