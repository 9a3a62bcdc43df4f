"""Re-ID losses against hand-computed examples, naive loops and the closed-form gradients."""
import math

import pytest
import torch
import torch.nn.functional as F

from reid2.modeling.losses import (
    BatchContrastiveCenterLoss,
    CenterLoss,
    batch_contrastive_loss,
    center_loss,
    cross_entropy_loss,
    soft_cross_entropy,
    triplet_loss,
)

# Softmax of row 0 is (1/4, 1/2, 1/4); of row 1 is (1/3, 1/3, 1/3).
LOGITS = torch.tensor([[0.0, math.log(2.0), 0.0], [0.0, 0.0, 0.0]])
LABELS = torch.tensor([1, 0])

# 1-D features on a line: x = 0, 1 (id 0) and 3, 7 (id 1).
LINE = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
LINE_IDS = torch.tensor([0, 0, 1, 1])


# ---------------------------------------------------------------- cross-entropy
def test_cross_entropy_hand_computed():
    # row 0: -log(1/2); row 1: -log(1/3)
    assert cross_entropy_loss(LOGITS, LABELS).item() == pytest.approx((math.log(2) + math.log(3)) / 2)


def test_label_smoothing_hand_computed():
    # eps = 0.3, K = 3: row 0 target (0.1, 0.8, 0.1) -> 0.1·log4 + 0.8·log2 + 0.1·log4 = 1.2·log2;
    # row 1 has a uniform softmax, so any target gives log3.
    loss = cross_entropy_loss(LOGITS, LABELS, epsilon=0.3)
    assert loss.item() == pytest.approx((1.2 * math.log(2) + math.log(3)) / 2)


def test_label_smoothing_zero_is_plain_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(9, 7, generator=g), torch.randint(0, 7, (9,), generator=g)
    assert torch.allclose(cross_entropy_loss(logits, labels, 0.0), F.cross_entropy(logits, labels))


def test_label_smoothing_rejects_bad_epsilon():
    with pytest.raises(ValueError, match="epsilon"):
        cross_entropy_loss(LOGITS, LABELS, epsilon=1.0)


# ---------------------------------------------------------------- soft cross-entropy
def test_soft_cross_entropy_hand_computed():
    # row 0 with p = (1/2, 0, 1/2): -(½ log¼ + ½ log¼) = log4; row 1: log3 for any p.
    probs = torch.tensor([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]])
    assert soft_cross_entropy(LOGITS, probs).item() == pytest.approx((math.log(4) + math.log(3)) / 2)


def test_soft_cross_entropy_reductions():
    probs = torch.tensor([[0.5, 0.0, 0.5], [0.2, 0.3, 0.5]])
    per_row = soft_cross_entropy(LOGITS, probs, reduction="none")
    torch.testing.assert_close(per_row, torch.tensor([math.log(4), math.log(3)]))
    assert soft_cross_entropy(LOGITS, probs, reduction="sum").item() == pytest.approx(math.log(12))
    with pytest.raises(ValueError, match="reduction"):
        soft_cross_entropy(LOGITS, probs, reduction="batchmean")


def test_soft_cross_entropy_one_hot_equals_cross_entropy():
    g = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(6, 5, generator=g), torch.randint(0, 5, (6,), generator=g)
    one_hot = F.one_hot(labels, 5).float()
    assert torch.allclose(soft_cross_entropy(logits, one_hot), F.cross_entropy(logits, labels))


def test_soft_cross_entropy_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        soft_cross_entropy(LOGITS, torch.ones(2, 4) / 4)


# ---------------------------------------------------------------- triplet
def test_triplet_hand_computed():
    # anchor 0: d_ap 1, d_an 3 -> 0; anchor 1: 1, 2 -> 0; anchor 3: 4, 2 -> 2.3; anchor 7: 4, 6 -> 0
    assert triplet_loss(LINE, LINE_IDS, margin=0.3).item() == pytest.approx(2.3 / 4)


def test_triplet_soft_margin_hand_computed():
    gaps = torch.tensor([1 - 3, 1 - 2, 4 - 2, 4 - 6], dtype=torch.float)
    expected = torch.log1p(torch.exp(gaps)).mean()
    assert triplet_loss(LINE, LINE_IDS, soft_margin=True).item() == pytest.approx(expected.item())


def test_triplet_skips_anchors_without_positive():
    # id 1 is a singleton: only anchors 0 (1 - 3 + 1.5 -> 0) and 1 (1 - 2 + 1.5 = 0.5) count.
    x, ids = torch.tensor([[0.0], [1.0], [3.0]]), torch.tensor([0, 0, 1])
    assert triplet_loss(x, ids, margin=1.5).item() == pytest.approx(0.25)


