"""Where the stages write, atomic file writes (reid2's, making parent folders) and the stage-completeness markers.

A stage is complete when its ``DONE.json`` marker exists; the marker is written last (temp file +
rename) and records the settings the outputs depend on, so a half-written stage (no marker) is redone
and a finished stage is never mistaken for one made with other settings.
"""
import json
import logging
import os
from dataclasses import dataclass

from reid2.utils.files import atomic_write

__all__ = ["StagePaths", "stage_paths", "atomic_write_json", "atomic_save", "atomic_write_text", "read_marker",
           "write_marker",
           "StageMismatchError", "stage_done", "check_borrowed"]


@dataclass(frozen=True)
class StagePaths:
    """This run's folders; ``stage1_from`` / ``stage2_from`` are other runs' folders whose stage1/ / stage2/ it
    uses (``SLSR.CLUSTER.FROM_RUN`` / ``SLSR.GAN.FROM_RUN``), "" for its own."""
    work: str
    stage1_from: str = ""
    stage2_from: str = ""

    @property
    def stage1(self):
        return os.path.join(self.stage1_from or self.work, "stage1")

    @property
    def stage2(self):
        return os.path.join(self.stage2_from or self.work, "stage2")

    def owns(self, stage):
        """False for a stage taken from another run (never written or deleted by this one)."""
        return not {"stage1": self.stage1_from, "stage2": self.stage2_from}.get(stage, "")

    @property
    def stage3(self):
        return os.path.join(self.work, "stage3")

    @property
    def clusters(self):
        return os.path.join(self.stage1, "clusters.json")

    @property
    def manifest(self):
        return os.path.join(self.stage2, "manifest.json")


def stage_paths(cfg) -> StagePaths:
    def other(folder):
        return os.path.abspath(folder) if folder else ""

    return StagePaths(os.path.abspath(cfg.SLSR.WORK_DIR or cfg.OUTPUT_DIR), other(cfg.SLSR.CLUSTER.FROM_RUN),
                      other(cfg.SLSR.GAN.FROM_RUN))


class StageMismatchError(RuntimeError):
    pass


def atomic_save(path, write_fn, mode="wb", **open_kwargs):
    """``write_fn(f)`` on a temporary file renamed to ``path`` (``reid2.utils.files.atomic_write``), parent folders
    made first. ``f`` is a file object: pass the format where a writer cannot tell it from a name (PIL, savefig)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write(path, write_fn, mode, **open_kwargs)


def atomic_write_json(path, obj):
    atomic_save(path, lambda f: json.dump(obj, f, indent=1), mode="w")


def atomic_write_text(path, text):
    atomic_save(path, lambda f: f.write(text), mode="w")


def _marker(folder):
    return os.path.join(folder, "DONE.json")


def read_marker(folder):
    try:
        with open(_marker(folder)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def write_marker(folder, settings, **info):
    atomic_write_json(_marker(folder), {"settings": settings, **info})


def check_marker(folder, settings, stage):
    """True when the stage is complete with ``settings``; raises when it was made with other settings."""
    marker = read_marker(folder)
    if marker is None:
        return False
    if marker["settings"] != settings:
        diff = {k: (marker["settings"].get(k), v) for k, v in settings.items() if marker["settings"].get(k) != v}
        raise StageMismatchError(
            f"SLSR {stage}: {folder} was completed with other settings (old, new): {diff}. Use another "
            f"OUTPUT_DIR / SLSR.WORK_DIR, or pass --redo {stage} to recompute it and the stages after it.")
    return True


def check_borrowed(folder, settings, stage, key):
    """A stage taken from another run (``key`` names the config key): it must be complete, and the
    ``settings`` given must equal those it was made with."""
    marker = read_marker(folder)
    if marker is None:
        raise FileNotFoundError(
            f"{key}: {folder} is not a complete {stage} (no DONE.json); run that run's stages first, e.g. "
            f"projects/SLSR/tools/train_net.py --config-file <its config> --stages stage1,stage2")
    diff = {k: (marker["settings"].get(k), v) for k, v in settings.items() if marker["settings"].get(k) != v}
    if diff:
        raise StageMismatchError(f"{key}: {folder} was made with other settings (theirs, this config's): {diff}")
    logging.getLogger("reid2.slsr").info("SLSR %s: taken from %s (%s)", stage, folder, key)


def stage_done(folder, settings, stage, force=False):
    """The opening of every stage: True (and logged) when ``stage`` is complete in ``folder`` with ``settings``
    and not ``force``d; otherwise ``folder`` is made and False."""
    if not force and check_marker(folder, settings, stage):
        logging.getLogger("reid2.slsr").info("SLSR stage %s: complete (%s), skipped", stage[len("stage"):], folder)
        return True
    os.makedirs(folder, exist_ok=True)
    return False
