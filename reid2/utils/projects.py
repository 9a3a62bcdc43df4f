"""Import the packages under ``projects/`` so their registrations happen (like D2's projects)."""
import importlib
import logging
import sys
from pathlib import Path

PROJECTS_DIR = Path(__file__).resolve().parents[2] / "projects"


def import_projects(projects_dir=PROJECTS_DIR):
    """Import every package ``projects/<Name>/<pkg>/__init__.py``; returns the module names."""
    imported = []
    if not Path(projects_dir).is_dir():
        return imported
    for project in sorted(Path(projects_dir).iterdir()):
        if not project.is_dir():
            continue
        for pkg in sorted(project.iterdir()):
            if (pkg / "__init__.py").is_file() and pkg.name not in ("tests", "configs"):
                if str(project) not in sys.path:
                    sys.path.insert(0, str(project))
                importlib.import_module(pkg.name)
                imported.append(pkg.name)
    logging.getLogger(__name__).debug("imported projects: %s", imported)
    return imported


def import_modules(names):
    """Import user modules (``--import`` / ``REID2.IMPORTS``): a downstream package's registrations."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ImportError(f"cannot import {name!r} (from --import / REID2.IMPORTS): {e}") from e
