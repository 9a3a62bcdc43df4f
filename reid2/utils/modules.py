"""Model helpers that do not depend on what the model is."""
from torch import nn

__all__ = ["unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside a (Distributed)DataParallel wrapper, or ``model`` itself."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def strip_modules(state_dict, module_names):
    """A copy of ``state_dict`` without the entries of the named sub-modules.

    A key is dropped when one of its dotted module components equals a name in ``module_names``
    (``hint_adapter.conv.weight``, ``backbone.kd_adapter.conv.bias``); ``my_hint_adapter.x`` is kept.
    """
    from collections import OrderedDict

    names = set(module_names)
    return OrderedDict((k, v) for k, v in state_dict.items() if names.isdisjoint(k.split(".")[:-1]))
