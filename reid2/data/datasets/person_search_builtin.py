"""Registers the person-search datasets under ``$REID2_DATASETS`` (default ``./datasets``).

==============================  ===================================  ==========================================
name                            folder                               metadata beyond ``thing_classes``
==============================  ===================================  ==========================================
cuhk_sysu_train                 CUHK-SYSU                            num_pids=5532
cuhk_sysu_test                  CUHK-SYSU                            protocol="cuhk_sysu", gallery_size=100
prw_train                       PRW                                  num_pids=483
prw_test                        PRW (query_info.txt)                 protocol="prw", gallery_size=-1
prw_mini_test                   PRW (prwmini_query_info.txt)         protocol="prw_mini", gallery_size=-1
synthetic_cuhk_sysu_train/test  synthetic/CUHK-SYSU                  as CUHK-SYSU, test gallery_size=50
==============================  ===================================  ==========================================

Test sets carry ``evaluator_type="person_search"`` and ``query_loader``: a callable
``query_loader(gallery_size=...) -> list`` (see ``reid2.evaluation.protocols.get_queries``). The root is read
when a loader runs, not at registration, so ``REID2_DATASETS`` may be set after ``import reid2``.
"""
import functools
import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from .cuhk_sysu import CUHK_SYSU_NUM_TRAIN_PIDS, load_cuhk_sysu, load_cuhk_sysu_queries
from .prw import load_prw, load_prw_queries

__all__ = ["register_all_person_search_datasets", "person_search_root"]

PRW_NUM_TRAIN_PIDS = 483


def person_search_root(folder: str) -> str:
    """``<datasets root>/<folder>``, the datasets root resolved now (``reid2.data.datasets.base`` when present)."""
    try:
        from .base import dataset_root
    except ImportError:
        return os.path.join(os.environ.get("REID2_DATASETS", "datasets"), folder)
    return os.path.join(dataset_root(), folder)


def _cuhk_sysu_split(folder, split):
    return load_cuhk_sysu(person_search_root(folder), split)


def _cuhk_sysu_queries(folder, gallery_size=100):
    return load_cuhk_sysu_queries(person_search_root(folder), gallery_size)


def _prw_split(split):
    return load_prw(person_search_root("PRW"), split)


def _prw_queries(query_file, gallery_size=-1, ignore_cam_id=True):
    return load_prw_queries(person_search_root("PRW"), query_file, gallery_size, ignore_cam_id)


def _test_metadata(protocol, gallery_size, query_loader, **extra):
    return dict(evaluator_type="person_search", protocol=protocol, gallery_size=gallery_size,
                query_loader=query_loader, **extra)


def _splits():
    """name → (loader, metadata)."""
    splits = {}
    for prefix, folder, gallery_size in (("", "CUHK-SYSU", 100), ("synthetic_", "synthetic/CUHK-SYSU", 50)):
        splits[f"{prefix}cuhk_sysu_train"] = (
            functools.partial(_cuhk_sysu_split, folder, "train"),
            {"num_pids": CUHK_SYSU_NUM_TRAIN_PIDS} if not prefix else {},
        )
        splits[f"{prefix}cuhk_sysu_test"] = (
            functools.partial(_cuhk_sysu_split, folder, "test"),
            _test_metadata("cuhk_sysu", gallery_size, functools.partial(_cuhk_sysu_queries, folder)),
        )
    splits["prw_train"] = (functools.partial(_prw_split, "train"), {"num_pids": PRW_NUM_TRAIN_PIDS})
    for name, protocol, query_file in (("prw_test", "prw", "query_info.txt"),
                                       ("prw_mini_test", "prw_mini", "prwmini_query_info.txt")):
        splits[name] = (
            functools.partial(_prw_split, "test"),
            _test_metadata(protocol, -1, functools.partial(_prw_queries, query_file), ignore_cam_id=True),
        )
    return splits


def register_all_person_search_datasets() -> None:
    """Register every person-search split once; calling again is a no-op."""
    registered = set(DatasetCatalog.list())
    for name, (loader, metadata) in _splits().items():
        if name in registered:
            continue
        DatasetCatalog.register(name, loader)
        MetadataCatalog.get(name).set(thing_classes=["person"], **metadata)


register_all_person_search_datasets()
