"""Shared fixtures: the tiny synthetic datasets (written once per test session)."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

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


def run_tool(args, env_extra=None, timeout=600, cwd=REPO):
    """Run a tools/ entry point in a subprocess; returns CompletedProcess (text)."""
    import subprocess

    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def load_tool(name):
    """A ``tools/<name>.py`` script as a module (to call its ``main(argv)`` in-process)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_random_checkpoint(config, directory):
    """A randomly initialised model of ``config`` saved as ``directory/model.pth`` (tools only need weights)."""
    import torch

    from reid2.utils.inference import load_model

    torch.manual_seed(0)
    _, model = load_model(config, None, ["MODEL.DEVICE", "cpu"], allow_random=True)
    path = directory / "model.pth"
    torch.save({"model": model.state_dict(), "iteration": 0}, path)
    return str(path)
