"""The hook that passes the solver's learning rate to modules outside the optimizer (batch-contrastive centers)."""
from types import SimpleNamespace

import torch
from detectron2.solver.lr_scheduler import LRMultiplier
from fvcore.common.param_scheduler import MultiStepParamScheduler
from torch import nn

from reid2.engine.hooks import SolverLRToModules, modules_taking_solver_lr


class _Taker(nn.Module):
    def __init__(self):
        super().__init__()
        self.seen = []

    def set_solver_lr(self, lr):
        self.seen.append(lr)


def test_modules_receive_the_learning_rate_of_each_step_through_the_schedule():
    taker = _Taker()
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(taker))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sched = LRMultiplier(opt, MultiStepParamScheduler([1.0, 0.1, 0.01], milestones=[2, 4], num_updates=6), 6)
    assert modules_taking_solver_lr(model) == [taker]
    hook = SolverLRToModules()
    hook.trainer = SimpleNamespace(model=model, optimizer=opt)
    hook.before_train()
    for _ in range(6):  # as the trainer: before_step, the step, then the LR scheduler hook's step
        hook.before_step()
        opt.step()
        sched.step()
    expected = [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001]
    assert len(taker.seen) == 6 and all(abs(a - b) < 1e-12 for a, b in zip(taker.seen, expected))
