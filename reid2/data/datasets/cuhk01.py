"""CUHK01 (Li et al., ACCV'12): 971 identities, ``campus/<4-digit id><3-digit image>.png``.

Images 1-2 come from camera A (camid 0), 3-4 from camera B (camid 1), as in torchreid. Protocol: 10
seeded splits, 485 train ids (both cameras) / 486 test ids with camera-A queries and a camera-B gallery
(torchreid also evaluates B→A; see ``viper.py`` for the split seeding).
"""
import re
from os.path import join
from typing import List

from .base import check_exists, list_image_files, two_camera_split

__all__ = ["CUHK01_LAYOUT", "load_cuhk01"]

CUHK01_LAYOUT = """\
$REID2_DATASETS/
  cuhk01/
    campus/               # 3,884 images 0001001.png ... 0971004.png (id, image 1-2 camera A, 3-4 camera B)"""

_CUHK01_PATTERN = re.compile(r"(\d{4})(00[1-4])\.png")
_CUHK01_EXAMPLE = "0001001.png (<4-digit identity><image 001-004>.png)"


def load_cuhk01(root: str, split_index: int, split: str, seed: int = 0) -> List[dict]:
    """``root`` = the ``cuhk01`` folder; ``split`` in ``train``, ``test`` (camera-A queries, camera-B gallery)."""
    check_exists([root], "CUHK01", CUHK01_LAYOUT)
    records = [(path, int(m.group(1)), (int(m.group(2)) - 1) // 2)
               for path, m in list_image_files(join(root, "campus"), _CUHK01_PATTERN, ".png", "CUHK01",
                                               CUHK01_LAYOUT, _CUHK01_EXAMPLE)]
    return two_camera_split(records, split, split_index, seed, "CUHK01")
