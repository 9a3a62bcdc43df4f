"""Names newer library releases removed that Detectron2 v0.6 still uses.

Pillow 10 removed ``Image.LINEAR``, ``Image.CUBIC`` and ``Image.ANTIALIAS`` (aliases of
``BILINEAR``, ``BICUBIC`` and ``LANCZOS`` since Pillow 2.7/9.1). Detectron2 v0.6 uses
``Image.LINEAR`` as a default argument (``ExtentTransform``), so importing
``detectron2.data.transforms`` fails with Pillow >= 10 unless the name exists again. There is no
Pillow < 10 wheel for Python >= 3.12, so reid2 restores the names instead of pinning Pillow.
Leaf module: imports nothing of reid2 or Detectron2.
"""
import warnings

from PIL import Image

# removed name -> the name Pillow >= 10 keeps (same resampling filter)
PIL_ALIASES = {"LINEAR": "BILINEAR", "CUBIC": "BICUBIC", "ANTIALIAS": "LANCZOS"}


def patch_pillow(image_module=Image):
    """Define the removed ``PIL.Image`` names where missing; returns the names it added."""
    added = []
    for old, new in PIL_ALIASES.items():
        with warnings.catch_warnings():  # Pillow 9.1-9.5 still has them, with a DeprecationWarning
            warnings.simplefilter("ignore")
            present = hasattr(image_module, old)
        if not present:
            setattr(image_module, old, getattr(image_module, new))
            added.append(old)
    return added
