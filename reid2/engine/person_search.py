"""``PersonSearchTrainer``: trains and evaluates person-search models (``REID2.TRAINER: PersonSearchTrainer``)."""
from reid2.data.person_search_mapper import build_person_search_test_loader, build_person_search_train_loader
from reid2.evaluation.ps_evaluator import PersonSearchEvaluator

from .defaults import ReID2Trainer
from .registry import TRAINER_REGISTRY

__all__ = ["PersonSearchTrainer"]


@TRAINER_REGISTRY.register()
class PersonSearchTrainer(ReID2Trainer):
    """Detection loaders that keep person ids, batched test loaders, and the ``PersonSearchEvaluator``,
    which receives the model being tested (it embeds the queries)."""

    @classmethod
    def build_train_loader(cls, cfg):
        return build_person_search_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_person_search_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None, model=None):
        return PersonSearchEvaluator.from_config(cfg, dataset_name, model=model)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        if evaluators is None:
            evaluators = [cls.build_evaluator(cfg, name, model=model) for name in cfg.DATASETS.TEST]
        return super().test(cfg, model, evaluators)
