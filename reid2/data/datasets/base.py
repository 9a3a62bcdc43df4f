"""Shared pieces of the re-ID dataset loaders: the datasets root, the dict format, relabelling, seeded
identity splits, clear errors for missing folders and odd file names, and registration.

Every loader returns a list of dicts::

    {"file_name": absolute path, "pid": int, "camid": int (0-based),
     "split": "train" | "query" | "gallery", "image_id": file stem}

Train dicts also carry ``"orig_pid"`` and have ``pid`` relabelled to 0..N-1 (sorted by original pid).
Query/gallery dicts keep the original pids, so the evaluator can compare ids across the two sides.
"""
import functools
import logging
import os
import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "dataset_root",
    "check_exists",
    "list_image_files",
    "reid_dict",
    "relabel",
    "combine_train_sets",
    "seeded_id_split",
    "two_camera_split",
    "register_reid_dataset",
    "update_metadata",
]

_logger = logging.getLogger(__name__)


def dataset_root() -> str:
    """``$REID2_DATASETS`` (default ``./datasets``) as an absolute path, read now (not at import time)."""
    return os.path.abspath(os.path.expanduser(os.environ.get("REID2_DATASETS", "datasets")))


def check_exists(paths: Iterable[str], dataset: str, layout_hint: str) -> None:
    """Raise FileNotFoundError naming the first missing path together with the expected layout."""
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{dataset}: {path} not found.\nExpected dataset structure for {dataset} "
                f"(see datasets/README.md; $REID2_DATASETS is {dataset_root()}):\n{layout_hint}")


def list_image_files(folder: str, pattern: "re.Pattern", extension: str, dataset: str,
                     layout_hint: str, example: str) -> List[Tuple[str, "re.Match"]]:
    """``(path, match)`` for every ``*extension`` file of ``folder`` (sorted by name).

    Files with another extension (``Thumbs.db``, ``.DS_Store`` of the real archives) are skipped with a
    warning; an image whose name does not fully match ``pattern`` is an error naming it.
    """
    check_exists([folder], dataset, layout_hint)
    names = sorted(os.listdir(folder))
    images = [n for n in names if n.lower().endswith(extension)]
    if len(images) < len(names):
        skipped = sorted(set(names) - set(images))
        _logger.warning("%s: skipped %d non-%s entries in %s (e.g. %s)", dataset, len(skipped), extension,
                        folder, skipped[0])
    matches = []
    for name in images:
        match = pattern.fullmatch(name)
        if match is None:
            raise ValueError(f"{dataset}: unexpected file name {os.path.join(folder, name)}; expected names "
                             f"like {example} (pattern {pattern.pattern})")
        matches.append((os.path.join(folder, name), match))
    return matches


def reid_dict(file_name: str, pid: int, camid: int, split: str) -> dict:
    return {"file_name": file_name, "pid": int(pid), "camid": int(camid), "split": split,
            "image_id": os.path.splitext(os.path.basename(file_name))[0]}


def relabel(dicts: Sequence[dict]) -> Tuple[List[dict], Dict[int, int]]:
    """Copies of ``dicts`` with ``pid`` mapped to 0..N-1 in sorted original order, plus that mapping.

    ``orig_pid`` keeps the original label (an existing ``orig_pid`` is preserved).
    """
    mapping = {pid: label for label, pid in enumerate(sorted({d["pid"] for d in dicts}))}
    relabelled = [{**d, "pid": mapping[d["pid"]], "orig_pid": d.get("orig_pid", d["pid"])} for d in dicts]
    return relabelled, mapping


def combine_train_sets(train_sets: Sequence[Sequence[dict]], names: Optional[Sequence[str]] = None) -> List[dict]:
    """Concatenate training sets with disjoint, contiguous pids: set k's ids follow those of sets 0..k-1.

    Each dict records ``"dataset"``: ``names[k]`` when given, else the position ``k``. Camera ids are left
    as they are (cameras of different sets share numbers).
    """
    if names is not None and len(names) != len(train_sets):
        raise ValueError(f"combine_train_sets: {len(names)} names for {len(train_sets)} training sets")
    combined, offset = [], 0
    for index, dicts in enumerate(train_sets):
        relabelled, mapping = relabel(dicts)
        tag = index if names is None else names[index]
        combined.extend({**d, "pid": d["pid"] + offset, "dataset": tag} for d in relabelled)
        offset += len(mapping)
    return combined


