"""SLSR (Ainam et al.) targets and loss: hand-computed label distributions, the LSRO / LSR equivalences,
the noise-adaptation layer."""
import math

import pytest
import torch

from reid2.config import get_cfg
from reid2.modeling.losses import cross_entropy_loss
from reid2.projects.slsr.loss import NoiseAdaptationLayer, SLSRLoss, slsr_loss
from reid2.projects.slsr.targets import batch_targets, cluster_label_sets, cluster_target_matrix, generated_pid

# Toy layout: 5 identities, 3 clusters of 7 images.
ASSIGN = [0, 0, 1, 1, 1, 2, 0]
PIDS = [0, 1, 1, 2, 3, 4, 0]
SETS = [[0, 1], [1, 2, 3], [4]]


def _cfg(**kv):
    cfg = get_cfg()
    cfg.SLSR.USE_GENERATED = False  # label sets passed in directly
    for k, v in kv.items():
        node = cfg
        *parents, leaf = k.split(".")
        for p in parents:
            node = getattr(node, p)
        setattr(node, leaf, v)
    return cfg


def test_cluster_label_sets_by_hand():
    assert cluster_label_sets(ASSIGN, PIDS, 3) == SETS
    # identity 0 has two images in cluster 0, every other (identity, cluster) pair one
    assert cluster_label_sets(ASSIGN, PIDS, 3, min_images=2) == [[0], [], []]
    with pytest.raises(ValueError):
        cluster_label_sets(ASSIGN[:-1], PIDS, 3)


def test_slsr_target_matrix_and_batch_targets_by_hand():
    q = cluster_target_matrix(SETS, 5, "slsr")
    expected = torch.tensor([[1 / 2, 1 / 2, 0, 0, 0],
                             [0, 1 / 3, 1 / 3, 1 / 3, 0],
                             [0, 0, 0, 0, 1.0]])
    torch.testing.assert_close(q, expected)
    pids = torch.tensor([2, generated_pid(0), generated_pid(1), generated_pid(2)])
    assert pids.tolist() == [2, -1, -2, -3]
    t = batch_targets(pids, q, 5)
    torch.testing.assert_close(t, torch.cat([torch.tensor([[0, 0, 1.0, 0, 0]]), expected]))
    # LSR on the real image: (1 - ε)·onehot + ε/K; generated rows unchanged
    t = batch_targets(pids, q, 5, real_epsilon=0.1)
    torch.testing.assert_close(t[0], torch.tensor([0.02, 0.02, 0.92, 0.02, 0.02]))
    torch.testing.assert_close(t[1:], expected)
    # LSRO: every cluster uniform over all K classes
    torch.testing.assert_close(cluster_target_matrix(SETS, 5, "lsro"), torch.full((3, 5), 0.2))
    with pytest.raises(ValueError, match="no identity"):
        cluster_target_matrix([[0], []], 5)
    with pytest.raises(ValueError, match="clusters"):
        batch_targets(torch.tensor([-5]), q, 5)


def test_slsr_loss_value_by_hand():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.2, 0.2]] * 4)
    logits = probs.log() + 3.0  # softmax(logits) == probs
    q = cluster_target_matrix(SETS, 5)
    pids = torch.tensor([2, -1, -2, -3])
    loss = SLSRLoss(_cfg(**{"SLSR.NOISE_LAYER.ENABLED": False}), 5, 8, label_sets=SETS)
    got = loss({"logits": logits, "targets": pids})["loss_slsr"]
    per_image = [-math.log(0.3),                                            # real, identity 2
                 -(math.log(0.1) + math.log(0.2)) / 2,                      # cluster {0, 1}
                 -(math.log(0.2) + math.log(0.3) + math.log(0.2)) / 3,      # cluster {1, 2, 3}
                 -math.log(0.2)]                                            # cluster {4}
    assert got.item() == pytest.approx(sum(per_image) / 4, rel=1e-5)
    # Eq. 13 uses the sparse label: not the public code's uniform (LSRO) term
    lsro = -sum(math.log(p) for p in [0.1, 0.2, 0.3, 0.2, 0.2]) / 5
    assert per_image[1] != pytest.approx(lsro)
    assert slsr_loss(logits, batch_targets(pids, q, 5)).item() == pytest.approx(got.item())


