"""OIMLoss: logits / loss / gradient by hand, LUT and queue updates against a per-sample reference loop."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reid2.modeling.losses.oim import OIMLoss, occurrence_rank


def reference_update(lut, queue, ptr, feats, pids, momentum, normalize, fixed_lut=False):
    """The PyTorch ports' backward loop (one sample at a time), full-dimension queue writes."""
    lut, queue = lut.clone(), queue.clone()
    for x, y in zip(feats, pids.tolist()):
        if y >= 0 and not fixed_lut:
            lut[y] = momentum * lut[y] + (1 - momentum) * x
            if normalize:
                lut[y] /= lut[y].norm()
        elif y == -1 and len(queue):
            queue[ptr] = x
            ptr = (ptr + 1) % len(queue)
    return lut, queue, ptr


def random_unit(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_loss_and_logits_match_hand_computation():
    oim = OIMLoss(num_pids=3, queue_size=2, feat_dim=2, scalar=10.0)
    oim.lut.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]))
    oim.queue.copy_(torch.tensor([[-1.0, 0.0], [0.8, -0.6]]))
    x = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0], [0.8, 0.6]])
    pids = torch.tensor([2, -1, -2, 0])  # labelled, unlabelled, background, labelled
    oim.eval()  # no buffer update: the loss alone
    loss = oim(x, pids)
    memory = np.array([[1, 0], [0, 1], [0.6, 0.8], [-1, 0], [0.8, -0.6]])
    expected = []
    for row, target in ((np.array([0.6, 0.8]), 2), (np.array([0.8, 0.6]), 0)):
        logits = 10.0 * memory @ row
        expected.append(-(logits[target] - math.log(np.exp(logits).sum())))
    assert loss.item() == pytest.approx(np.mean(expected), rel=1e-6)
    assert torch.allclose(oim.logits(x[:1]), 10.0 * torch.tensor(memory, dtype=torch.float32) @ x[0], atol=1e-6)


def test_gradient_uses_pre_update_buffers():
    """d loss / d x = s·(softmax·M − M_y) / n with M the buffers *before* this step's update."""
    oim = OIMLoss(num_pids=4, queue_size=3, feat_dim=5, scalar=30.0)
    oim.lut.copy_(random_unit(4, 5, 1))
    oim.queue.copy_(random_unit(3, 5, 2))
    memory = torch.cat([oim.lut, oim.queue]).clone()
    x = random_unit(3, 5, 3).requires_grad_(True)
    pids = torch.tensor([1, 3, -1])
    oim.train()
    oim(x, pids).backward()
    assert not torch.equal(torch.cat([oim.lut, oim.queue]), memory)  # the buffers did move
    labeled = x.detach()[:2]
    probs = torch.softmax(30.0 * labeled @ memory.t(), dim=1)
    expected = 30.0 * (probs @ memory - memory[[1, 3]]) / 2
    assert torch.allclose(x.grad[:2], expected, atol=1e-5)
    assert torch.all(x.grad[2] == 0)


