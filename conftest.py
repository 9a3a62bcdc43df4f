"""Fixtures shared by ``tests/`` and every ``projects/*/tests/`` (the tiny synthetic datasets, shared data)."""
import os

import pytest

from tests.helpers import SHARED

os.environ.setdefault("OMP_NUM_THREADS", "2")


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
