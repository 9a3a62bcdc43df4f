"""reid2 data: datasets (registered on import), synthetic data, loaders, samplers, transforms."""
from . import datasets  # noqa: F401  (registration)
from .build import (
    ReIDImageDataset,
    build_reid_test_loader,
    build_reid_train_batch_sampler,
    build_reid_train_loader,
    get_reid_train_dicts,
    reid_collate,
)
from .identities import num_train_classes, num_train_identities
from .samplers import IdentityBatchSampler, RandomBatchSampler
from .transforms import NORMALIZATIONS, build_reid_transforms

__all__ = ["IdentityBatchSampler", "NORMALIZATIONS", "RandomBatchSampler", "ReIDImageDataset", "build_reid_test_loader",
           "build_reid_train_batch_sampler", "build_reid_train_loader", "build_reid_transforms",
           "get_reid_train_dicts", "num_train_classes", "num_train_identities", "reid_collate"]