def test_lut_momentum_update_and_renormalisation_by_hand():
    oim = OIMLoss(num_pids=2, queue_size=0, feat_dim=2, momentum=0.5)
    oim.lut.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    oim(torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    expected = torch.tensor([0.5, 0.5]) / math.sqrt(0.5)  # (0.5·[1,0] + 0.5·[0,1]) re-normalised
    assert torch.allclose(oim.lut[0], expected, atol=1e-6)
    assert torch.equal(oim.lut[1], torch.tensor([0.0, 1.0]))

    caffe = OIMLoss(num_pids=2, queue_size=0, feat_dim=2, momentum=0.5, normalize_lut=False)
    caffe.lut.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    caffe(torch.tensor([[0.0, 1.0]]), torch.tensor([0]))
    assert torch.allclose(caffe.lut[0], torch.tensor([0.5, 0.5]))  # Caffe: no re-normalisation


@pytest.mark.parametrize("normalize", [True, False])
def test_repeated_ids_match_sequential_reference(normalize):
    oim = OIMLoss(num_pids=5, queue_size=4, feat_dim=8, momentum=0.3, normalize_lut=normalize)
    oim.lut.copy_(random_unit(5, 8, 4))
    feats = random_unit(12, 8, 5)
    pids = torch.tensor([2, 2, -1, 4, 2, -2, 4, 0, -1, 2, -1, 0])
    lut, queue, ptr = reference_update(oim.lut, oim.queue, 0, feats, pids, 0.3, normalize)
    oim(feats, pids)
    assert torch.allclose(oim.lut, lut, atol=1e-6)
    assert torch.equal(oim.queue, queue) and int(oim.queue_ptr) == ptr


def test_queue_takes_unlabelled_only_and_never_background():
    oim = OIMLoss(num_pids=3, queue_size=5, feat_dim=4)
    feats = random_unit(5, 4, 6)
    oim(feats, torch.tensor([-1, -2, 1, -1, -3]))
    assert torch.equal(oim.queue[:2], feats[[0, 3]])
    assert torch.all(oim.queue[2:] == 0) and int(oim.queue_ptr) == 2
    assert torch.all(oim.lut[[0, 2]] == 0)  # only id 1 was updated; background touched nothing
    assert oim.queue_ptr.dtype == torch.long


def test_queue_pointer_wraps_around_and_overflow_keeps_the_latest():
    oim = OIMLoss(num_pids=1, queue_size=4, feat_dim=3)
    first, second, third = random_unit(3, 3, 7), random_unit(3, 3, 8), random_unit(9, 3, 9)
    lut, queue, ptr = oim.lut, oim.queue, 0
    for batch in (first, second, third):  # 3 + 3 wraps; 9 > queue size in one batch
        pids = torch.full((len(batch),), -1)
        lut, queue, ptr = reference_update(lut, queue, ptr, batch, pids, 0.5, True)
        oim(batch, pids)
        assert torch.equal(oim.queue, queue) and int(oim.queue_ptr) == ptr
    assert ptr == (3 + 3 + 9) % 4


def test_fixed_lut_leaves_lut_while_queue_moves():
    oim = OIMLoss(num_pids=3, queue_size=4, feat_dim=4, fixed_lut=True)
    teacher = random_unit(3, 4, 10)
    oim.load_lut(teacher)
    feats = random_unit(4, 4, 11)
    loss = oim(feats.requires_grad_(True), torch.tensor([0, 1, -1, 2]))
    loss.backward()
    assert torch.equal(oim.lut, teacher)
    assert torch.equal(oim.queue[0], feats[2].detach()) and int(oim.queue_ptr) == 1
    assert feats.grad.abs().sum() > 0


def test_no_labelled_rows_gives_a_differentiable_zero():
    oim = OIMLoss(num_pids=3, queue_size=4, feat_dim=4)
    feats = random_unit(3, 4, 12).requires_grad_(True)
    loss = oim(feats, torch.tensor([-1, -2, -1]))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(feats.grad == 0)
    assert int(oim.queue_ptr) == 2


def test_eval_mode_does_not_update_buffers():
    oim = OIMLoss(num_pids=2, queue_size=2, feat_dim=2).eval()
    oim(random_unit(2, 2, 13), torch.tensor([0, -1]))
    assert torch.all(oim.lut == 0) and torch.all(oim.queue == 0) and int(oim.queue_ptr) == 0


def test_bad_inputs_raise_clear_errors():
    oim = OIMLoss(num_pids=3, queue_size=2, feat_dim=4)
    with pytest.raises(ValueError, match="num_pids 3"):
        oim(random_unit(1, 4, 0), torch.tensor([3]))
    with pytest.raises(ValueError, match=r"feats \(N, 4\)"):
        oim(random_unit(2, 5, 0), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="LUT shape"):
        oim.load_lut(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="NUM_PIDS"):
        OIMLoss(num_pids=0, queue_size=2)


def test_occurrence_rank():
    assert occurrence_rank(torch.tensor([5, 3, 5, 5, 3, 7])).tolist() == [0, 0, 1, 2, 1, 0]
    assert occurrence_rank(torch.tensor([], dtype=torch.long)).tolist() == []


def test_checkpoint_keys():
    oim = OIMLoss(num_pids=2, queue_size=3, feat_dim=4)
    assert set(oim.state_dict()) == {"lut", "queue", "queue_ptr"}
