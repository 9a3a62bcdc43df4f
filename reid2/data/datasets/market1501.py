"""Market-1501 (Zheng et al., ICCV'15) and the folder format it shares with DukeMTMC-reID.

Names are ``<pid>_c<cam>s<seq>_<frame>_<box>.jpg``. As in fast-reid / torchreid, pid ``-1`` (junk: boxes
with too little of a person) is dropped everywhere, and pid ``0000`` (distractors: false detections) stays
in the gallery as a negative. Query and gallery keep the original pids; train pids are relabelled.

Multi-query test (``split="multiquery_test"``): the queries are the hand-drawn ``gt_bbox/`` images of every
(pid, camera) pair of ``query/`` — the official multiple-query sets — each one kept as its own query dict
(its metadata ``multi_query=True`` makes ``ReIDEvaluator`` pool their features per (pid, camid),
``TEST.REID.MULTI_QUERY_POOLING`` avg | max: the official multi-query score); the gallery is as usual.
"""
import re
from os.path import join
from typing import List

from .base import check_exists, list_image_files, reid_dict, relabel

__all__ = ["MARKET1501_LAYOUT", "load_market1501", "load_market_style"]

MARKET1501_LAYOUT = """\
$REID2_DATASETS/
  Market-1501-v15.09.15/
    bounding_box_train/   # 12,936 images, e.g. 0002_c1s1_000451_03.jpg
    bounding_box_test/    # 19,732 images, incl. 0000_* distractors and -1_* junk
    query/                # 3,368 images
    gt_bbox/              # 25,259 hand-drawn boxes (only for market1501_multiquery_test)"""

# The real archive has 24 names ending in ".jpg.jpg" (e.g. 1488_c1s6_023021_00.jpg.jpg): accepted.
_MARKET_PATTERN = re.compile(r"(-1|\d{4})_c([1-6])s(\d)_(\d{6})_(\d{2})(?:\.jpg)?\.jpg")
_MARKET_EXAMPLE = "0002_c1s1_000451_03.jpg (pid_c<camera 1-6>s<sequence>_<frame>_<box>.jpg)"
_JUNK_PID = -1
SPLITS = ("train", "test", "multiquery_test")


def load_market_style(root: str, split: str, pattern: "re.Pattern", dataset: str, layout: str,
                      example: str) -> List[dict]:
    """Market-format folders → dicts. ``pattern`` captures the pid (group 1) and the 1-based camera (group 2)."""
    if split not in SPLITS:
        raise ValueError(f"{dataset}: split must be one of {SPLITS}, got {split!r}")
    check_exists([root], dataset, layout)

    def read(folder, split_name):
        return [reid_dict(path, int(m.group(1)), int(m.group(2)) - 1, split_name)
                for path, m in list_image_files(join(root, folder), pattern, ".jpg", dataset, layout, example)
                if int(m.group(1)) != _JUNK_PID]

    if split == "train":
        return relabel(read("bounding_box_train", "train"))[0]
    query = read("query", "query")
    if split == "multiquery_test":
        query_views = {(d["pid"], d["camid"]) for d in query}
        query = [d for d in read("gt_bbox", "query") if (d["pid"], d["camid"]) in query_views]
    return query + read("bounding_box_test", "gallery")


def load_market1501(root: str, split: str) -> List[dict]:
    """``root`` = the ``Market-1501-v15.09.15`` folder; ``split`` in ``train``, ``test``, ``multiquery_test``."""
    return load_market_style(root, split, _MARKET_PATTERN, "Market-1501", MARKET1501_LAYOUT, _MARKET_EXAMPLE)
