"""Helpers shared by the tests of ``tests/`` and ``projects/*/tests/`` (the fixtures are in the root conftest.py)."""
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

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

    from reid2.engine.predictor import load_model

    torch.manual_seed(0)
    _, model = load_model(config, "random", ["MODEL.DEVICE", "cpu"])
    path = directory / "model.pth"
    torch.save({"model": model.state_dict(), "iteration": 0}, path)
    return str(path)


def image_input(height=96, width=128, boxes=((10, 10, 40, 90), (60, 20, 90, 95)), pids=(3, -1), seed=0):
    """A person-search training input: a random uint8 image with ``boxes`` labelled ``pids``."""
    import torch
    from detectron2.structures import Boxes, Instances

    gen = torch.Generator().manual_seed(seed)
    instances = Instances((height, width))
    instances.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    instances.gt_classes = torch.zeros(len(boxes), dtype=torch.int64)
    instances.gt_pids = torch.tensor(pids, dtype=torch.int64)
    return {"image": torch.randint(0, 256, (3, height, width), generator=gen, dtype=torch.uint8).float(),
            "height": height, "width": width, "instances": instances}
