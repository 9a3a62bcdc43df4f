"""DukeMTMC-reID (Zheng et al., ICCV'17): Market-1501's folder format with names ``<pid>_c<cam>_f<frame>.jpg``.

702 training ids; the gallery holds the 702 test ids plus 408 distractor ids (real pids, no junk).
"""
import re
from typing import List

from .market1501 import load_market_style

__all__ = ["DUKEMTMC_LAYOUT", "load_dukemtmc"]

DUKEMTMC_LAYOUT = """\
$REID2_DATASETS/
  DukeMTMC-reID/
    bounding_box_train/   # 16,522 images, e.g. 0001_c2_f0046182.jpg
    bounding_box_test/    # 17,661 images (incl. 408 distractor identities)
    query/                # 2,228 images"""

_DUKE_PATTERN = re.compile(r"(\d{4})_c([1-8])_f(\d{7})\.jpg")
_DUKE_EXAMPLE = "0001_c2_f0046182.jpg (pid_c<camera 1-8>_f<frame>.jpg)"


def load_dukemtmc(root: str, split: str) -> List[dict]:
    """``root`` = the ``DukeMTMC-reID`` folder; ``split`` in ``train``, ``test``."""
    if split not in ("train", "test"):
        raise ValueError(f"DukeMTMC-reID: split must be 'train' or 'test', got {split!r}")
    return load_market_style(root, split, _DUKE_PATTERN, "DukeMTMC-reID", DUKEMTMC_LAYOUT, _DUKE_EXAMPLE)