def test_one_cluster_with_every_class_equals_lsro():
    torch.manual_seed(0)
    k = 7
    logits = torch.randn(6, k)
    pids = torch.tensor([0, 3, -1, -1, 6, -1])
    cfg = _cfg(**{"SLSR.NOISE_LAYER.ENABLED": False})
    slsr = SLSRLoss(cfg, k, 8, label_sets=[list(range(k))])
    cfg_lsro = _cfg(**{"SLSR.NOISE_LAYER.ENABLED": False, "SLSR.LOSS.MODE": "lsro"})
    lsro = SLSRLoss(cfg_lsro, k, 8, label_sets=[[0]])  # LSRO ignores the label set
    a = slsr({"logits": logits, "targets": pids})["loss_slsr"]
    b = lsro({"logits": logits, "targets": pids})["loss_slsr"]
    torch.testing.assert_close(a, b)
    # the generated rows' term is -(1/K) Σ_k log p_k (Zheng et al.)
    gen = -torch.log_softmax(logits[2], 0).mean()
    only_gen = slsr({"logits": logits[2:3], "targets": pids[2:3]})["loss_slsr"]
    torch.testing.assert_close(only_gen, gen)


def test_real_images_only_equal_ce_and_lsr():
    torch.manual_seed(1)
    logits, y = torch.randn(8, 6), torch.randint(0, 6, (8,))
    for eps in (0.0, 0.1):
        cfg = _cfg(**{"SLSR.NOISE_LAYER.ENABLED": False, "SLSR.LOSS.REAL_EPSILON": eps})
        got = SLSRLoss(cfg, 6, 8)({"logits": logits, "targets": y})["loss_slsr"]
        torch.testing.assert_close(got, cross_entropy_loss(logits, y, eps))


def test_noise_layer_identity_at_init_learnable_and_a_distribution():
    torch.manual_seed(2)
    k = 5
    logits = torch.randn(4, k, requires_grad=True)
    pids = torch.tensor([1, -1, -2, 4])
    base = SLSRLoss(_cfg(**{"SLSR.NOISE_LAYER.ENABLED": False}), k, 8, label_sets=[[0, 1], [2, 3, 4]])
    noisy = SLSRLoss(_cfg(**{"SLSR.NOISE_LAYER.ENABLED": True, "SLSR.NOISE_LAYER.TYPE": "softmax"}), k, 8,
                     label_sets=[[0, 1], [2, 3, 4]])
    # the paper's reading (TYPE feature) lives in the model, not in the loss
    assert SLSRLoss(_cfg(**{"SLSR.NOISE_LAYER.ENABLED": True}), k, 8, label_sets=[[0, 1]]).noise_layer is None
    out = {"logits": logits, "targets": pids}
    torch.testing.assert_close(noisy(out)["loss_slsr"], base(out)["loss_slsr"])
    noisy(out)["loss_slsr"].backward()
    grad = noisy.noise_layer.linear.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    # only the generated rows go through it by default; with APPLY_TO all the real ones too
    assert noisy.apply_to == "generated"
    layer = NoiseAdaptationLayer(k)
    with torch.no_grad():
        layer.linear.weight.copy_(torch.randn(k, k))  # arbitrary, even negative, weights
    p = layer(torch.softmax(torch.randn(3, k), 1))
    assert (p > 0).all()
    torch.testing.assert_close(p.sum(1), torch.ones(3))
    with pytest.raises(ValueError, match="APPLY_TO"):
        SLSRLoss(_cfg(**{"SLSR.NOISE_LAYER.APPLY_TO": "real"}), k, 8)
    with pytest.raises(ValueError, match="NOISE_LAYER.TYPE"):
        SLSRLoss(_cfg(**{"SLSR.NOISE_LAYER.TYPE": "logits"}), k, 8)
