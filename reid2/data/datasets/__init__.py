"""Dataset loaders in the datasets' real on-disk formats, registered in Detectron2's ``DatasetCatalog``.

Importing this package registers the re-ID datasets (``builtin``) and, when that module is present, the
person-search ones (``person_search_builtin``). Roots come from ``$REID2_DATASETS``, read at load time.
"""
import importlib.util

from . import builtin  # noqa: F401  (registration)
from .base import (
    check_exists,
    combine_train_sets,
    dataset_root,
    register_reid_dataset,
    relabel,
    seeded_id_split,
)

if importlib.util.find_spec(f"{__name__}.person_search_builtin") is not None:
    from . import person_search_builtin  # noqa: F401  (registration)

__all__ = [
    "check_exists",
    "combine_train_sets",
    "dataset_root",
    "register_reid_dataset",
    "relabel",
    "seeded_id_split",
]
