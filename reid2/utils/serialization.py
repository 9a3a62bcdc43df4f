"""Load model files and configs without running code from them.

A pickle (``.pth``, ``.pkl``, DensePose dumps) can call any Python function while it is read, and a YAML
config with ``!!python/...`` tags can too (Detectron2 v0.6 falls back to ``yaml.unsafe_load``). Users fetch
checkpoints and configs from model zoos and strangers, so every reid2 loader goes through this module:

* :func:`load_torch_file`: ``torch.load(weights_only=True)``; files that need more (legacy pickles holding
  NumPy values, DensePose dumps) are read again with :class:`RestrictedUnpickler`.
* :func:`load_pickle_file`: Detectron2 / Caffe2 model-zoo ``.pkl`` files (``encoding="latin1"``, as Detectron2
  reads them) with :class:`RestrictedUnpickler`.
* :func:`load_checkpoint_file`: what ``DetectionCheckpointer._load_file`` returns (``.pkl``, ``.pyth``, ``.pth``),
  read safely; :class:`SafeCheckpointer` is a ``DetectionCheckpointer`` that uses it.
* configs: ``reid2.config.get_cfg()`` returns a ``CfgNode`` whose ``merge_from_file`` (``_BASE_`` included) uses
  ``yaml.safe_load`` only; an unsafe tag is an error (:func:`unsafe_yaml_error`) naming the file and line.

The restricted unpickler admits what ``torch.load(weights_only=True)`` admits (tensors, storages, dtypes,
``torch.Size``, ``OrderedDict``, primitives), plus NumPy arrays, dtypes and scalars, ``set``/``frozenset``/
``bytes``, and stand-in classes a caller names explicitly (``extra_globals``). Anything else is refused with
:class:`UnsafeFileError`, naming the file and the Python global it asked for.

**Trust switch.** A file you trust (you wrote it, or you read it) can be loaded with full unpickling /
``yaml.unsafe_load`` by passing ``trust=True`` to these functions (``allow_unsafe=True`` for
``CfgNode.merge_from_file``), or, for every loader at once (training, tools, configs), by setting the
environment variable ``REID2_TRUST_PICKLE=1``. Every refusal message names both.
"""
import _compat_pickle
import logging
import os
import pickle
import types
from typing import Any, Dict, Mapping, Optional

import torch
import yaml
from detectron2.checkpoint import DetectionCheckpointer

__all__ = [
    "TRUST_ENV", "UnsafeFileError", "RestrictedUnpickler", "trusted", "load_torch_file", "load_pickle_file",
    "load_checkpoint_file", "unsafe_yaml_error", "check_duplicate_yaml_keys", "SafeCheckpointer",
]

logger = logging.getLogger(__name__)

TRUST_ENV = "REID2_TRUST_PICKLE"
_TRUE = ("1", "true", "yes", "on")
_HOW_TO_TRUST = (f"Only if you trust this file (loading it can run arbitrary code), pass trust=True or set the "
                 f"environment variable {TRUST_ENV}=1")


class UnsafeFileError(ValueError):
    """A file asked for something other than tensors, arrays and plain containers; it was not loaded."""


def trusted(trust: bool = False) -> bool:
    """``trust`` or the environment variable ``REID2_TRUST_PICKLE`` set to 1/true/yes/on."""
    return bool(trust) or os.environ.get(TRUST_ENV, "").strip().lower() in _TRUE


