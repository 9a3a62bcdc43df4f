"""Mixed-precision training step for every reid2 trainer (``SOLVER.AMP.ENABLED``).

Detectron2 v0.6's ``AMPTrainer`` is fp16 + grad scaler on CUDA only (it asserts CUDA). ``ReID2AMPTrainer`` picks the
autocast device from the model and the dtype from ``SOLVER.AMP.DTYPE``: ``auto`` is float16 on CUDA (with a
``GradScaler``: fp16 gradients underflow without one) and bfloat16 elsewhere (bf16 has fp32's exponent range, so no
scaler; CPUs run bf16 autocast, not fp16). The scaler's state is part of the trainer's ``state_dict`` (Detectron2's),
so ``--resume`` continues with the same loss scale.
"""
import logging
import time

import torch
from detectron2.engine import AMPTrainer, SimpleTrainer

__all__ = ["AMP_DTYPES", "ReID2AMPTrainer", "amp_dtype"]

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def amp_dtype(name: str, device_type: str) -> torch.dtype:
    """``SOLVER.AMP.DTYPE`` (``auto`` | ``float16`` | ``bfloat16``) for a device type."""
    if name == "auto":
        return torch.float16 if device_type == "cuda" else torch.bfloat16
    if name not in AMP_DTYPES:
        raise ValueError(f"SOLVER.AMP.DTYPE must be auto, float16 or bfloat16, got {name!r}")
    return AMP_DTYPES[name]


def _model_device_type(model) -> str:
    param = next(model.parameters(), None)
    return param.device.type if param is not None else "cpu"


class ReID2AMPTrainer(AMPTrainer):
    """``AMPTrainer`` with the autocast device and dtype chosen by the model's device and ``SOLVER.AMP.DTYPE``."""

    def __init__(self, model, data_loader, optimizer, dtype: str = "auto"):
        self.device_type = _model_device_type(model)
        self.dtype = amp_dtype(dtype, self.device_type)
        scaler = torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)
        super().__init__(model, data_loader, optimizer, grad_scaler=scaler)
        logging.getLogger(__name__).info("mixed precision: %s autocast on %s, grad scaler %s", self.dtype,
                                         self.device_type, "on" if scaler.is_enabled() else "off")

    def run_step(self):
        """Detectron2's AMP step, with ``torch.autocast(device_type, dtype)`` instead of CUDA's fp16 only."""
        assert self.model.training, "[ReID2AMPTrainer] model was changed to eval mode!"
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            loss_dict = self.model(data)
            if isinstance(loss_dict, torch.Tensor):
                losses = loss_dict
                loss_dict = {"total_loss": loss_dict}
            else:
                losses = sum(loss_dict.values())

        self.optimizer.zero_grad()
        self.grad_scaler.scale(losses).backward()
        self._write_metrics(loss_dict, data_time)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def load_state_dict(self, state_dict):
        """A disabled scaler (bf16) saves ``{}``; resuming such a run with an fp16 scaler starts a fresh scale."""
        scaler_state = state_dict.get("grad_scaler")
        if self.grad_scaler.is_enabled() and not scaler_state:
            logging.getLogger(__name__).warning("the checkpoint has no grad-scaler state (saved without fp16 AMP): "
                                                "the loss scale starts afresh")
            SimpleTrainer.load_state_dict(self, state_dict)
            return
        super().load_state_dict(state_dict)
