"""OIMLoss under 2 CPU processes (gloo): identical buffers on both ranks, equal to one process on the
concatenated batches (rank 0's rows first), over several steps with different batch sizes per rank."""
import pytest
import torch
import torch.nn.functional as F

from reid2.engine import launch
from reid2.modeling.losses.oim import OIMLoss

NUM_PIDS, QUEUE_SIZE, FEAT_DIM, STEPS = 6, 7, 8, 3


def batch(rank, step):
    """Per-rank batches of different sizes; ids repeat within and across ranks; all pid kinds present."""
    gen = torch.Generator().manual_seed(1000 * step + rank)
    size = 5 + 2 * rank + step
    pids = torch.randint(-3, NUM_PIDS, (size,), generator=gen)
    return F.normalize(torch.randn(size, FEAT_DIM, generator=gen), dim=1), pids


def make_loss():
    return OIMLoss(NUM_PIDS, QUEUE_SIZE, FEAT_DIM, scalar=10.0, momentum=0.5)


def distributed_worker(out_dir):
    from detectron2.utils import comm

    oim, rank = make_loss(), comm.get_rank()
    for step in range(STEPS):
        feats, pids = batch(rank, step)
        feats.requires_grad_(True)
        oim(feats, pids).backward()
    torch.save({k: v.clone() for k, v in oim.state_dict().items()}, f"{out_dir}/rank{rank}.pt")


@pytest.mark.dist
def test_two_processes_hold_identical_buffers_equal_to_single_process(tmp_path):
    launch(distributed_worker, 2, dist_url="auto", args=(str(tmp_path),))
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    single = make_loss()
    for step in range(STEPS):
        parts = [batch(r, step) for r in range(2)]
        single(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    for state in states:
        for key, value in single.state_dict().items():
            assert torch.allclose(state[key], value, atol=1e-6), key
    assert int(states[0]["queue_ptr"]) != 0 and states[0]["lut"].abs().sum() > 0  # buffers did move