def test_triplet_without_valid_anchor_is_zero_and_differentiable():
    x = torch.randn(4, 3, requires_grad=True)
    loss = triplet_loss(x, torch.zeros(4, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


def _triplet_brute_force(x, ids, margin, soft):
    losses = []
    for a in range(len(x)):
        pos = [torch.norm(x[a] - x[p]) for p in range(len(x)) if p != a and ids[p] == ids[a]]
        neg = [torch.norm(x[a] - x[n]) for n in range(len(x)) if ids[n] != ids[a]]
        if pos and neg:
            gap = max(pos) - min(neg)
            losses.append(F.softplus(gap) if soft else F.relu(gap + margin))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("soft", [False, True])
def test_triplet_matches_brute_force(soft):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(13, 5, generator=g, dtype=torch.float64)
    ids = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4, 5])  # 3 and 5 are singletons
    expected = _triplet_brute_force(x, ids, margin=0.8, soft=soft)
    assert torch.allclose(triplet_loss(x, ids, margin=0.8, soft_margin=soft), expected)


def test_triplet_gradient_finite_for_duplicate_embeddings():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [0.5, 0.5]], requires_grad=True)
    triplet_loss(x, torch.tensor([0, 0, 1, 1])).backward()
    assert torch.isfinite(x.grad).all()


def test_triplet_rejects_mismatched_targets():
    with pytest.raises(ValueError, match="targets"):
        triplet_loss(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))


# ---------------------------------------------------------------- batch-contrastive
def test_batch_contrastive_hand_computed():
    # squared distances: d01=1, d02=9, d03=49, d12=4, d13=36, d23=16; tau = 5
    # positive sum over ordered pairs: 1 + 1 + 16 + 16 = 34
    # hinges: anchor0 5-min(9,49) -> 0, anchor1 5-4=1, anchor2 5-min(9,4)=1, anchor3 5-36 -> 0
    assert batch_contrastive_loss(LINE, LINE_IDS, tau=5.0).item() == pytest.approx(0.5 * (34 + 2))


def test_batch_contrastive_single_identity_has_no_hinge():
    x = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    assert batch_contrastive_loss(x, torch.tensor([3, 3]), tau=10.0).item() == pytest.approx(4.0)


def _closed_form_gradient(x, ids, tau, centers=None):
    """∂L_b/∂x (Eq. 3 differentiated by hand, see batch_contrastive.py) plus x - c_y for L_c."""
    same = ids[:, None] == ids[None, :]
    grad = 2 * (same.double()[:, :, None] * (x[:, None, :] - x[None, :, :])).sum(1)
    sq = torch.cdist(x, x) ** 2
    hardest = sq.masked_fill(same, float("inf")).argmin(1)
    for k in range(len(x)):
        n = hardest[k].item()
        if tau - sq[k, n] > 0:  # active hinge pulls k away from n and n away from k
            grad[k] -= x[k] - x[n]
            grad[n] -= x[n] - x[k]
    if centers is not None:
        grad += x - centers[ids]
    return grad


def _random_batch(seed):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(10, 6, generator=g, dtype=torch.float64), dim=1)
    ids = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 5])
    sq = torch.cdist(x, x) ** 2
    hardest = sq.masked_fill(ids[:, None] == ids[None, :], float("inf")).min(1).values.unique()  # sorted
    # About half of the hinges active, and no hinge exactly at its kink (the median itself puts one there, where the
    # clamp's subgradient is a matter of rounding): the midpoint of two neighbouring distinct values.
    mid = len(hardest) // 2
    tau = (0.5 * (hardest[mid - 1] + hardest[mid])).item()
    return x, ids, tau


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_contrastive_gradient_matches_closed_form(seed):
    x, ids, tau = _random_batch(seed)
    x.requires_grad_(True)
    batch_contrastive_loss(x, ids, tau).backward()
    assert torch.allclose(x.grad, _closed_form_gradient(x.detach(), ids, tau), atol=1e-10)


