"""reid2's checkpointer: files written atomically, read safely (never running code from them, see
``reid2.utils.serialization``), and weights that fit the model or an error.

Loading (``load`` / ``resume_or_load``) reports matched / missing / unexpected / shape-mismatched
entries and refuses a file that does not fit, naming it and the first offending keys. Two roles:

* ``"checkpoint"`` (default: ``--eval-only``, the tools, ``--resume``): the file must fill every entry of the
  model's state dict, except keys the model declares optional (its ``training_only_modules`` and
  ``optional_weight_prefixes``) and BatchNorm step counters. No shape may differ.
* ``"init"`` (``MODEL.WEIGHTS`` at the start of training): a full checkpoint must fit as above; an
  *initialisation file* (Detectron2 / Caffe2 ImageNet model-zoo ``.pkl``, whose names Detectron2 matches by
  heuristics, or a ``tools/convert_weights.py`` file with ``provenance.complete_prefixes``) must fill the
  prefixes it claims completely: those in its provenance, else the whole ``backbone.`` and every stage
  (``a.b``) it touches. The rest of the model starts from its own initialisation, and the report says so.

``MODEL.WEIGHTS ""`` loads nothing, which is an error in the ``"checkpoint"`` role: an untrained model is asked
for explicitly with ``MODEL.WEIGHTS random`` (:data:`RANDOM_WEIGHTS`). A torchvision ImageNet state dict given
as ``MODEL.WEIGHTS`` is refused with a pointer to ``MODEL.REID_BACKBONE.PRETRAINED`` / ``tools/convert_weights.py``.

Saving never leaves a temporary file behind; a full disk is reported as such, naming the path. On ``--resume``, a
last checkpoint that cannot be read is named and the newest readable one is used, with a warning.
"""
import errno
import glob
import os
import shutil
from typing import Dict, List, Sequence, Tuple

import torch

from reid2.utils.files import atomic_write
from reid2.utils.serialization import SafeCheckpointer

__all__ = ["AtomicCheckpointer", "RANDOM_WEIGHTS", "WeightsMismatchError", "optional_weight_prefixes",
           "summarise_load"]

RANDOM_WEIGHTS = "random"  # MODEL.WEIGHTS value that asks for an untrained model explicitly
_SHOWN = 5  # keys named in an error


class WeightsMismatchError(ValueError):
    """A weight file that does not fit the model it is loaded into."""


def optional_weight_prefixes(model) -> Tuple[str, ...]:
    """Key prefixes ``model`` declares it may lack in a weight file (e.g. a KD student's teacher LUT, which is
    copied from ``MODEL.KD.REID.LUT_SOURCE`` anyway); its ``training_only_modules`` are optional too."""
    return tuple(getattr(model, "optional_weight_prefixes", ()) or ())


def _is_optional(key: str, prefixes: Sequence[str], module_names: Sequence[str]) -> bool:
    """A key of a training-only module (any dotted component equal to its name), under a declared prefix, or
    a BatchNorm step counter."""
    if key.endswith("num_batches_tracked"):  # BatchNorm's step counter holds no weights
        return True
    parts = key.split(".")[:-1]
    return key.startswith(tuple(prefixes)) or any(n in parts for n in module_names)


def _first(keys, n=_SHOWN) -> str:
    keys = list(keys)
    return ", ".join(map(str, keys[:n])) + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def summarise_load(model_keys, file_keys, incompatible, optional) -> Dict[str, List]:
    """``{"matched", "missing", "optional_missing", "unexpected", "shapes"}`` of one load."""
    shapes = list(incompatible.incorrect_shapes)
    bad = {k for k, *_ in shapes}  # removed before loading, so also among torch's missing keys
    missing_all = [k for k in incompatible.missing_keys if k not in bad]
    return {
        "matched": [k for k in model_keys if k in file_keys and k not in bad],
        "missing": [k for k in missing_all if not optional(k)],
        "optional_missing": [k for k in missing_all if optional(k)],
        "unexpected": list(incompatible.unexpected_keys),
        "shapes": [s for s in shapes if not optional(s[0])],
        "optional_shapes": [s for s in shapes if optional(s[0])],
    }


