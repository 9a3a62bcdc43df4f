"""Modules a config needs imported before it is merged: ``REID2.IMPORTS`` and ``--import``.

A downstream package (or a reid2 project) registers its config keys, models and trainers when it is
imported, so it must be imported *before* the YAML that uses those keys is merged. The entry points
therefore read ``REID2.IMPORTS`` from the YAML file itself (following ``_BASE_``) first.
"""
import importlib
import os
from typing import Iterable, List

import yaml

__all__ = ["declared_imports", "import_modules"]


def _read_yaml(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    return data


def declared_imports(config_file: str) -> List[str]:
    """``REID2.IMPORTS`` of ``config_file`` as the merge will see it (the file overrides its ``_BASE_``)."""
    data = _read_yaml(config_file)
    imports = None
    base = data.get("_BASE_")
    if base:
        if base.startswith("~"):
            base = os.path.expanduser(base)
        if not os.path.isabs(base):
            base = os.path.join(os.path.dirname(config_file), base)
        imports = declared_imports(base)
    own = (data.get("REID2") or {}).get("IMPORTS")
    return list(own) if own is not None else list(imports or [])


def import_modules(names: Iterable[str]) -> None:
    """Import user modules (``--import`` / ``REID2.IMPORTS``): their registrations and config keys."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ImportError(f"cannot import {name!r} (from --import / REID2.IMPORTS): {e}") from e
