"""KD_det building blocks: soft CE with temperature, RPN soft objectness, bounded regression,
hint loss, the hint adapter and the MODEL.KD config keys."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reid2.modeling.kd import (
    HintAdapter,
    bounded_regression_loss,
    distillation_cls_loss,
    hint_loss,
    rcn_class_weights,
    rpn_soft_objectness_loss,
    soft_cross_entropy_with_temperature,
    strip_training_only_weights,
)


def _softmax(row, T):
    exps = [math.exp(z / T) for z in row]
    return [e / sum(exps) for e in exps]


def _naive_soft_ce(student, teacher, T, weights):
    """−Σ_c w_c P_t,c log P_s,c per row with plain Python floats, then the mean over rows."""
    losses = []
    for s_row, t_row in zip(student, teacher):
        p_s, p_t = _softmax(s_row, T), _softmax(t_row, T)
        losses.append(-sum(w * pt * math.log(ps) for w, pt, ps in zip(weights, p_t, p_s)))
    return sum(losses) / len(losses)


STUDENT = [[1.0, 2.0, -0.5], [0.3, -1.2, 2.5]]
TEACHER = [[3.0, 0.5, 0.0], [-2.0, 1.0, 4.0]]


@pytest.mark.parametrize("T", [1.0, 2.0, 10.0])
def test_soft_ce_matches_hand_computation(T):
    got = soft_cross_entropy_with_temperature(torch.tensor(STUDENT), torch.tensor(TEACHER), T=T)
    assert got.item() == pytest.approx(_naive_soft_ce(STUDENT, TEACHER, T, [1, 1, 1]), rel=1e-5)


def test_soft_ce_background_weight_is_last_class_by_default():
    weights = rcn_class_weights(num_classes=2, bg_weight=1.5)  # Detectron2: background = index K = 2
    assert weights.tolist() == [1.0, 1.0, 1.5]
    got = soft_cross_entropy_with_temperature(torch.tensor(STUDENT), torch.tensor(TEACHER), T=10.0,
                                              class_weights=weights)
    assert got.item() == pytest.approx(_naive_soft_ce(STUDENT, TEACHER, 10.0, [1, 1, 1.5]), rel=1e-5)
    unweighted = soft_cross_entropy_with_temperature(torch.tensor(STUDENT), torch.tensor(TEACHER), T=10.0)
    assert got.item() > unweighted.item()


def test_soft_ce_sample_weights_match_hand_computation():
    v = torch.tensor([1.5, 1.0])  # the first RoI is background
    got = soft_cross_entropy_with_temperature(torch.tensor(STUDENT), torch.tensor(TEACHER), T=10.0, sample_weights=v)
    rows = [_naive_soft_ce([s], [t], 10.0, [1, 1, 1]) for s, t in zip(STUDENT, TEACHER)]
    assert got.item() == pytest.approx((1.5 * rows[0] + rows[1]) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="sample_weights"):
        soft_cross_entropy_with_temperature(torch.tensor(STUDENT), torch.tensor(TEACHER), sample_weights=v[:1])


def test_class_weighted_soft_ce_is_minimised_off_the_teacher_sample_weighted_at_it():
    """−Σ w_c P_t log P_s is minimal at P_s ∝ w ⊙ P_t: at the teacher's logits its gradient pushes the background
    logit up (by T·ln w_bg at the optimum); per-sample weights leave the teacher's logits a stationary point."""
    T, teacher = 10.0, torch.tensor(TEACHER)
    weights = rcn_class_weights(num_classes=2, bg_weight=1.5)
    at_teacher = teacher.clone().requires_grad_(True)
    soft_cross_entropy_with_temperature(at_teacher, teacher, T=T, class_weights=weights).backward()
    assert (at_teacher.grad[:, 2] < 0).all()  # descent raises the background logit
    at_teacher.grad = None
    soft_cross_entropy_with_temperature(at_teacher, teacher, T=T, sample_weights=torch.tensor([1.5, 1.0])).backward()
    assert at_teacher.grad.abs().max() < 1e-7
    # the class-weighted optimum: softmax(z/T) ∝ w ⊙ softmax(t/T), i.e. the background logit + T·ln 1.5
    shifted = (teacher + torch.tensor([0.0, 0.0, T * math.log(1.5)])).requires_grad_(True)
    soft_cross_entropy_with_temperature(shifted, teacher, T=T, class_weights=weights).backward()
    assert shifted.grad.abs().max() < 1e-6


def test_rcn_class_weights_background_index_parameter():
    assert rcn_class_weights(1, bg_weight=2.0, background_index=0).tolist() == [2.0, 1.0]
    with pytest.raises(ValueError, match="background_index"):
        rcn_class_weights(1, background_index=5)


