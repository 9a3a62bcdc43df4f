"""How many training identities a classifier (re-ID) or lookup table (OIM) needs: one rule for every config key.

The config value when > 0; else, per training set, the count its loader recorded in the metadata; else a count
over its dicts. The two kinds of training data differ only in where the ids are (:data:`IDENTITY_COUNTS`).
"""
from dataclasses import dataclass
from typing import Callable, List

from detectron2.data import DatasetCatalog, MetadataCatalog

__all__ = ["IDENTITY_COUNTS", "IdentityCount", "num_train_classes", "num_train_identities"]


@dataclass(frozen=True)
class IdentityCount:
    """Where a config key's identity count comes from when the key is 0."""

    metadata_key: str  # the dataset metadata field that holds it
    count: Callable[[List[dict]], int]  # the count over one set's dicts when the metadata lacks it
    all_sets: bool  # sum over DATASETS.TRAIN (combined with offset ids) or the first set only


def _distinct_pids(dicts):
    return len({d["pid"] for d in dicts})


def _max_person_id_plus_one(dicts):  # OIM indexes its lookup table by person_id
    return max((a["person_id"] for d in dicts for a in d["annotations"]), default=-1) + 1


IDENTITY_COUNTS = {
    "MODEL.REID.NUM_CLASSES": IdentityCount("num_classes", _distinct_pids, all_sets=True),
    "MODEL.OIM.NUM_PIDS": IdentityCount("num_pids", _max_person_id_plus_one, all_sets=False),
}


def num_train_identities(cfg, key: str) -> int:
    """``cfg``'s value at ``key`` (a key of :data:`IDENTITY_COUNTS`) when > 0, else the training sets' count."""
    if key not in IDENTITY_COUNTS:
        raise KeyError(f"num_train_identities: unknown key {key!r}; known: {sorted(IDENTITY_COUNTS)}")
    node = cfg
    for part in key.split("."):
        node = node[part]
    if node > 0:
        return int(node)
    rule = IDENTITY_COUNTS[key]
    names = list(cfg.DATASETS.TRAIN) if rule.all_sets else list(cfg.DATASETS.TRAIN)[:1]
    if not names:
        raise ValueError(f"{key} is 0 and DATASETS.TRAIN is empty: set {key}")
    total = 0
    for name in names:
        # Load first: loaders (re)write the metadata for the current dataset root, so a value left by a set read
        # from another root is never used.
        dicts = DatasetCatalog.get(name)
        n = MetadataCatalog.get(name).get(rule.metadata_key, None)
        total += n if n is not None else rule.count(dicts)
    if total < 1:
        raise ValueError(f"{key} is 0 and {', '.join(names)} has no labelled identity: set {key}")
    return int(total)


def num_train_classes(cfg) -> int:
    """MODEL.REID.NUM_CLASSES, or the number of training identities when it is 0."""
    return num_train_identities(cfg, "MODEL.REID.NUM_CLASSES")
