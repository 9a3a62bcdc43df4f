"""Learning-rate schedules that Detectron2 v0.6 lacks, as fvcore ``ParamScheduler``s."""
from fvcore.common.param_scheduler import ParamScheduler


class InverseDecayParamScheduler(ParamScheduler):
    """η_i = η_0 · (1 + γ·i)^(−p), the "inv" policy used by the SLSR paper (i = iteration).

    fvcore schedulers see ``where`` ∈ [0, 1); ``max_iter`` turns it back into an iteration.
    """

    def __init__(self, gamma: float, power: float, max_iter: int):
        self._gamma, self._power, self._max_iter = gamma, power, max_iter

    def __call__(self, where: float) -> float:
        it = where * self._max_iter
        return (1.0 + self._gamma * it) ** (-self._power)
