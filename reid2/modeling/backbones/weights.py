"""Load ImageNet weights from a LOCAL file into a re-ID backbone; nothing is ever downloaded.

Accepted files:

* torchvision ``.pth`` / ``.pt`` state dicts (the model-zoo files, or checkpoints holding one
  under ``"state_dict"`` / ``"model"``), including legacy (pre-zip) torch pickles;
* Detectron2 ``.pkl`` files: model-zoo format (``{"model": {name: ndarray}, "__author__": ...}``,
  e.g. the output of Detectron2's ``convert-torchvision-to-d2.py``) or Caffe2/Detectron1 blobs
  (``res2_0_branch2a_w`` ...), which are renamed with Detectron2's ``convert_c2_detectron_names``.

Each backbone maps older or foreign key layouts onto its own module names in
``remap_pretrained_keys(state_dict)``; loading and the missing/unexpected/shape-mismatch report
go through Detectron2's ``DetectionCheckpointer``. Note that MSRA's Caffe2 ResNets (``R-50.pkl``)
expect BGR 0-255 inputs and put the stride in the 1×1 conv, unlike torchvision's.

Files are read with ``reid2.utils.serialization`` (tensors, arrays and plain containers only): a file that
pickles anything else (e.g. a whole ``nn.Module``) is refused unless ``REID2_TRUST_PICKLE=1``.
"""
import logging
import os
from typing import Dict

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import convert_c2_detectron_names
from fvcore.common.checkpoint import _IncompatibleKeys, _strip_prefix_if_present
from torch import nn

from reid2.utils.serialization import load_checkpoint_file, load_torch_file

logger = logging.getLogger(__name__)

WHERE_TO_GET_WEIGHTS = (
    "Download ImageNet weights once, on a machine with internet, from the torchvision model zoo "
    "(https://download.pytorch.org/models/<file>: resnet18-f37072fd.pth, resnet34-b627a593.pth, "
    "resnet50-0676ba61.pth, resnet101-63fe2227.pth, resnet152-394f9c45.pth, "
    "densenet121-a639ec97.pth, mobilenet_v2-b0353104.pth) or Detectron2's model zoo "
    "(ImageNetPretrained/torchvision/R-50.pkl), copy it here and set "
    "MODEL.REID_BACKBONE.PRETRAINED to its local path (a torchvision .pth loads as it is, or convert it once "
    "with tools/convert_weights.py --target reid, which checks every tensor)."
)


def _unwrap_state_dict(obj, path: str) -> Dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj:
        raise ValueError(
            f"{path}: expected a non-empty state dict (name -> tensor), got {type(obj).__name__}")
    return dict(obj)


def read_weight_file(path: str, trust: bool = False) -> Dict[str, torch.Tensor]:
    """Return ``{name: tensor}`` from a torchvision / Detectron2 / Caffe2 weight file.

    ``trust=True`` (or ``REID2_TRUST_PICKLE=1``) allows files that pickle more than tensors and arrays."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Backbone weight file not found: {path!r}. {WHERE_TO_GET_WEIGHTS}")
    reader = DetectionCheckpointer(nn.Module())  # only for its converters
    if path.endswith(".pkl"):
        checkpoint = load_checkpoint_file(path, trust=trust)
        weights = checkpoint["model"]
        if checkpoint.get("__author__") == "Caffe2":
            weights, _ = convert_c2_detectron_names(weights)
    else:
        weights = _unwrap_state_dict(load_torch_file(path, trust=trust), path)
    reader._convert_ndarray_to_tensor(weights)  # ValueError names any non-array entry
    _strip_prefix_if_present(weights, "module.")  # saved from a (Distributed)DataParallel model
    return weights


def _is_bn_counter(key: str) -> bool:
    """BatchNorm's step counter: only BN (not FrozenBN/GN) has it, and it holds no weights."""
    return key.endswith("num_batches_tracked")


def load_pretrained_backbone(backbone: nn.Module, path: str, trust: bool = False) -> _IncompatibleKeys:
    """Load the weights in ``path`` into ``backbone``; log what matched, raise if nothing did.

    Returns the ``(missing_keys, unexpected_keys, incorrect_shapes)`` report.
    """
    weights = read_weight_file(path, trust=trust)
    remap = getattr(backbone, "remap_pretrained_keys", None)
    if remap is not None:
        weights = remap(weights)
    checkpointer = DetectionCheckpointer(backbone)
    file_keys = set(weights)
    incompatible = checkpointer._load_model({"model": weights})
    for keys in (incompatible.missing_keys, incompatible.unexpected_keys):
        keys[:] = [k for k in keys if not _is_bn_counter(k)]
    rejected = set(incompatible.unexpected_keys) | {k for k, *_ in incompatible.incorrect_shapes}
    loaded = {k for k in file_keys - rejected if not _is_bn_counter(k)}
    if not loaded:
        raise ValueError(
            f"No tensor of {path} matches {type(backbone).__name__} (file keys e.g. "
            f"{sorted(file_keys)[:3]}, model keys e.g. {list(backbone.state_dict())[:3]}). "
            "Is it the weight file of another architecture?"
        )
    checkpointer._log_incompatible_keys(incompatible)
    logger.debug("Loaded from %s: %s", path, ", ".join(sorted(loaded)))
    logger.info("Loaded %d of %d tensors of %s into %s (%d model tensors missing)", len(loaded),
                len(file_keys), path, type(backbone).__name__, len(incompatible.missing_keys))
    return incompatible
