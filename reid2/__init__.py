"""reid2: person re-identification and end-to-end person search on Detectron2.

Importing ``reid2`` registers every dataset, backbone, meta-architecture and head with
Detectron2's registries.
"""
import importlib
import sys
import warnings

# Detectron2 v0.6 scripts a few functions with torch.jit.script at import; PyTorch 2.14 warns.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*deprecated", category=FutureWarning)

__version__ = "0.1.0"

from .utils.compat import patch_pillow  # noqa: E402  before Detectron2 is imported (Pillow >= 10)

patch_pillow()


def _ensure_detectron2_C():
    """Install the compiled-op stub when Detectron2 was installed without ``_C``."""
    try:
        importlib.import_module("detectron2._C")
    except ImportError:
        from .utils import d2_C_stub

        sys.modules["detectron2._C"] = d2_C_stub


_ensure_detectron2_C()


def _register_all():
    """Import the modules whose import registers datasets, models, trainers."""
    from . import data, engine, modeling, projects  # noqa: F401


_register_all()