def seeded_id_split(ids: Iterable[int], num_train: int, seed: int, split_index: int) -> Tuple[List[int], List[int]]:
    """Split identities into ``num_train`` training and the remaining test ids, reproducibly.

    Each ``(seed, split_index)`` gets its own generator, so a split never depends on the others or on
    global NumPy state. Both lists are sorted.
    """
    ids = np.unique(np.asarray(list(ids)))
    if not 0 < num_train < len(ids):
        raise ValueError(f"cannot split {len(ids)} identities into {num_train} train ids and a non-empty test set")
    if split_index < 0:
        raise ValueError(f"split_index must be >= 0, got {split_index}")
    order = np.random.default_rng([seed, split_index]).permutation(len(ids))
    return sorted(ids[order[:num_train]].tolist()), sorted(ids[order[num_train:]].tolist())


def two_camera_split(records: Sequence[Tuple[str, int, int]], split: str, split_index: int, seed: int,
                     dataset: str) -> List[dict]:
    """VIPeR/CUHK01-style protocol on ``(file_name, pid, camid in {0, 1})`` records.

    Half the ids (``num_ids // 2``, i.e. 316 of VIPeR's 632 and 485 of CUHK01's 971) train with both
    cameras; the test ids give the queries (camera 0) and the gallery (camera 1).
    """
    if split not in ("train", "test"):
        raise ValueError(f"{dataset}: split must be 'train' or 'test', got {split!r}")
    pids = {pid for _, pid, _ in records}
    train_ids, _ = seeded_id_split(pids, len(pids) // 2, seed, split_index)
    train_ids = set(train_ids)
    if split == "train":
        return relabel([reid_dict(f, pid, cam, "train") for f, pid, cam in records if pid in train_ids])[0]
    test = [(f, pid, cam) for f, pid, cam in records if pid not in train_ids]
    return ([reid_dict(f, pid, cam, "query") for f, pid, cam in test if cam == 0]
            + [reid_dict(f, pid, cam, "gallery") for f, pid, cam in test if cam == 1])


def update_metadata(name: str, **values) -> None:
    """Set metadata facts that are only known at load time, replacing stale values.

    ``Metadata.set`` refuses to change a value; the root (and so the counts) can change between loads.
    """
    from detectron2.data import MetadataCatalog

    meta = MetadataCatalog.get(name)
    for key, value in values.items():
        if getattr(meta, key, value) != value:
            delattr(meta, key)
        setattr(meta, key, value)


def _load_and_describe(name: str, func: Callable[[], List[dict]]) -> List[dict]:
    """Run the loader, then record ``num_classes`` / ``num_query`` of what was actually loaded."""
    from detectron2.data import MetadataCatalog

    dicts = func()
    facts = {}
    train_pids = {d["pid"] for d in dicts if d.get("split") == "train"}
    if train_pids:
        facts["num_classes"] = len(train_pids)
    num_query = sum(d.get("split") == "query" for d in dicts)
    if num_query:
        facts["num_query"] = num_query
    meta = MetadataCatalog.get(name)
    for key, value in facts.items():
        registered = getattr(meta, key, value)
        if registered != value:
            _logger.warning("%s: loaded %s=%d where the metadata said %d (an incomplete copy, a subset, or "
                            "another root?); metadata updated", name, key, value, registered)
    update_metadata(name, **facts)
    return dicts


def register_reid_dataset(name: str, func: Callable[[], List[dict]], **metadata) -> None:
    """``DatasetCatalog.register`` + ``MetadataCatalog`` (``evaluator_type="reid"`` and ``protocol="market"`` unless
    given: the evaluator and ranking protocol ``reid2.evaluation.build_evaluator`` picks for it).

    Loading refreshes ``num_classes`` (distinct train pids) and ``num_query`` from the loaded dicts,
    warning when they differ from the registered values. Registering a name twice is an error, as in
    Detectron2.
    """
    from detectron2.data import DatasetCatalog, MetadataCatalog

    DatasetCatalog.register(name, functools.partial(_load_and_describe, name, func))
    MetadataCatalog.get(name).set(**{"evaluator_type": "reid", "protocol": "market", **metadata})