def test_batch_contrastive_center_loss_gradient_and_value():
    x, ids, tau = _random_batch(3)
    module = BatchContrastiveCenterLoss(num_classes=6, feat_dim=6, tau=tau, center_alpha=0.5, weight=2.0)
    module.double()
    module.center.centers.copy_(torch.randn(6, 6, generator=torch.Generator().manual_seed(4)))
    x.requires_grad_(True)
    terms = module(x, ids)
    loss = terms["loss_bc"] + terms["loss_bc_center"]
    loss.backward()
    centers = module.center.centers
    expected = 2.0 * (batch_contrastive_loss(x, ids, tau) + 0.5 * ((x - centers[ids]) ** 2).sum())
    assert torch.allclose(loss, expected)
    assert torch.allclose(x.grad, 2.0 * _closed_form_gradient(x.detach(), ids, tau, centers), atol=1e-10)


def _eq8_gradient(x, ids, tau):
    """The paper's Eq. 8 for L_b, written as printed, one anchor at a time: Σ_j δ(y_i = y_j)(x_i - x_j) minus
    (x_i - x_min_i) when the hardest negative is inside the margin (on the squared distance, as the hinge)."""
    grad = torch.zeros_like(x)
    for i in range(len(x)):
        for j in range(len(x)):
            if ids[i] == ids[j]:
                grad[i] += x[i] - x[j]
        negatives = [j for j in range(len(x)) if ids[j] != ids[i]]
        if negatives:
            n = min(negatives, key=lambda j: float(((x[i] - x[j]) ** 2).sum()))
            if ((x[i] - x[n]) ** 2).sum() < tau:
                grad[i] -= x[i] - x[n]
    return grad


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_contrastive_eq8_gradient_matches_the_paper_and_keeps_the_value(seed):
    x, ids, tau = _random_batch(seed)
    x.requires_grad_(True)
    loss = batch_contrastive_loss(x, ids, tau, gradient="eq8")
    loss.backward()
    assert torch.allclose(x.grad, _eq8_gradient(x.detach(), ids, tau), atol=1e-10)
    assert loss.item() == pytest.approx(batch_contrastive_loss(x.detach(), ids, tau).item(), rel=1e-12)
    # Eq. 8 is not the exact gradient: it lacks half of the pull and the push on the other anchors' negatives.
    assert (x.grad - _closed_form_gradient(x.detach(), ids, tau)).norm() > 0.1 * x.grad.norm()


def test_batch_contrastive_eq8_scales_with_the_upstream_gradient():
    x, ids, tau = _random_batch(0)
    x.requires_grad_(True)
    (3.0 * batch_contrastive_loss(x, ids, tau, gradient="eq8")).backward()
    assert torch.allclose(x.grad, 3.0 * _eq8_gradient(x.detach(), ids, tau), atol=1e-10)


def test_batch_contrastive_rejects_unknown_gradient():
    with pytest.raises(ValueError, match="GRADIENT.*'exact'"):
        batch_contrastive_loss(LINE, LINE_IDS, 1.0, gradient="exact")
    with pytest.raises(ValueError, match="GRADIENT"):
        BatchContrastiveCenterLoss(2, 1, tau=1.0, gradient="exact")


# Unit features (the registered loss L2-normalises pool5): classes 0, 0, 1.
UNIT_X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
UNIT_IDS = torch.tensor([0, 0, 1])


def _registered_bc(**keys):
    from reid2.config import get_cfg
    from reid2.modeling.losses.registry import BatchContrastiveLoss

    cfg = get_cfg()
    cfg.MODEL.LOSSES.BATCH_CONTRASTIVE.merge_from_list([v for kv in keys.items() for v in kv])
    module = BatchContrastiveLoss(cfg, 3, 2)
    module.center.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
    return module


def test_center_step_is_the_solver_learning_rate_by_default():
    # class 0: Δ = ((0,0)-(1,0) + (0,0)-(0,1)) / 3 = -(1,1)/3;   class 1: Δ = ((1,1)-(0.6,0.8)) / 2 = (0.2, 0.1)
    module = _registered_bc()
    assert module.center_lr == "solver"
    module.set_solver_lr(0.25)
    module({"pool_feat": UNIT_X, "targets": UNIT_IDS})
    expected = torch.tensor([[1 / 12, 1 / 12], [1 - 0.05, 1 - 0.025], [5.0, 5.0]])
    assert torch.allclose(module.center.centers, expected)
    module.set_solver_lr(0.0)  # a zero learning rate freezes the centers
    module({"pool_feat": UNIT_X, "targets": UNIT_IDS})
    assert torch.allclose(module.center.centers, expected)


def test_center_step_constant_alpha_option():
    module = _registered_bc(CENTER_LR="constant", CENTER_ALPHA=0.5)
    module.set_solver_lr(0.25)  # ignored
    module({"pool_feat": UNIT_X, "targets": UNIT_IDS})
    expected = torch.tensor([[1 / 6, 1 / 6], [0.9, 0.95], [5.0, 5.0]])
    assert torch.allclose(module.center.centers, expected)