# ---------------------------------------------------------------------------------------- restricted unpickler
def _numpy_globals() -> Dict[str, Any]:
    import numpy as np

    core = getattr(np, "_core", None) or np.core  # NumPy 2 pickles name numpy._core, NumPy 1 numpy.core
    out = {"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype}
    for mod in ("numpy.core", "numpy._core"):
        out[f"{mod}.multiarray._reconstruct"] = core.multiarray._reconstruct
        out[f"{mod}.multiarray.scalar"] = core.multiarray.scalar
        out[f"{mod}.numeric._frombuffer"] = core.numeric._frombuffer
    return out


_ALLOWED: Optional[Dict[str, Any]] = None


def _allowed_globals() -> Dict[str, Any]:
    """``"module.name" -> object`` admitted by :class:`RestrictedUnpickler` (built once)."""
    global _ALLOWED
    if _ALLOWED is None:
        from torch import _weights_only_unpickler

        # torch's own allowlist for weights_only=True (private, present since torch 1.13), so both paths agree.
        allowed = dict(_weights_only_unpickler._get_allowed_globals())
        allowed.update(_numpy_globals())
        allowed.update({f"builtins.{t.__name__}": t for t in (set, frozenset, bytes, bytearray, complex)})
        _ALLOWED = allowed
    return _ALLOWED


class RestrictedUnpickler(pickle._Unpickler):
    """A pickle reader that can build only tensors, arrays, dtypes, plain containers and primitives.

    It resolves globals from an allowlist (never by importing) and refuses ``BUILD`` on a class, so a file
    can neither call arbitrary functions nor patch an admitted class. The pure-Python unpickler is used
    because the C one cannot hook ``BUILD``; the data pickles of model files are small (tensor bytes are
    read by torch outside the pickle), so speed does not matter here.
    """

    source = "<stream>"  # the file name for messages
    extra_globals: Mapping[str, Any] = {}

    def find_class(self, module, name):
        if self.proto < 3 and self.fix_imports:  # Python 2 pickles (Caffe2 .pkl): as pickle.Unpickler does
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        key = f"{module}.{name}"
        obj = self.extra_globals.get(key)
        if obj is None:
            obj = _allowed_globals().get(key)
        if obj is None:
            raise UnsafeFileError(
                f"{self.source}: refused to load: it needs the Python global {key!r}, which is not a tensor, "
                f"array or plain container. {_HOW_TO_TRUST}.")
        return obj

    def _load_build_checked(self):
        if isinstance(self.stack[-2], type):
            raise UnsafeFileError(f"{self.source}: refused to load: it sets attributes of the class "
                                  f"{self.stack[-2].__qualname__}. {_HOW_TO_TRUST}.")
        pickle._Unpickler.load_build(self)

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = _load_build_checked


def _pickle_module(source: str, extra_globals: Optional[Mapping[str, Any]], restricted: bool = True):
    """A ``pickle_module`` for ``torch.load`` whose Unpickler knows the file name and the stand-ins.

    ``restricted=False`` (trusted files) still maps ``extra_globals`` first, then imports as pickle does.
    """
    extra = dict(extra_globals or {})
    if restricted:
        cls = type("RestrictedUnpickler", (RestrictedUnpickler,), {"source": source, "extra_globals": extra})
    else:
        def find_class(self, module, name):
            obj = extra.get(f"{module}.{name}")
            return obj if obj is not None else pickle.Unpickler.find_class(self, module, name)

        cls = type("TrustedUnpickler", (pickle.Unpickler,), {"find_class": find_class})
    return types.SimpleNamespace(Unpickler=cls, load=lambda f, **kw: cls(f, **kw).load(),
                                 __name__="reid2_restricted_pickle" if restricted else "reid2_trusted_pickle")


# ---------------------------------------------------------------------------------------------------- loaders
def load_torch_file(path, *, trust: bool = False, map_location="cpu",
                    extra_globals: Optional[Mapping[str, Any]] = None):
    """``torch.load`` that never runs code from the file unless trusted.

    ``torch.load(weights_only=True)`` first; a file it refuses is read with :class:`RestrictedUnpickler`
    (legacy pickles holding NumPy values, or the stand-ins in ``extra_globals``: ``{"module.Name": class}``);
    a file that needs anything else raises :class:`UnsafeFileError` naming it, unless ``trust=True`` or
    ``REID2_TRUST_PICKLE=1`` (then it is unpickled in full, with ``extra_globals`` still mapped).
    """
    path = os.fspath(path)
    if not extra_globals:
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:  # torch's refusal of a global / opcode
            logger.debug("%s: weights_only load refused (%s); trying the restricted unpickler",
                         path, str(err).splitlines()[0] if str(err) else "")
    try:
        return torch.load(path, map_location=map_location, weights_only=False,
                          pickle_module=_pickle_module(path, extra_globals))
    except UnsafeFileError:
        if not trusted(trust):
            raise
    logger.warning("%s: loading with full unpickling (trusted by trust=True or %s=1)", path, TRUST_ENV)
    return torch.load(path, map_location=map_location, weights_only=False,
                      pickle_module=_pickle_module(path, extra_globals, restricted=False))


def load_pickle_file(path, *, trust: bool = False, encoding: str = "latin1"):
    """A plain pickle (Detectron2 / Caffe2 model-zoo ``.pkl``: dicts of NumPy arrays) read with
    :class:`RestrictedUnpickler`; ``encoding="latin1"`` as Detectron2 reads Python 2 pickles.
    Anything else raises :class:`UnsafeFileError` naming the file, unless trusted."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        unpickler = _pickle_module(path, None).Unpickler(f, encoding=encoding)
        try:
            return unpickler.load()
        except UnsafeFileError:
            if not trusted(trust):
                raise
        logger.warning("%s: loading with full unpickling (trusted by trust=True or %s=1)", path, TRUST_ENV)
        f.seek(0)
        return pickle.load(f, encoding=encoding)


def load_checkpoint_file(filename, *, trust: bool = False) -> Dict[str, Any]:
    """What Detectron2's ``DetectionCheckpointer._load_file`` (v0.6) returns, without unsafe unpickling.

    ``.pkl``: Detectron2 model-zoo dict (``"model"`` + ``"__author__"``) as is, else Caffe2 / Detectron1 blobs
    wrapped as ``{"model": ..., "__author__": "Caffe2", "matching_heuristics": True}``; ``.pyth``: pycls
    ``model_state``; anything else: a torch checkpoint, wrapped as ``{"model": ...}`` without a ``"model"`` key.
    """
    filename = os.fspath(filename)
    if filename.endswith(".pkl"):
        data = load_pickle_file(filename, trust=trust)
        if not isinstance(data, dict):
            raise ValueError(f"{filename}: expected a dict (Detectron2 / Caffe2 model-zoo .pkl), "
                             f"got {type(data).__name__}")
        if "model" in data and "__author__" in data:
            logger.info("Reading a file from '%s'", data["__author__"])
            return data
        if "blobs" in data:  # detection models have "blobs", ImageNet models do not
            data = data["blobs"]
        data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
    loaded = load_torch_file(filename, trust=trust)
    if filename.endswith(".pyth"):  # pycls
        if not isinstance(loaded, dict) or "model_state" not in loaded:
            raise ValueError(f"Cannot load .pyth file {filename}; pycls checkpoints must contain 'model_state'.")
        state = {k: v for k, v in loaded["model_state"].items() if not k.endswith("num_batches_tracked")}
        return {"model": state, "__author__": "pycls", "matching_heuristics": True}
    if not isinstance(loaded, dict):
        raise ValueError(f"{filename}: expected a checkpoint dict (a state dict or {{'model': state dict}}), "
                         f"got {type(loaded).__name__}")
    return loaded if "model" in loaded else {"model": loaded}


class SafeCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` whose files load through :func:`load_checkpoint_file` (trust: the env var)."""

    def _load_file(self, filename):
        return load_checkpoint_file(filename)


# ------------------------------------------------------------------------------------------------------- YAML
def unsafe_yaml_error(filename, err: yaml.YAMLError) -> UnsafeFileError:
    """The refusal for a YAML ``ConstructorError`` (e.g. ``!!python/object/apply``), naming file and line."""
    filename = os.path.normpath(os.fspath(filename))  # a _BASE_ file is named "dir/../base.yaml" by fvcore
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"{filename}, line {mark.line + 1}" if mark is not None else filename
    problem = getattr(err, "problem", None) or str(err)
    return UnsafeFileError(
        f"{where}: not plain YAML ({problem}); config files may only use plain YAML (safe tags), since "
        f"python/... tags run code while the file is read. Only if you trust this file, pass "
        f"merge_from_file(..., allow_unsafe=True) or set the environment variable {TRUST_ENV}=1.")


def check_duplicate_yaml_keys(filename) -> None:
    """Refuse a YAML file that gives a key twice in one mapping: YAML loaders keep the last value and drop the
    first silently (a second ``SOLVER:`` block replaces the whole first one). Reads nodes only (``yaml.compose``:
    no tag is constructed, so this is safe on any file); the error names the file, the key and both lines."""
    filename = os.path.normpath(os.fspath(filename))
    with open(filename) as f:
        root = yaml.compose(f, Loader=yaml.SafeLoader)

    def walk(node, path):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    name = ".".join([*path, key.value])
                    if key.value in seen:
                        raise ValueError(
                            f"{filename}, line {key.start_mark.line + 1}: key {name} is given twice in one mapping "
                            f"(first on line {seen[key.value] + 1}); YAML keeps only the last, so the first would be "
                            "ignored silently. Merge the two into one.")
                    seen[key.value] = key.start_mark.line
                    walk(value, [*path, key.value])
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item, path)

    if root is not None:
        walk(root, [])
