"""Print the versions reid2 runs with: ``python -m reid2.collect_env``."""
import importlib
import platform
import sys

from tabulate import tabulate


def _version(name):
    try:
        mod = importlib.import_module(name)
    except Exception as e:
        return f"not importable ({type(e).__name__}: {e})"
    return getattr(mod, "__version__", "unknown")


def detectron2_ops_status():
    """'compiled' for an official build, otherwise a sentence saying what is missing."""
    try:
        c = importlib.import_module("detectron2._C")
    except ImportError as e:
        return f"missing ({e})"
    if getattr(c, "REID2_STUB", False):
        return "not compiled (reid2 stub: rotated boxes / deformable conv unavailable)"
    return "compiled"


def collect_env_info():
    import torch

    import reid2  # noqa: F401  (installs the _C stub if needed)

    rows = [
        ("Python", sys.version.split()[0]),
        ("Platform", platform.platform()),
        ("reid2", _version("reid2")),
        ("torch", _version("torch")),
        ("torchvision", _version("torchvision")),
        ("detectron2", _version("detectron2")),
        ("detectron2 compiled ops", detectron2_ops_status()),
        ("CUDA available", str(torch.cuda.is_available())),
        ("GPU", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"),
        ("numpy", _version("numpy")),
        ("scipy", _version("scipy")),
        ("scikit-learn", _version("sklearn")),
        ("opencv", _version("cv2")),
        ("Pillow", _version("PIL")),
        ("fvcore", _version("fvcore")),
    ]
    return tabulate(rows, tablefmt="simple")


if __name__ == "__main__":
    print(collect_env_info())
