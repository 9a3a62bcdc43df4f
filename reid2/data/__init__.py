"""reid2 data: datasets (registered on import), synthetic data, loaders, samplers, transforms."""
from . import datasets  # noqa: F401  (registration)
from .build import build_reid_test_loader, build_reid_train_loader
from .samplers import IdentityBatchSampler, RandomBatchSampler
from .transforms import build_reid_transforms
