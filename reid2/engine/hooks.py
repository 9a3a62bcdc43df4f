"""Training hooks reid2 adds to Detectron2's."""
import logging
import os

import torch
from detectron2.engine import HookBase
from detectron2.engine.hooks import LRScheduler
from detectron2.utils import comm

from reid2.utils.files import atomic_write
from reid2.utils.modules import strip_modules, unwrap_model

__all__ = ["ExportInferenceWeights", "INFERENCE_WEIGHTS", "SolverLRToModules", "modules_taking_solver_lr"]

INFERENCE_WEIGHTS = "model_final_inference.pth"


class ExportInferenceWeights(HookBase):
    """After training, write ``OUTPUT_DIR/model_final_inference.pth``: the weights without the modules the model
    declares in ``training_only_modules`` (e.g. the KD hint adapter), loadable into the inference architecture."""

    def after_train(self):
        if not comm.is_main_process() or self.trainer.iter + 1 < self.trainer.max_iter:
            return  # interrupted runs export nothing
        model = unwrap_model(self.trainer.model)
        names = tuple(model.training_only_modules)
        weights = strip_modules(model.state_dict(), names)
        path = os.path.join(self.trainer.cfg.OUTPUT_DIR, INFERENCE_WEIGHTS)
        atomic_write(path, lambda f: torch.save({"model": weights, "iteration": self.trainer.iter}, f))
        logging.getLogger(__name__).info("inference weights (without %s) written to %s", ", ".join(names), path)


def modules_taking_solver_lr(model):
    """The submodules of ``model`` that define ``set_solver_lr`` (e.g. the batch-contrastive loss's centers)."""
    return [m for m in unwrap_model(model).modules() if callable(getattr(m, "set_solver_lr", None))]


class SolverLRToModules(HookBase):
    """Before every step, pass the optimizer's current learning rate (the param group Detectron2 logs as
    ``lr``) to each module with ``set_solver_lr``: state the optimizer does not own that should follow the
    solver's schedule, as the batch-contrastive centers do in Zhang & Xu's Algorithm 1."""

    def before_train(self):
        self._modules = modules_taking_solver_lr(self.trainer.model)
        self._group = LRScheduler.get_best_param_group_id(self.trainer.optimizer)

    def before_step(self):
        lr = self.trainer.optimizer.param_groups[self._group]["lr"]
        for m in self._modules:
            m.set_solver_lr(lr)