def test_center_step_solver_without_a_learning_rate_or_unknown_mode_fails_clearly():
    with pytest.raises(RuntimeError, match='CENTER_LR is "solver"'):
        _registered_bc()({"pool_feat": UNIT_X, "targets": UNIT_IDS})
    with pytest.raises(ValueError, match="CENTER_LR must be one of"):
        _registered_bc(CENTER_LR="fixed")


# ---------------------------------------------------------------- center loss
CENTER_X = torch.tensor([[1.0, 0.0], [3.0, 0.0], [1.0, 2.0]])
CENTER_IDS = torch.tensor([0, 0, 1])
CENTERS = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])


def test_center_loss_hand_computed():
    # ½ (‖(1,0)‖² + ‖(3,0)‖² + ‖(0,1)‖²) = ½ (1 + 9 + 1)
    assert center_loss(CENTER_X, CENTER_IDS, CENTERS).item() == pytest.approx(5.5)
    module = CenterLoss(3, 2)
    module.centers.copy_(CENTERS)
    assert module(CENTER_X, CENTER_IDS).item() == pytest.approx(5.5)


def test_center_update_follows_paper_rule_exactly():
    module = CenterLoss(3, 2, alpha=0.5)
    module.centers.copy_(CENTERS)
    module.update_centers(CENTER_X, CENTER_IDS)
    # class 0: Δ = ((0-1,0) + (0-3,0)) / (1+2) = (-4/3, 0) -> c = (0,0) - 0.5Δ = (2/3, 0)
    # class 1: Δ = (1-1, 1-2) / (1+1) = (0, -1/2)       -> c = (1, 1.25); class 2 absent: unchanged
    expected = torch.tensor([[2 / 3, 0.0], [1.0, 1.25], [5.0, 5.0]])
    assert torch.allclose(module.centers, expected)


def test_centers_move_toward_their_class_features():
    g = torch.Generator().manual_seed(5)
    module = CenterLoss(4, 8, alpha=0.3)
    module.centers.copy_(torch.randn(4, 8, generator=g))
    x, ids = torch.randn(12, 8, generator=g), torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    before = module.centers.clone()
    loss_before = module(x, ids)
    module.update_centers(x, ids)
    assert module(x, ids) < loss_before
    for j in range(3):
        mean_j = x[ids == j].mean(0)
        assert torch.norm(module.centers[j] - mean_j) < torch.norm(before[j] - mean_j)
    assert torch.equal(module.centers[3], before[3])


def test_centers_are_a_buffer_untouched_by_autograd():
    module = CenterLoss(3, 2)
    assert list(module.parameters()) == [] and "centers" in module.state_dict()
    x = CENTER_X.clone().requires_grad_(True)
    module(x, CENTER_IDS).backward()
    assert torch.allclose(x.grad, CENTER_X - module.centers[CENTER_IDS])  # ∂L_c/∂x_i = x_i - c_{y_i}


def test_center_loss_rejects_out_of_range_targets():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        CenterLoss(3, 2).update_centers(CENTER_X, torch.tensor([0, 3, 1]))


def _dist_center_update(out_dir, features, ids):
    """Run in each of 2 processes: update shared centers with this rank's half of the batch."""
    from detectron2.utils import comm

    rank = comm.get_rank()
    module = CenterLoss(3, 2, alpha=0.5)
    module.centers.copy_(CENTERS)
    half = slice(2 * rank, 2 * rank + 2)
    module.update_centers(features[half], ids[half])
    torch.save(module.centers, f"{out_dir}/centers{rank}.pt")


@pytest.mark.dist
def test_center_update_under_ddp_equals_update_with_the_whole_batch(tmp_path):
    from reid2.engine import launch

    x = torch.cat([CENTER_X, torch.tensor([[5.0, 4.0]])])  # rank 0: ids 0, 0; rank 1: ids 1, 2
    ids = torch.cat([CENTER_IDS, torch.tensor([2])])
    launch(_dist_center_update, 2, dist_url="auto", args=(str(tmp_path), x, ids))
    single = CenterLoss(3, 2, alpha=0.5)
    single.centers.copy_(CENTERS)
    single.update_centers(x, ids)
    for rank in range(2):
        assert torch.allclose(torch.load(tmp_path / f"centers{rank}.pt"), single.centers)
