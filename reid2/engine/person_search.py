"""``PersonSearchTrainer``: trains and evaluates person-search models (``REID2.TRAINER: PersonSearchTrainer``)."""
import logging
import os

import torch
from detectron2.engine import HookBase
from detectron2.utils import comm

from reid2.data.person_search_mapper import build_person_search_test_loader, build_person_search_train_loader
from reid2.evaluation.ps_evaluator import PersonSearchEvaluator
from reid2.modeling.kd import TRAINING_ONLY_MODULES, strip_training_only_weights

from .checkpoint import _atomic_write
from .defaults import ReID2Trainer
from .registry import TRAINER_REGISTRY

__all__ = ["PersonSearchTrainer", "ExportInferenceWeights", "INFERENCE_WEIGHTS"]

INFERENCE_WEIGHTS = "model_final_inference.pth"


class ExportInferenceWeights(HookBase):
    """After training, write ``OUTPUT_DIR/model_final_inference.pth``: the model's weights without its
    training-only modules (the KD hint adapter), loadable into the plain inference architecture."""

    def after_train(self):
        if not comm.is_main_process() or self.trainer.iter + 1 < self.trainer.max_iter:
            return  # interrupted runs export nothing
        model = getattr(self.trainer.model, "module", self.trainer.model)
        weights = strip_training_only_weights(model.state_dict())
        path = os.path.join(self.trainer.cfg.OUTPUT_DIR, INFERENCE_WEIGHTS)
        _atomic_write(path, lambda f: torch.save({"model": weights, "iteration": self.trainer.iter}, f))
        logging.getLogger(__name__).info("inference weights (without %s) written to %s",
                                         ", ".join(TRAINING_ONLY_MODULES), path)


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

    def build_hooks(self):
        hook_list = super().build_hooks()
        model = getattr(self.model, "module", self.model)
        if any(name in TRAINING_ONLY_MODULES for name, _ in model.named_children()):
            hook_list.insert(-1, ExportInferenceWeights())  # before the writer, after the final checkpoint
        return hook_list
