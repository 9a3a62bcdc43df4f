"""Progress bars for long non-training steps: tqdm on the main process only, shown when stderr is a terminal.

``REID2_PROGRESS=1`` forces the bars on (e.g. in a log file), ``REID2_PROGRESS=0`` turns them off.
"""
import os
import sys

__all__ = ["progress_bar", "progress_enabled"]


def progress_enabled() -> bool:
    flag = os.environ.get("REID2_PROGRESS", "")
    if flag in ("0", "1"):
        enabled = flag == "1"
    else:
        enabled = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    if not enabled:
        return False
    try:
        from detectron2.utils import comm
        return comm.is_main_process()
    except ImportError:  # pragma: no cover
        return True


def progress_bar(iterable=None, total=None, desc=None, unit="it", enabled=None):
    """``tqdm(iterable, total, desc)``, disabled (a no-op wrapper with ``update``/``close``) off the main
    process or when not wanted (see the module docstring)."""
    from tqdm import tqdm

    if enabled is None:
        enabled = progress_enabled()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, leave=False)