def test_soft_ce_with_one_hot_teacher_and_T1_is_plain_cross_entropy():
    student = torch.tensor(STUDENT)
    labels = torch.tensor([2, 0])
    teacher = F.one_hot(labels, 3).float() * 200.0  # softmax is one-hot to float precision
    got = soft_cross_entropy_with_temperature(student, teacher, T=1.0)
    assert got.item() == pytest.approx(F.cross_entropy(student, labels).item(), rel=1e-6)


def test_soft_ce_gradient_reaches_student_only_and_empty_batch_is_zero():
    student = torch.tensor(STUDENT, requires_grad=True)
    teacher = torch.tensor(TEACHER, requires_grad=True)
    soft_cross_entropy_with_temperature(student, teacher).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
    empty = torch.zeros(0, 3, requires_grad=True)
    loss = soft_cross_entropy_with_temperature(empty, torch.zeros(0, 3))
    assert loss.item() == 0.0 and loss.requires_grad


def test_soft_ce_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        soft_cross_entropy_with_temperature(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="one entry per class"):
        soft_cross_entropy_with_temperature(torch.zeros(2, 3), torch.zeros(2, 3), class_weights=[1.0, 1.5])
    with pytest.raises(ValueError, match="temperature"):
        soft_cross_entropy_with_temperature(torch.zeros(2, 3), torch.zeros(2, 3), T=0.0)


def test_rpn_soft_objectness_matches_hand_computation_and_binary_softmax():
    student = [0.7, -2.0, 3.5, 0.0]
    teacher = [2.0, -4.0, 1.0, -0.3]
    T = 10.0
    sig = lambda z: 1.0 / (1.0 + math.exp(-z / T))
    expected = sum(-(sig(t) * math.log(sig(s)) + (1 - sig(t)) * math.log(1 - sig(s)))
                   for s, t in zip(student, teacher)) / len(student)
    got = rpn_soft_objectness_loss(torch.tensor(student), torch.tensor(teacher), T=T)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # Same value as the 2-class soft CE over logits [0, z] (the binary softmax).
    as_two_class = lambda z: torch.stack([torch.zeros(len(z)), torch.tensor(z)], dim=1)
    two_class = soft_cross_entropy_with_temperature(as_two_class(student), as_two_class(teacher), T=T)
    assert got.item() == pytest.approx(two_class.item(), rel=1e-5)


def test_distillation_cls_loss_mixes_hard_and_soft():
    assert distillation_cls_loss(torch.tensor(2.0), torch.tensor(6.0), mu=0.25).item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="mu"):
        distillation_cls_loss(torch.tensor(1.0), torch.tensor(1.0), mu=1.5)


def test_bounded_regression_switches_exactly_at_the_margin():
    # Teacher error ‖R_t − y‖² = 1; margin 0.25 → the loss is on iff the student error > 0.75.
    y = torch.zeros(3, 4, dtype=torch.float64)
    teacher = torch.tensor([[1.0, 0, 0, 0]] * 3, dtype=torch.float64)
    student = torch.tensor([[0.5, 0.5, 0.5, 0.0],          # error 0.75 exactly: 0.75 + m = 1, not > 1 → off
                            [0.5, 0.5, 0.4375, 0.25],      # error 0.75390625 (just above) → on
                            [0.5, 0.5, 0.4375, 0.125]],    # error 0.70703125 (just below) → off
                           dtype=torch.float64, requires_grad=True)
    loss = bounded_regression_loss(student, teacher, y, margin=0.25)
    assert loss.item() == pytest.approx(0.75390625 / 3, abs=1e-12)  # mean over all 3 samples
    loss.backward()
    assert student.grad[0].abs().sum() == 0 and student.grad[2].abs().sum() == 0
    assert torch.allclose(student.grad[1], 2 * student.detach()[1] / 3)
    # Without margin every student error (< 1) beats the teacher's → all off.
    assert bounded_regression_loss(student.detach(), teacher, y).item() == 0.0
    # A margin of 0.27 switches the 0.75 and 0.7539 rows on (0.75 + 0.27 > 1), 0.707 stays off.
    assert bounded_regression_loss(student.detach(), teacher, y, margin=0.27).item() == \
        pytest.approx((0.75 + 0.75390625) / 3, abs=1e-12)


def test_bounded_regression_without_margin_and_detached_teacher():
    y = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.0, 0.0, 0.0, 0.0]])
    student = torch.tensor([[0.1, 0.2, 0.3, 1.4], [0.5, 0.0, 0.0, 0.0]], requires_grad=True)  # errors 1, 0.25
    teacher = torch.tensor([[0.1, 0.2, 0.3, 0.9], [1.0, 0.0, 0.0, 0.0]], requires_grad=True)  # errors 0.25, 1
    loss = bounded_regression_loss(student, teacher, y)
    assert loss.item() == pytest.approx((1.0 + 0.0) / 2, rel=1e-6)
    loss.backward()
    assert teacher.grad is None
    with pytest.raises(ValueError, match="target_deltas"):
        bounded_regression_loss(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(3, 4))


