"""``re_ranking`` against a line-by-line copy of the reference k-reciprocal code (torchreid / fast-reid)."""
import numpy as np
import pytest
import torch

from reid2.evaluation import rerank
from reid2.evaluation.rerank import re_ranking
from tests.reference import reference_re_ranking


def clustered_distances(num_query, num_gallery, num_ids=20, dim=16, seed=0, dtype=np.float32):
    """(qg, qq, gg) euclidean distances of features clustered by identity.

    Checked free of ties among each row's 32 nearest neighbours (the reference's argsort order among equal
    distances is unspecified, and only these neighbours are used).
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_ids, dim))
    feats = centres[rng.integers(num_ids, size=num_query + num_gallery)] \
        + 0.7 * rng.standard_normal((num_query + num_gallery, dim))
    full = np.linalg.norm(feats[:, None] - feats[None], axis=2).astype(dtype)
    normalised = np.power(full, 2).astype(np.float32) / np.power(full, 2).astype(np.float32).max(0)
    nearest = np.sort(normalised.T, axis=1)[:, :32]
    assert (np.diff(nearest, axis=1) > 0).all(), "pick another seed: tie in the test data"
    q, g = slice(0, num_query), slice(num_query, None)
    return full[q, g], full[q, q], full[g, g]


@pytest.mark.parametrize("num_query,num_gallery,k1,k2,lambda_value,seed", [
    (40, 160, 20, 6, 0.3, 0),    # paper parameters
    (25, 200, 12, 3, 0.5, 1),
    (60, 240, 7, 1, 0.1, 2),     # k2 = 1: no local query expansion; round(7/2) = 4
    (5, 30, 5, 6, 0.3, 3),       # round(5/2) = 2 (banker's rounding, as np.around)
    (3, 10, 20, 20, 0.3, 11),    # fewer items than k1 + 1 and k2
])
def test_matches_reference(num_query, num_gallery, k1, k2, lambda_value, seed):
    qg, qq, gg = clustered_distances(num_query, num_gallery, seed=seed)
    expected = reference_re_ranking(qg, qq, gg, k1, k2, lambda_value)
    result = re_ranking(qg, qq, gg, k1=k1, k2=k2, lambda_value=lambda_value)
    assert result.shape == (num_query, num_gallery) and result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=0, atol=2e-6)


def test_small_blocks_give_the_same_result(monkeypatch):
    """Several row blocks for the neighbour search and the Jaccard step, crossing the query/gallery border."""
    qg, qq, gg = clustered_distances(50, 250, seed=4)
    expected = reference_re_ranking(qg, qq, gg)
    np.testing.assert_allclose(re_ranking(qg, qq, gg, block_rows=17), expected, rtol=0, atol=2e-6)
    monkeypatch.setattr(rerank, "_SELECT_ROWS", 5)
    monkeypatch.setattr(rerank, "_JACCARD_PAIRS", 3000)  # Jaccard blocks bounded by expanded pairs
    np.testing.assert_allclose(re_ranking(qg, qq, gg), expected, rtol=0, atol=2e-6)


def test_float64_and_torch_inputs():
    """Squared in the inputs' dtype before the float32 cast, as the reference; torch tensors accepted."""
    qg, qq, gg = clustered_distances(30, 120, seed=5, dtype=np.float64)
    expected = reference_re_ranking(qg, qq, gg)
    np.testing.assert_allclose(re_ranking(qg, qq, gg), expected, rtol=0, atol=2e-6)
    tensors = [torch.from_numpy(x) for x in (qg, qq, gg)]
    np.testing.assert_allclose(re_ranking(*tensors), expected, rtol=0, atol=2e-6)


def test_asymmetric_inputs_follow_the_reference_transpose():
    """The reference normalises columns of D then transposes; an asymmetric g_g_dist reveals the convention."""
    qg, qq, gg = clustered_distances(20, 100, seed=6)
    rng = np.random.default_rng(0)
    gg = gg * rng.uniform(0.9, 1.1, gg.shape).astype(np.float32)
    np.testing.assert_allclose(re_ranking(qg, qq, gg), reference_re_ranking(qg, qq, gg), rtol=0, atol=2e-6)


def test_lambda_one_is_the_normalised_squared_distance():
    qg, qq, gg = clustered_distances(10, 50, seed=7)
    column_max = np.maximum((qq ** 2).max(0), (qg ** 2).max(1))
    np.testing.assert_allclose(re_ranking(qg, qq, gg, lambda_value=1.0), qg ** 2 / column_max[:, None], rtol=1e-6)


@pytest.mark.parametrize("args,match", [
    ((np.zeros((3, 4)), np.zeros((3, 3)), np.zeros((5, 5))), "g_g_dist"),
    ((np.zeros((3, 4)), np.zeros((4, 4)), np.zeros((4, 4))), "q_q_dist"),
    ((np.zeros(4), np.zeros((3, 3)), np.zeros((4, 4))), "q_g_dist"),
])
def test_bad_shapes_raise(args, match):
    with pytest.raises(ValueError, match=match):
        re_ranking(*args)


def test_bad_k_raises():
    qg, qq, gg = clustered_distances(5, 20, seed=8)
    with pytest.raises(ValueError, match="k1"):
        re_ranking(qg, qq, gg, k1=0)
