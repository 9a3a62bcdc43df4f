"""Hint adaptation layer f_a (Chen et al.; Munjal et al. Eq. 1) and its removal from exported weights.

The adapter maps the student's base feature (res4, stride 16) to the teacher's channel count, e.g.
ResNet-18 res4 = 256 → ResNet-50 res4 = 1024. Chen et al. find it useful even when the channels
already match, so it is always present when hints are on. It exists only for training: inference
models must not carry it, hence :func:`strip_training_only_weights`.
"""
from collections import OrderedDict
from typing import Iterable, Mapping

import torch
from fvcore.nn.weight_init import c2_msra_fill
from torch import nn

from reid2.utils.modules import strip_modules

__all__ = ["HintAdapter", "TRAINING_ONLY_MODULES", "strip_training_only_weights"]

# Attribute names under which a model holds training-only KD modules.
TRAINING_ONLY_MODULES = ("kd_adapter", "hint_adapter")


class HintAdapter(nn.Module):
    """1×1 convolution (+ optional ReLU) from ``student_channels`` to ``teacher_channels``.

    ``relu=True`` follows HqWei's port (conv + ReLU), matching the non-negative range of a
    ResNet stage output; the default is the plain linear map of Chen et al.
    """

    def __init__(self, student_channels: int, teacher_channels: int, relu: bool = False):
        super().__init__()
        if student_channels < 1 or teacher_channels < 1:
            raise ValueError(
                f"HintAdapter: channel counts must be >= 1, got student={student_channels}, "
                f"teacher={teacher_channels}"
            )
        self.conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=1)
        self.relu = relu
        c2_msra_fill(self.conv)

    def forward(self, student_feat: torch.Tensor) -> torch.Tensor:
        out = self.conv(student_feat)
        return torch.relu(out) if self.relu else out


def strip_training_only_weights(
    state_dict: Mapping[str, torch.Tensor], module_names: Iterable[str] = TRAINING_ONLY_MODULES
) -> "OrderedDict[str, torch.Tensor]":
    """A copy of ``state_dict`` without the entries of the named training-only modules (see ``strip_modules``).
    Pass extra names (e.g. the attribute holding a teacher) to drop those too."""
    return strip_modules(state_dict, module_names)