def test_hint_loss_value_and_size_errors():
    student = torch.ones(1, 2, 2, 3, requires_grad=True)
    teacher = torch.zeros(1, 2, 2, 3)
    teacher[0, 1, 0, 2] = 3.0
    teacher.requires_grad_(True)
    loss = hint_loss(student, teacher)
    assert loss.item() == pytest.approx((11 * 1.0 + 4.0) / 12)  # eleven (1−0)², one (1−3)²
    loss.backward()
    assert student.grad.shape == student.shape and teacher.grad is None
    with pytest.raises(ValueError, match="spatial sizes differ.*\\(2, 3\\).*\\(2, 4\\)"):
        hint_loss(torch.zeros(1, 2, 2, 3), torch.zeros(1, 2, 2, 4))
    with pytest.raises(ValueError, match="adapter"):
        hint_loss(torch.zeros(1, 2, 2, 3), torch.zeros(1, 5, 2, 3))


def test_hint_loss_reductions_against_a_hand_computation():
    """Two images, C=2, H=2, W=3: image 0 has eleven squared errors 1 and one 4 (sum 15), image 1 twelve 4s (48)."""
    student = torch.ones(2, 2, 2, 3, requires_grad=True)
    teacher = torch.zeros(2, 2, 2, 3)
    teacher[0, 1, 0, 2] = 3.0
    teacher[1] = -1.0
    expected = {"sum_per_image": (15 + 48) / 2,  # Eq. 1's ‖·‖² per image, averaged over the 2 images
                "mean_per_position": (15 + 48) / (2 * 2 * 3),  # Σ over the 2 channels, mean over N·H·W = 12
                "mean": (15 + 48) / 24}  # mean over all N·C·H·W = 24 elements
    for reduction, value in expected.items():
        assert hint_loss(student, teacher, reduction).item() == pytest.approx(value), reduction
    hint_loss(student, teacher, "sum_per_image").backward()
    # d/ds of ½Σ_images Σ (s − t)²: (s − t) per element, i.e. 2(s − t)/N with N = 2
    assert torch.allclose(student.grad, (student - teacher).detach())
    with pytest.raises(ValueError, match="MODEL.KD.HINT.REDUCTION.*'sum'"):
        hint_loss(student, teacher, "sum")


def test_hint_adapter_maps_student_to_teacher_channels():
    adapter = HintAdapter(256, 1024)
    out = adapter(torch.randn(2, 256, 5, 7))
    assert out.shape == (2, 1024, 5, 7)
    assert sum(p.numel() for p in adapter.parameters()) == 256 * 1024 + 1024
    relu_adapter = HintAdapter(8, 16, relu=True)
    assert relu_adapter(torch.randn(1, 8, 3, 3)).min() >= 0
    assert (adapter(torch.randn(1, 256, 3, 3)) < 0).any()  # no ReLU by default
    with pytest.raises(ValueError, match="channel"):
        HintAdapter(0, 1024)


def test_strip_training_only_weights():
    model = nn.Module()
    model.backbone = nn.Conv2d(3, 4, 1)
    model.hint_adapter = HintAdapter(4, 8)
    model.roi_heads = nn.Module()
    model.roi_heads.kd_adapter = nn.Linear(2, 2)
    model.my_hint_adapter = nn.Linear(1, 1)  # not a KD module: only exact component names match
    state = model.state_dict()
    stripped = strip_training_only_weights(state)
    assert list(stripped) == ["backbone.weight", "backbone.bias",
                              "my_hint_adapter.weight", "my_hint_adapter.bias"]
    assert "hint_adapter.conv.weight" in state  # the input is not modified
    without_backbone = strip_training_only_weights(state, module_names=["backbone"])
    assert list(without_backbone)[0] == "hint_adapter.conv.weight"


def test_kd_config_keys_and_defaults():
    from reid2.config import get_cfg

    kd = get_cfg().MODEL.KD
    assert (kd.TEACHER_CONFIG, kd.TEACHER_WEIGHTS) == ("", "")
    assert (kd.HINT.ENABLED, kd.HINT.WEIGHT, kd.HINT.ADAPTER_RELU) == (False, 0.5, False)
    assert (kd.RPN.ENABLED, kd.RCN.ENABLED) == (False, False)
    assert (kd.MU, kd.TEMPERATURE, kd.BG_WEIGHT, kd.REG_WEIGHT, kd.REG_MARGIN) == (0.5, 10.0, 1.5, 0.5, 0.0)
    assert (kd.REID.LUT_SOURCE, kd.REID.LUT_KEY) == ("", "")
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.KD.REID.LUT_SOURCE", "teacher.pth", "MODEL.KD.TEMPERATURE", "4.0"])
    assert cfg.MODEL.KD.REID.LUT_SOURCE == "teacher.pth" and cfg.MODEL.KD.TEMPERATURE == 4.0
