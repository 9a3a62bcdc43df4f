"""Mixed-precision helpers: regions that must stay fp32 inside an autocast step."""
import contextlib

import torch

__all__ = ["at_least_fp32", "fp32_region"]


def fp32_region(tensor: torch.Tensor):
    """Autocast switched off for ``tensor``'s device (a no-op context outside autocast).

    Memory-bank similarities (the OIM table and queue) and distillation targets are computed inside it, on
    ``.float()`` inputs: under autocast a matrix product would run in fp16 / bf16, and bf16 keeps 8 bits of
    mantissa, too few for logits scaled by 30 or for soft targets at temperature 10.
    """
    device_type = tensor.device.type
    if not torch.is_autocast_enabled(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)


def at_least_fp32(*tensors: torch.Tensor):
    """The tensors with fp16 / bf16 ones cast to fp32 (fp32 and fp64 kept): losses read autocast outputs in fp32."""
    out = tuple(t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in tensors)
    return out if len(out) > 1 else out[0]
