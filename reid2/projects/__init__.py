"""``reid2.projects.<pkg>``: the paper projects of a reid2 checkout, imported by name (as Detectron2 does).

The core never imports a project. A config that needs one names it in ``REID2.IMPORTS`` (e.g.
``["reid2.projects.dsa"]``); the entry points import those modules before merging the config, so the
project's keys, models and trainers exist when the YAML is read. Only the projects in the explicit
map below resolve, and only from a source checkout (a wheel of reid2 ships no ``projects/``).
"""
import importlib.abc
import importlib.util
import sys
from pathlib import Path

__all__ = ["PROJECTS", "PROJECT_ROOT", "project_dir"]

# import name -> folder under projects/ (the folder holds README, configs/, <pkg>/, tests/, bench/).
PROJECTS = {"dsa": "DSA", "slsr": "SLSR", "rsl": "UnsupervisedRSL"}
PROJECT_ROOT = Path(__file__).resolve().parents[2] / "projects"


def project_dir(name: str) -> Path:
    """``projects/<Folder>`` of the project imported as ``reid2.projects.<name>``."""
    if name not in PROJECTS:
        raise KeyError(f"unknown reid2 project {name!r}; known: {', '.join(sorted(PROJECTS))}")
    return PROJECT_ROOT / PROJECTS[name]


class _ProjectsFinder(importlib.abc.MetaPathFinder):
    """Resolves ``reid2.projects.<pkg>`` to ``projects/<Folder>/<pkg>/__init__.py``."""

    def find_spec(self, name, path, target=None):
        parts = name.split(".")
        if len(parts) != 3 or parts[:2] != ["reid2", "projects"] or parts[2] not in PROJECTS:
            return None
        init = project_dir(parts[2]) / parts[2] / "__init__.py"
        if not init.is_file():
            return None
        return importlib.util.spec_from_file_location(name, init)


if not any(isinstance(f, _ProjectsFinder) for f in sys.meta_path):
    sys.meta_path.append(_ProjectsFinder())
