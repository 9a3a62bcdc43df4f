"""Preset sizes of the embedded synthetic data and ``generate_all``, which writes both datasets under one root."""
import logging
import time
from pathlib import Path

from .cuhk_sysu import generate_cuhk_sysu
from .market import generate_market

__all__ = ["PRESETS", "GENERATORS", "generate_all"]

# "tiny": the smallest data the unit tests can use (a few seconds); "default": the demo/benchmark data (< 1 min).
# The CUHK-SYSU test sets hold ≥ 51 images so that TestG50 (the registered synthetic protocol) exists.
PRESETS = {
    "tiny": {
        "market": dict(num_train_ids=12, num_test_ids=8, num_cameras=4, num_distractors=6, num_junk=4),
        "cuhk_sysu": dict(num_train_ids=8, num_test_ids=6, num_train_images=16, num_test_images=52,
                          gallery_sizes=(50,), image_size=(320, 240)),
    },
    "default": {
        "market": dict(num_train_ids=48, num_test_ids=32, num_cameras=6, num_distractors=40, num_junk=20),
        "cuhk_sysu": dict(num_train_ids=100, num_test_ids=50, num_train_images=300, num_test_images=150,
                          gallery_sizes=(50, 100), image_size=(320, 240)),
    },
}
GENERATORS = {"market": generate_market, "cuhk_sysu": generate_cuhk_sysu}
_logger = logging.getLogger(__name__)


def generate_all(root, seed=0, preset="default", only=None) -> dict:
    """Write ``root/Market-1501-v15.09.15`` and ``root/CUHK-SYSU`` of ``preset``; {"market", "cuhk_sysu": path}.

    Each dataset is skipped when its folder already holds data of the same parameters and generator
    version (its ``SYNTHETIC.json`` marker). ``only`` restricts to one of ``GENERATORS``.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    names = list(GENERATORS) if only is None else [only]
    unknown = [n for n in names if n not in GENERATORS]
    if unknown:
        raise ValueError(f"unknown dataset {unknown[0]!r}; expected one of {sorted(GENERATORS)}")
    paths = {}
    for name in names:
        start = time.perf_counter()
        paths[name] = GENERATORS[name](Path(root), seed=seed, **PRESETS[preset][name])
        _logger.info("%s (%s preset) ready at %s in %.1f s", name, preset, paths[name], time.perf_counter() - start)
    return paths