class AtomicCheckpointer(SafeCheckpointer):
    """``DetectionCheckpointer`` whose saves are atomic, whose loads never run code from the file and check that
    the weights fit.

    The checkpoint is written to ``<name>.tmp`` and renamed over ``<name>``; the ``last_checkpoint`` tag is
    updated the same way, only after the checkpoint is complete. ``weights_role`` (``"checkpoint"`` or
    ``"init"``) selects the loading rule of the module docstring.
    """

    weights_role = "checkpoint"

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        try:
            atomic_write(save_file, lambda f: torch.save(data, f))
        except (OSError, RuntimeError) as e:
            full = _disk_full_error(e, save_file)
            if full is None:
                raise
            raise full from e
        self.tag_last_checkpoint(basename)

    def resume_or_load(self, path: str, *, resume: bool = True):
        """Detectron2's, but a last checkpoint that cannot be read is named and the newest readable checkpoint
        of the folder is used instead, with a warning."""
        if resume and self.has_checkpoint():
            last = self.get_checkpoint_file()
            usable = self._newest_readable(last)
            if usable is not None:
                return self.load(usable)
        return super().resume_or_load(path, resume=resume)

    def _newest_readable(self, last):
        candidates = [last] + sorted((p for p in glob.glob(os.path.join(self.save_dir, "model_*.pth"))
                                      if os.path.abspath(p) != os.path.abspath(last)),
                                     key=os.path.getmtime, reverse=True)
        for i, path in enumerate(candidates):
            try:
                self._load_file(path)
            except Exception as e:  # a truncated or corrupt file: torch, zipfile and pickle errors
                self.logger.warning("checkpoint %s cannot be read (%s: %s); trying an earlier one",
                                    path, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
                continue
            if i:
                self.logger.warning("resuming from %s, the newest readable checkpoint (the last one, %s, is corrupt)",
                                    path, last)
            return path
        raise RuntimeError(f"no readable checkpoint in {self.save_dir} (the last one, {last}, is corrupt); "
                           "remove the folder's last_checkpoint to start over")

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        save_file = os.path.join(self.save_dir, "last_checkpoint")
        atomic_write(save_file, lambda f: f.write(last_filename_basename.encode()))

    # ---- loading -----------------------------------------------------------------------------
    def load(self, path: str, checkpointables=None):
        if path == RANDOM_WEIGHTS:
            self.logger.warning("MODEL.WEIGHTS random: the model keeps its random initialisation (untrained)")
            return {}
        if not path:
            if self.weights_role == "checkpoint":
                raise WeightsMismatchError(
                    "no weights given (MODEL.WEIGHTS is empty): pass the trained model's checkpoint "
                    "(MODEL.WEIGHTS PATH, or --weights PATH in the tools), or MODEL.WEIGHTS random to evaluate "
                    "an untrained model on purpose")
            return super().load(path, checkpointables)
        if "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(f"MODEL.WEIGHTS: weight file {path!r} not found")
        self._loading = path
        try:
            return super().load(path, checkpointables)
        finally:
            self._loading = None

    def _load_model(self, checkpoint):
        path = getattr(self, "_loading", None) or "the checkpoint"
        provenance = checkpoint.get("provenance") if isinstance(checkpoint.get("provenance"), dict) else {}
        heuristics = bool(checkpoint.get("matching_heuristics", False))
        raw_keys = list(checkpoint["model"])
        model_keys = list(self.model.state_dict())
        model_key_set = set(model_keys)
        if not heuristics and not any(k.replace("module.", "", 1) in model_key_set for k in raw_keys):
            self._refuse_foreign(path, checkpoint["model"], model_keys)
        incompatible = super()._load_model(checkpoint)  # Detectron2: name heuristics, shape check, load
        file_keys = set(model_keys) - set(incompatible.missing_keys)
        prefixes = optional_weight_prefixes(self.model)
        names = tuple(getattr(self.model, "training_only_modules", ()) or ())
        report = summarise_load(model_keys, file_keys, incompatible,
                                lambda k: _is_optional(k, prefixes, names))
        partial = self.weights_role == "init" and (heuristics or "complete_prefixes" in provenance)
        if partial:
            claimed = self._claimed_prefixes(provenance, report["matched"])
            report["initialised_elsewhere"] = [k for k in report["missing"] if not k.startswith(claimed)]
            report["missing"] = [k for k in report["missing"] if k.startswith(claimed)]
        self._report(path, report, partial)
        return incompatible

    @staticmethod
    def _claimed_prefixes(provenance, matched) -> Tuple[str, ...]:
        """What an initialisation file must fill: its provenance's ``complete_prefixes``, else the whole
        backbone and every stage (first two name components) it fills at least in part."""
        if provenance.get("complete_prefixes"):
            return tuple(provenance["complete_prefixes"])
        stages = {".".join(k.split(".")[:2]) + "." for k in matched}
        return ("backbone.", *sorted(stages))

    def _report(self, path, report, partial):
        self.logger.info(
            "Loaded %s (%s): %d matched, %d missing, %d optional missing, %d unexpected, %d shape-mismatched%s",
            path, "initialisation file" if partial else "checkpoint", len(report["matched"]),
            len(report["missing"]), len(report["optional_missing"]), len(report["unexpected"]),
            len(report["shapes"]) + len(report["optional_shapes"]),
            f", {len(report['initialised_elsewhere'])} keys keep the model's initialisation"
            if partial else "")
        problems = []
        if report["missing"]:
            problems.append(f"{len(report['missing'])} model entries missing from the file: "
                            f"{_first(report['missing'])}")
        if report["shapes"]:
            shown = [f"{k} (file {tuple(a)} vs model {tuple(b)})" for k, a, b in report["shapes"]]
            problems.append(f"{len(shown)} with another shape: {_first(shown)}")
        if not report["matched"]:
            problems.append("no entry of the file matches the model")
        if problems:
            role = ("an initialisation file must fill completely the parts it claims"
                    if partial else "a checkpoint must fill the whole model")
            raise WeightsMismatchError(
                f"{path} does not fit {type(self.model).__name__} ({role}): " + "; ".join(problems)
                + (f"; file has {len(report['unexpected'])} entries the model lacks: "
                   f"{_first(report['unexpected'])}" if report["unexpected"] else "")
                + ". Is it a checkpoint of another model or config?")
        if report["unexpected"]:
            self.logger.warning("%s: %d entries not used by the model: %s", path, len(report["unexpected"]),
                                _first(report["unexpected"]))

    def _refuse_foreign(self, path, weights, model_keys):
        """No key of the file names a model entry: a torchvision backbone file or another model's file."""
        from reid2.modeling.backbones.convert import detect_arch

        tensors = {k: v for k, v in weights.items() if isinstance(v, torch.Tensor)}
        archs = detect_arch(tensors) if len(tensors) == len(weights) else []
        if archs:
            raise WeightsMismatchError(
                f"{path} is a torchvision {archs[0]} ImageNet state dict, not a reid2 / Detectron2 checkpoint, so "
                "it cannot be MODEL.WEIGHTS as it is. For a re-ID backbone set MODEL.REID_BACKBONE.PRETRAINED "
                f"{path}; for a person-search (C4) model convert it first: python tools/convert_weights.py "
                f"--arch {archs[0]} --target person_search {path} OUT.pth, then MODEL.WEIGHTS OUT.pth with the "
                "config keys the tool prints.")
        raise WeightsMismatchError(
            f"{path} does not fit {type(self.model).__name__}: no entry of the file matches the model (file "
            f"keys e.g. {_first(sorted(weights), 3)}; model keys e.g. {_first(model_keys, 3)}). Is it a "
            "checkpoint of another model?")


def _disk_full_error(exc, path):
    """An ``OSError(ENOSPC)`` naming ``path`` when ``exc`` comes from a full disk (torch reports it as
    ``RuntimeError: [enforce fail at inline_container.cc]``), else None."""
    folder = os.path.dirname(os.path.abspath(path))
    full = getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc)
    if not full and isinstance(exc, RuntimeError) and "inline_container" in str(exc):
        try:
            full = shutil.disk_usage(folder).free < 64 * 2**20
        except OSError:
            full = False
    if not full:
        return None
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return OSError(errno.ENOSPC, f"disk full: cannot write checkpoint {path} ({free} on that device); free space "
                                 "or point OUTPUT_DIR elsewhere", path)
