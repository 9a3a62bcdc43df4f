"""VIPeR (Gray et al., PETS'07): 632 identities, one image per camera, ``cam_{a,b}/<id>_<angle>.bmp``.

Protocol: 10 seeded random splits of the ids into halves (316 train / 316 test for the full set; with
fewer pairs each half is ``num_ids // 2``). Train uses both cameras; the test queries are the ``cam_a``
images (camid 0) and the gallery the ``cam_b`` images (camid 1), one direction per split. torchreid also
evaluates the reverse direction (camB→camA) as a second sub-split and averages the two; here the splits
come from ``numpy.random.default_rng([seed, split_index])``, not torchreid's cached ``splits.json``, so
per-split numbers are comparable only as averages over the 10 splits.
"""
import re
from os.path import join
from typing import List

from .base import check_exists, list_image_files, two_camera_split

__all__ = ["VIPER_LAYOUT", "load_viper"]

VIPER_LAYOUT = """\
$REID2_DATASETS/
  VIPeR/
    cam_a/                # 632 images, e.g. 000_45.bmp (identity_angle)
    cam_b/                # 632 images of the same identities, e.g. 000_90.bmp"""

_VIPER_PATTERN = re.compile(r"(\d{3})_(\d{1,3})\.bmp")
_VIPER_EXAMPLE = "000_45.bmp (<3-digit identity>_<viewing angle>.bmp)"


def _read_camera(root: str, folder: str) -> dict:
    """identity → file of one camera folder (VIPeR has exactly one image per identity and camera)."""
    files = {}
    for path, match in list_image_files(join(root, folder), _VIPER_PATTERN, ".bmp", "VIPeR", VIPER_LAYOUT,
                                        _VIPER_EXAMPLE):
        pid = int(match.group(1))
        if pid in files:
            raise ValueError(f"VIPeR: identity {pid:03d} has two images in {join(root, folder)}: "
                             f"{files[pid]} and {path}")
        files[pid] = path
    return files


def load_viper(root: str, split_index: int, split: str, seed: int = 0) -> List[dict]:
    """``root`` = the ``VIPeR`` folder; ``split`` in ``train``, ``test`` (cam_a queries, cam_b gallery)."""
    check_exists([root], "VIPeR", VIPER_LAYOUT)
    cam_a, cam_b = _read_camera(root, "cam_a"), _read_camera(root, "cam_b")
    unpaired = sorted(set(cam_a) ^ set(cam_b))
    if unpaired:
        raise ValueError(f"VIPeR: identities {unpaired[:5]} (of {len(unpaired)}) have an image in only one of "
                         f"{join(root, 'cam_a')} and {join(root, 'cam_b')}; every identity needs one image in each")
    records = [(cam_a[pid], pid, 0) for pid in sorted(cam_a)] + [(cam_b[pid], pid, 1) for pid in sorted(cam_b)]
    return two_camera_split(records, split, split_index, seed, "VIPeR")
