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


@pytest.fixture(scope="module")
def bc_two_process_results(tmp_path_factory):
    """One 2-process launch for both gradient modes: {mode: [rank 0 result, rank 1 result]}."""
    from tests.engine.dist_workers import bc_global_batch_step

    out = tmp_path_factory.mktemp("bc_dist")
    launch(bc_global_batch_step, 2, dist_url="auto", args=(str(out),))
    ranks = [json.loads((out / f"bc_rank{r}.json").read_text()) for r in range(2)]
    return {mode: [r[mode] for r in ranks] for mode in ranks[0]}


@pytest.mark.dist
@pytest.mark.parametrize("gradient", ["autograd", "eq8"])
def test_batch_contrastive_on_two_processes_equals_one_process_with_the_whole_batch(bc_two_process_results, gradient):
    """Zhang & Xu's L_b and L_c are sums over the batch of 16 with hard negatives mined in it: 2 processes of 4
    must give the loss, the gradients, the SGD step and the center update of 1 process fed all 8 (the
    identities pair up only across the halves, so per-process losses would have no positive pair at all)."""
    from tests.engine.dist_workers import BCNet, bc_data, bc_step

    ranks = bc_two_process_results[gradient]
    single = bc_step(BCNet(gradient), *bc_data())
    for r in ranks:
        for name in ("loss_bc", "loss_bc_center"):  # the global batch's value on every process
            assert r["losses"][name] == pytest.approx(single["losses"][name], rel=1e-6)
        for key in ("grads", "weights", "centers"):
            for got, exp in zip(r[key], single[key]):
                assert torch.allclose(torch.tensor(got), torch.tensor(exp), atol=1e-6), key
    # the softmax term stays a per-process mean, which DDP's averaging makes the global mean
    assert sum(r["losses"]["loss_cls"] for r in ranks) / 2 == pytest.approx(single["losses"]["loss_cls"], rel=1e-6)
    assert single["losses"]["loss_bc"] > 0.1  # the cross-half positive pairs are in it
