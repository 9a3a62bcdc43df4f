"""MSMT17 (Wei et al., CVPR'18) from its list files, in the V1 or V2 (masked faces) archive layout.

Each list line is ``<path relative to the image folder> <pid>``; the camera is the third field of the file
name (``0000_000_01_0303morning_0015_0.jpg`` → camera 01 → camid 0). Train = ``list_train.txt`` +
``list_val.txt``: the official training set (1,041 ids, 32,621 images). torchreid leaves the 2,373 val
images out unless ``combineall``. Query (11,659) and gallery (82,161) keep their list pids (3,060 ids,
numbered from 0 again, independent of the train ids).
"""
import os
import re
from os.path import join
from typing import List, Tuple

from .base import check_exists, reid_dict, relabel

__all__ = ["MSMT17_LAYOUT", "MSMT17_FOLDERS", "load_msmt17"]

MSMT17_LAYOUT = """\
$REID2_DATASETS/
  MSMT17_V1/              # or MSMT17_V2/ with mask_train_v2/ and mask_test_v2/ instead of train/ and test/
    train/                # 0000/0000_000_01_0303morning_0015_0.jpg ...
    test/
    list_train.txt        # "<path relative to train/> <pid>" per line
    list_val.txt
    list_query.txt        # "<path relative to test/> <pid>" per line
    list_gallery.txt"""

MSMT17_FOLDERS = ("MSMT17_V1", "MSMT17_V2")
_IMAGE_FOLDERS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}
_NAME_PATTERN = re.compile(r"\d+_\d+_(\d{2})_.+\.jpg")
_NAME_EXAMPLE = "0000_000_01_0303morning_0015_0.jpg (pid_index_<camera 01-15>_<date+time>_<frame>_<n>.jpg)"


def _image_folders(root: str) -> Tuple[str, str]:
    """(train, test) image folders: V2's ``mask_*_v2`` when present, else V1's ``train``/``test``."""
    version = "MSMT17_V2" if os.path.isdir(join(root, _IMAGE_FOLDERS["MSMT17_V2"][0])) else "MSMT17_V1"
    return tuple(join(root, folder) for folder in _IMAGE_FOLDERS[version])


def _read_list(list_path: str, image_folder: str, split: str) -> List[dict]:
    check_exists([list_path, image_folder], "MSMT17", MSMT17_LAYOUT)
    dicts = []
    with open(list_path) as f:
        for line_number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not fields[1].isdigit():
                raise ValueError(f"MSMT17: {list_path}:{line_number}: expected '<relative image path> <pid>', "
                                 f"got {line.strip()!r}")
            match = _NAME_PATTERN.fullmatch(os.path.basename(fields[0]))
            if match is None:
                raise ValueError(f"MSMT17: {list_path}:{line_number}: unexpected image name {fields[0]!r}; "
                                 f"expected names like {_NAME_EXAMPLE}")
            dicts.append(reid_dict(join(image_folder, fields[0]), int(fields[1]), int(match.group(1)) - 1, split))
    if dicts:  # one cheap probe catches a list joined to the wrong image folder
        check_exists([dicts[0]["file_name"]], "MSMT17", MSMT17_LAYOUT)
    return dicts


def load_msmt17(root: str, split: str) -> List[dict]:
    """``root`` = the ``MSMT17_V1`` or ``MSMT17_V2`` folder; ``split`` in ``train``, ``test``."""
    if split not in ("train", "test"):
        raise ValueError(f"MSMT17: split must be 'train' or 'test', got {split!r}")
    check_exists([root], "MSMT17", MSMT17_LAYOUT)
    train_folder, test_folder = _image_folders(root)
    if split == "train":
        return relabel(_read_list(join(root, "list_train.txt"), train_folder, "train")
                       + _read_list(join(root, "list_val.txt"), train_folder, "train"))[0]
    return (_read_list(join(root, "list_query.txt"), test_folder, "query")
            + _read_list(join(root, "list_gallery.txt"), test_folder, "gallery"))
