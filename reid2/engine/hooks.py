"""Training hooks reid2 adds to Detectron2's."""
import logging
import os

import torch
from detectron2.engine import HookBase
from detectron2.engine.hooks import LRScheduler
from detectron2.utils import comm

from reid2.utils.files import atomic_write
from reid2.utils.modules import strip_modules, unwrap_model

__all__ = ["DivergenceStop", "ExportInferenceWeights", "INFERENCE_WEIGHTS", "SolverLRToModules", "TrainingDiverged",
           "modules_taking_solver_lr"]

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


class TrainingDiverged(FloatingPointError):
    """A loss far above its running level (``SOLVER.DIVERGENCE_FACTOR``)."""


class DivergenceStop(HookBase):
    """Stops training when a loss term (``loss*`` and ``total_loss`` as logged by the trainer) exceeds ``factor``
    times its running level, so an exploding run that stays finite is not trained to the end, saved and scored.

    The level of a term is the exponential average (``momentum``) of its past values, floored at ``floor`` x the
    total loss's level so that a term close to zero may grow without stopping the run. The first ``warmup``
    iterations are not checked (their losses enter the levels). It runs before the periodic checkpointer: the
    diverged step is not saved.
    """

    def __init__(self, factor: float, warmup: int = 0, momentum: float = 0.9, floor: float = 0.1):
        if factor <= 1:
            raise ValueError(f"SOLVER.DIVERGENCE_FACTOR must be > 1 (or 0 to disable), got {factor}")
        self.factor, self.warmup, self.momentum, self.floor = float(factor), int(warmup), momentum, floor
        self.levels = {}
        self.seen = 0

    def after_step(self):
        it = self.trainer.iter
        losses = {k: v for k, (v, i) in self.trainer.storage.latest().items()
                  if i == it and (k.startswith("loss") or k == "total_loss")}
        if not losses:  # non-main processes: the losses are logged on the main one
            return
        total_level = self.levels.get("total_loss", 0.0)
        if self.seen >= self.warmup:
            worst = None
            for k, v in losses.items():
                if k not in self.levels:  # a term's first value sets its level
                    continue
                level = max(self.levels.get(k, 0.0), self.floor * total_level, 1e-12)
                if v > self.factor * level and (worst is None or v / level > worst[1] / worst[2]):
                    worst = (k, v, level)
            if worst is not None:
                k, v, level = worst
                raise TrainingDiverged(
                    f"training diverged at iteration {it}: {k} = {v:.4g} is more than {self.factor:g} x its running "
                    f"level {level:.4g} (SOLVER.DIVERGENCE_FACTOR; lower SOLVER.BASE_LR, or set the factor to 0 to "
                    "disable the check)")
        for k, v in losses.items():
            old = self.levels.get(k)
            self.levels[k] = v if old is None else self.momentum * old + (1 - self.momentum) * v
        self.seen += 1


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
