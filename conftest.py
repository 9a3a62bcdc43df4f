"""Fixtures shared by ``tests/`` and every ``projects/*/tests/`` (the tiny synthetic datasets, shared data)."""
import os

import pytest

from tests.helpers import SHARED

os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_configure(config):
    """Import reid2 before any test module imports Detectron2: it restores the ``PIL.Image`` names Detectron2 v0.6
    reads at import (gone in Pillow >= 10), so a single test file that imports Detectron2 first runs too."""
    import reid2  # noqa: F401


@pytest.fixture(scope="session")
def datasets_root(tmp_path_factory):
    """``$REID2_DATASETS`` holding ``synthetic/`` (tiny Market-1501 and CUHK-SYSU layouts)."""
    from reid2.data.synthetic import generate_all

    root = tmp_path_factory.mktemp("datasets")
    generate_all(root / "synthetic", seed=0, preset="tiny")
    old = os.environ.get("REID2_DATASETS")
    os.environ["REID2_DATASETS"] = str(root)
    yield root
    if old is None:
        os.environ.pop("REID2_DATASETS", None)
    else:
        os.environ["REID2_DATASETS"] = old


@pytest.fixture
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (the shared data folder) is absent")
    return SHARED
