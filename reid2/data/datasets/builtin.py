"""Registers the re-ID datasets under ``$REID2_DATASETS`` (default ``./datasets``); see datasets/README.md.

=====================================================  ==================================  ================
names                                                  folder                              protocol
=====================================================  ==================================  ================
market1501_{train,test,multiquery_test}                Market-1501-v15.09.15               market
synthetic_market_{train,test,multiquery_test}          synthetic/Market-1501-v15.09.15     market
dukemtmc_{train,test}                                  DukeMTMC-reID                       market
cuhk03_{labeled,detected}_{train,test}                 cuhk03 (new protocol, 767/700)      market
cuhk03_classic_{labeled,detected}_split{0..19}_...     cuhk03 (classic, 1367/100)          cuhk03_classic
cuhk01_split{0..9}_{train,test}                        cuhk01                              split_average
viper_split{0..9}_{train,test}                         VIPeR                               split_average
msmt17_{train,test}                                    MSMT17_V1 or MSMT17_V2              market
=====================================================  ==================================  ================

Metadata: ``evaluator_type="reid"``, ``protocol``, ``dataset_root`` (the dataset folder, re-resolved at
each load), ``num_classes`` (train sets) and ``num_query`` (test sets; query dicts come first). For the
real datasets these start at the official counts and are replaced by the loaded counts (with a warning
when they differ); split datasets also carry ``split_index``, ``num_splits`` and ``split_family`` (the name
of the ``<family>_mean`` entry the evaluation adds over the splits).
"""
import functools
import os
from typing import Callable, List, Sequence

from .base import dataset_root, register_reid_dataset, update_metadata
from .cuhk01 import load_cuhk01
from .cuhk03 import IMAGE_TYPES, load_cuhk03, load_cuhk03_classic
from .dukemtmc import load_dukemtmc
from .market1501 import load_market1501
from .msmt17 import MSMT17_FOLDERS, load_msmt17
from .viper import load_viper

__all__ = ["register_all_reid_datasets"]

NUM_SEEDED_SPLITS = 10
NUM_CUHK03_CLASSIC_SPLITS = 20
SPLIT_SEED = 0


def _load(name: str, loader: Callable[[str], List[dict]], folders: Sequence[str]) -> List[dict]:
    """Resolve the dataset folder now (the first of ``folders`` that exists), record it, load it."""
    candidates = [os.path.join(dataset_root(), folder) for folder in folders]
    folder = next((c for c in candidates if os.path.isdir(c)), candidates[0])
    update_metadata(name, dataset_root=folder)
    return loader(folder)


def _entries():
    """(name, loader(folder) -> dicts, folders, metadata) of every built-in re-ID dataset."""
    P = functools.partial
    market = "Market-1501-v15.09.15"
    for prefix, folder, train_stats, test_stats in (
            ("market1501", market, dict(num_classes=751), dict(num_query=3368)),
            ("synthetic_market", "synthetic/" + market, {}, {})):  # sizes set by reid2.data.synthetic
        yield f"{prefix}_train", P(load_market1501, split="train"), (folder,), dict(protocol="market", **train_stats)
        yield f"{prefix}_test", P(load_market1501, split="test"), (folder,), dict(protocol="market", **test_stats)
        yield (f"{prefix}_multiquery_test", P(load_market1501, split="multiquery_test"), (folder,),
               dict(protocol="market", multi_query=True))
    duke = ("DukeMTMC-reID",)
    yield "dukemtmc_train", P(load_dukemtmc, split="train"), duke, dict(protocol="market", num_classes=702)
    yield "dukemtmc_test", P(load_dukemtmc, split="test"), duke, dict(protocol="market", num_query=2228)
    for image_type in IMAGE_TYPES:
        yield (f"cuhk03_{image_type}_train", P(load_cuhk03, image_type=image_type, split="train"), ("cuhk03",),
               dict(protocol="market", num_classes=767))
        yield (f"cuhk03_{image_type}_test", P(load_cuhk03, image_type=image_type, split="test"), ("cuhk03",),
               dict(protocol="market", num_query=1400))
        for i in range(NUM_CUHK03_CLASSIC_SPLITS):
            splits = dict(protocol="cuhk03_classic", split_index=i, num_splits=NUM_CUHK03_CLASSIC_SPLITS,
                          split_family=f"cuhk03_classic_{image_type}")
            for split in ("train", "test"):
                yield (f"cuhk03_classic_{image_type}_split{i}_{split}",
                       P(load_cuhk03_classic, image_type=image_type, split_index=i, split=split), ("cuhk03",),
                       dict(splits, num_classes=1367) if split == "train" else splits)
    for prefix, loader, folder, num_train, num_query in (("cuhk01", load_cuhk01, "cuhk01", 485, 972),
                                                         ("viper", load_viper, "VIPeR", 316, 316)):
        for i in range(NUM_SEEDED_SPLITS):
            splits = dict(protocol="split_average", split_index=i, num_splits=NUM_SEEDED_SPLITS, split_family=prefix)
            yield (f"{prefix}_split{i}_train", P(loader, split_index=i, split="train", seed=SPLIT_SEED), (folder,),
                   dict(splits, num_classes=num_train))
            yield (f"{prefix}_split{i}_test", P(loader, split_index=i, split="test", seed=SPLIT_SEED), (folder,),
                   dict(splits, num_query=num_query))
    yield "msmt17_train", P(load_msmt17, split="train"), MSMT17_FOLDERS, dict(protocol="market", num_classes=1041)
    yield "msmt17_test", P(load_msmt17, split="test"), MSMT17_FOLDERS, dict(protocol="market", num_query=11659)


def register_all_reid_datasets() -> None:
    """Register every built-in re-ID dataset once; calling again is a no-op."""
    from detectron2.data import DatasetCatalog

    registered = set(DatasetCatalog.list())
    for name, loader, folders, metadata in _entries():
        if name not in registered:
            register_reid_dataset(name, functools.partial(_load, name, loader, folders),
                                  dataset_root=os.path.join(dataset_root(), folders[0]), **metadata)


register_all_reid_datasets()
