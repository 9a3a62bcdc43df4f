"""The global random generators (Python, NumPy, torch CPU and CUDA) as a checkpointable dict of tensors.

A resumed run must draw the same augmentation, dropout and sampling numbers as the uninterrupted one, so the
trainer saves these states with every checkpoint. Only tensors and plain ints / floats are stored: the
checkpoint stays loadable with ``torch.load(weights_only=True)``.
"""
import contextlib
import random

import numpy as np
import torch

__all__ = ["get_rng_states", "set_rng_states", "preserved_rng"]


def get_rng_states() -> dict:
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    states = {
        "python": {"version": int(version), "state": torch.tensor(mt, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what :func:`get_rng_states` returned (CUDA states only when CUDA is there)."""
    p = states["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss"]))
    n = states["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        cuda = states["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:  # another number of GPUs: each process keeps its own device's stream
            torch.cuda.set_rng_state(cuda[torch.cuda.current_device() % len(cuda)])


@contextlib.contextmanager
def preserved_rng():
    """Run the body without changing the global random streams (e.g. an evaluation inside training)."""
    states = get_rng_states()
    try:
        yield
    finally:
        set_rng_states(states)
