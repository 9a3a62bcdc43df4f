"""Two CPU processes through reid2's launch (gloo): DDP averages gradients, one checkpoint."""
import json

import pytest
import torch
from torch import nn

from reid2.engine import launch


@pytest.mark.dist
def test_two_process_gloo_averages_gradients_and_checkpoints_once(tmp_path):
    from tests.engine.dist_workers import ddp_step_and_checkpoint

    launch(ddp_step_and_checkpoint, 2, dist_url="auto", args=(str(tmp_path),))
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in results] == [2, 2] and [r["local_rank"] for r in results] == [0, 1]
    # Independent formulation: per-rank gradients computed in this process, then averaged.
    expected = None
    for r in results:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        x, y = torch.tensor(r["x"]), torch.tensor(r["y"])
        ((model(x) - y) ** 2).mean().backward()
        g = [p.grad for p in model.parameters()]
        expected = g if expected is None else [a + b for a, b in zip(expected, g)]
    expected = [e / 2 for e in expected]
    for r in results:
        for got, exp in zip(r["grads"], expected):
            assert torch.allclose(torch.tensor(got), exp, atol=1e-6)
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("rank"))
    assert files == ["last_checkpoint", "model_test.pth"]  # written once, no temp files left
    state = torch.load(tmp_path / "model_test.pth", weights_only=False)
    assert set(state["model"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_single_process_launch_runs_inline(tmp_path):
    calls = []
    launch(lambda a: calls.append(a), 1, args=(5,))
    assert calls == [5]
