"""``evaluate_rank`` / ``evaluate_cuhk03_single_shot`` vs a copy of the reference per-query loop, hand examples and
real Market-1501 label arrays; ``compute_distance_matrix`` vs scipy."""
import itertools

import numpy as np
import pytest
import scipy.io as scipy_io
import torch
from scipy.spatial.distance import cdist

from reid2.evaluation.distance import compute_distance_matrix
from reid2.evaluation.rank import evaluate_cuhk03_single_shot, evaluate_rank
from tests.reference import reference_eval_market1501


def assert_same_as_reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    cmc, mAP, mINP, num_valid = reference_eval_market1501(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    result = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank)
    np.testing.assert_allclose(result["cmc"], cmc, rtol=1e-6)
    assert result["mAP"] == pytest.approx(mAP, rel=1e-12)
    assert result["mINP"] == pytest.approx(mINP, rel=1e-12)
    assert result["num_valid_queries"] == num_valid
    assert result["num_skipped_queries"] == len(distmat) - num_valid


def random_case(num_query, num_gallery, num_ids, num_cams, seed, integer_distances=False):
    """Labels with repeated pids/cams and distractor pid 0 in the gallery; float or heavily tied distances."""
    rng = np.random.default_rng(seed)
    q_pids, g_pids = rng.integers(1, num_ids + 1, num_query), rng.integers(0, num_ids + 1, num_gallery)
    q_cams, g_cams = rng.integers(0, num_cams, num_query), rng.integers(0, num_cams, num_gallery)
    if integer_distances:
        distmat = rng.integers(0, 4, (num_query, num_gallery)).astype(np.float32)
    else:
        distmat = rng.random((num_query, num_gallery)).astype(np.float32)
    return distmat, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("num_query,num_gallery,num_ids,num_cams,max_rank", [
    (30, 200, 10, 3, 50), (100, 400, 40, 6, 20), (7, 60, 3, 2, 30), (50, 300, 60, 2, 10)])
@pytest.mark.parametrize("integer_distances", [False, True])
def test_matches_reference_on_random_data(num_query, num_gallery, num_ids, num_cams, max_rank, integer_distances):
    case = random_case(num_query, num_gallery, num_ids, num_cams, seed=num_query, integer_distances=integer_distances)
    distmat, q_pids, g_pids, q_cams, g_cams = case
    assert_same_as_reference(*case, max_rank=max_rank)
    assert_same_as_reference(distmat.astype(np.float64), q_pids, g_pids, q_cams, g_cams, max_rank=max_rank)


def test_many_same_identity_items_use_the_sorting_path():
    """More same-pid gallery items than the counting path handles (> 256)."""
    distmat, q_pids, g_pids, q_cams, g_cams = random_case(6, 900, 2, 3, seed=5, integer_distances=True)
    assert_same_as_reference(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50)


def test_hand_example_from_the_notes():
    """q0 (pid 1, cam 0): g0 removed, ranking [1,0,1,0,0] → AP (1 + 2/3)/2, INP 2/3; q1 has no valid match."""
    distmat = np.tile(np.arange(6, dtype=np.float32), (2, 1))
    result = evaluate_rank(distmat, np.array([1, 2]), np.array([1, 1, 3, 1, 0, 2]), np.array([0, 0]),
                           np.array([0, 1, 1, 2, 1, 0]), max_rank=5)
    np.testing.assert_array_equal(result["cmc"], [1, 1, 1, 1, 1])
    assert result["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["mINP"] == pytest.approx(2 / 3)
    assert (result["num_valid_queries"], result["num_skipped_queries"]) == (1, 1)


def test_ties_follow_gallery_index():
    """Equal distances: the item with the smaller gallery index ranks first, whatever the labels."""
    distmat = np.zeros((1, 3), dtype=np.float32)
    negative_first = evaluate_rank(distmat, [1], [2, 1, 1], [0], [1, 1, 1], max_rank=3)
    assert negative_first["mAP"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    np.testing.assert_array_equal(negative_first["cmc"], [0, 1, 1])
    positive_first = evaluate_rank(distmat, [1], [1, 2, 1], [0], [1, 1, 1], max_rank=3)
    assert positive_first["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    assert positive_first["mINP"] == pytest.approx(2 / 3)


def test_short_gallery_pads_cmc():
    """num_gallery < max_rank → cmc has num_gallery entries; a query keeping fewer items is padded with 1."""
    distmat = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.1, 0.2]], dtype=np.float32)
    # q0 keeps 4 items, match at rank 3; q1 (cam 0) loses g0, g1 (pid 2, cam 0), keeps 2, match at rank 2
    result = evaluate_rank(distmat, [1, 2], [2, 2, 1, 2], [0, 0], [0, 0, 1, 1], max_rank=50)
    np.testing.assert_allclose(result["cmc"], [0, 0.5, 1, 1])
    assert result["mAP"] == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_no_camera_mode_keeps_same_camera_matches():
    distmat, q_pids, g_pids, _, _ = random_case(20, 100, 5, 1, seed=3)
    no_cams = evaluate_rank(distmat, q_pids, g_pids, None, None, max_rank=10)
    different_cams = evaluate_rank(distmat, q_pids, g_pids, np.zeros(20), np.ones(100), max_rank=10)
    assert no_cams["num_skipped_queries"] == 0
    for key in ("cmc", "mAP", "mINP"):
        np.testing.assert_array_equal(no_cams[key], different_cams[key])
    with pytest.raises(ValueError, match="both"):
        evaluate_rank(distmat, q_pids, g_pids, None, np.ones(100), max_rank=10)


def test_string_labels_and_torch_distmat():
    distmat, q_pids, g_pids, q_cams, g_cams = random_case(25, 120, 6, 3, seed=4)
    expected = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams)
    as_strings = evaluate_rank(torch.from_numpy(distmat), np.char.add("id", q_pids.astype(str)),
                               [f"id{p}" for p in g_pids], np.char.add("c", q_cams.astype(str)),
                               np.char.add("c", g_cams.astype(str)))
    for key in ("cmc", "mAP", "mINP", "num_valid_queries"):
        np.testing.assert_array_equal(as_strings[key], expected[key])


@pytest.mark.parametrize("kwargs,match", [
    (dict(q_pids=[5, 6]), "none of the 2 queries"),
    (dict(q_camids=[0, 0], g_camids=[0, 0, 1]), "none of the 2 queries"),  # every match is same-camera
    (dict(g_pids=[1, 2]), "g_pids"),
    (dict(distmat=np.zeros(3)), "2-D"),
    (dict(distmat=np.full((2, 3), np.nan)), "NaN"),
    (dict(max_rank=0), "max_rank"),
])
def test_bad_input_raises(kwargs, match):
    args = dict(distmat=np.zeros((2, 3)), q_pids=[1, 2], g_pids=[1, 2, 3], q_camids=[0, 1], g_camids=[1, 0, 1])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        evaluate_rank(**args)


def load_market_labels(shared_dir):
    meta = shared_dir / "data" / "market1501_meta" / "person-re-ranking"
    if not meta.is_dir():
        pytest.skip(f"{meta} (real Market-1501 label arrays) is absent")
    names = ("queryID", "queryCam", "testID", "testCam")
    read = {name: scipy_io.loadmat(meta / f"{name}.mat") for name in names}
    q_pids, q_cams = read["queryID"]["queryID"].ravel(), read["queryCam"]["queryCAM"].ravel()
    g_pids, g_cams = read["testID"]["testID"].ravel(), read["testCam"]["testCAM"].ravel()
    keep = g_pids != -1  # junk: dropped by the dataset loaders, not by the metric
    return q_pids.astype(np.int64), g_pids[keep].astype(np.int64), q_cams, g_cams[keep]


def identity_features(q_pids, g_pids, rng, dim=32, noise=1.2):
    """Query and gallery features scattered around one random centre per identity."""
    pids = np.concatenate([q_pids, g_pids])
    codes = np.unique(pids, return_inverse=True)[1].reshape(-1)
    feats = rng.standard_normal((codes.max() + 1, dim))[codes] + noise * rng.standard_normal((len(pids), dim))
    return feats[:len(q_pids)], feats[len(q_pids):]


def test_real_market_labels_subsample(shared_dir):
    q_pids, g_pids, q_cams, g_cams = load_market_labels(shared_dir)
    assert (len(q_pids), len(g_pids), int((g_pids == 0).sum())) == (3368, 15913, 2798)
    rng = np.random.default_rng(0)
    queries = rng.choice(len(q_pids), 150, replace=False)
    same_pid = np.flatnonzero(np.isin(g_pids, q_pids[queries]))
    others = rng.choice(np.flatnonzero(~np.isin(g_pids, q_pids[queries])), 1500, replace=False)
    gallery = np.sort(np.concatenate([same_pid, others]))
    q_pids, q_cams, g_pids, g_cams = q_pids[queries], q_cams[queries], g_pids[gallery], g_cams[gallery]
    distmat = compute_distance_matrix(*identity_features(q_pids, g_pids, rng))
    assert_same_as_reference(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50)
    result = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams)
    assert 0.2 < result["cmc"][0] < 1 and 0.05 < result["mAP"] < result["cmc"][0]  # ranks do vary


# --- CUHK03 single-gallery-shot -----------------------------------------------------------------------------

def exact_single_shot_cmc(distmat, q_pids, g_pids, q_cams, g_cams, max_rank):
    """Expected single-shot CMC by enumerating every one-image-per-identity gallery (tiny cases only)."""
    cmcs = []
    for q in range(len(distmat)):
        keep = ~((g_pids == q_pids[q]) & (g_cams == q_cams[q]))
        if not (g_pids[keep] == q_pids[q]).any():
            continue
        groups = [np.flatnonzero(keep & (g_pids == pid)) for pid in np.unique(g_pids[keep])]
        hits = []
        for chosen in itertools.product(*groups):
            chosen = np.array(chosen)
            ranked = chosen[np.argsort(distmat[q, chosen], kind="stable")]
            rank = np.flatnonzero(g_pids[ranked] == q_pids[q])[0]
            hits.append(np.arange(max_rank) >= rank)
        cmcs.append(np.mean(hits, axis=0))
    return np.mean(cmcs, axis=0)


def test_single_shot_converges_to_the_exact_expectation():
    rng = np.random.default_rng(1)
    g_pids = np.array([1, 1, 1, 2, 2, 3, 3, 0, 0, 4])
    g_cams = np.array([0, 1, 1, 0, 1, 1, 0, 1, 0, 1])
    q_pids, q_cams = np.array([1, 2, 3, 4]), np.array([0, 0, 0, 1])  # pid 4's only image is same-camera
    distmat = rng.random((4, 10))
    expected = exact_single_shot_cmc(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=5)
    result = evaluate_cuhk03_single_shot(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50,
                                         num_repeats=20000)
    assert len(result["cmc"]) == 5  # one image per identity: 5 gallery identities (pid 0 counts as one)
    np.testing.assert_allclose(result["cmc"], expected, atol=0.01)
    assert result["num_valid_queries"] == 3 and result["num_skipped_queries"] == 1
    assert result["mAP"] == pytest.approx(evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams)["mAP"])


def test_single_shot_is_seeded_and_exact_with_one_image_per_identity():
    distmat, q_pids, g_pids, q_cams, g_cams = random_case(40, 200, 10, 3, seed=7)
    first = evaluate_cuhk03_single_shot(distmat, q_pids, g_pids, q_cams, g_cams, seed=3)
    np.testing.assert_array_equal(first["cmc"], evaluate_cuhk03_single_shot(
        distmat, q_pids, g_pids, q_cams, g_cams, seed=3)["cmc"])
    assert not np.array_equal(first["cmc"], evaluate_cuhk03_single_shot(
        distmat, q_pids, g_pids, q_cams, g_cams, seed=4)["cmc"])
    # one gallery image per identity: nothing to sample, the CMC is the Market one (ties included)
    distmat, q_pids, g_pids, q_cams, g_cams = random_case(40, 200, 10, 3, seed=7, integer_distances=True)
    single = np.unique(g_pids, return_index=True)[1]
    args = (distmat[:, single], q_pids, g_pids[single], q_cams, g_cams[single] * 0 + 9)
    np.testing.assert_allclose(evaluate_cuhk03_single_shot(*args, max_rank=8, num_repeats=3)["cmc"],
                               evaluate_rank(*args, max_rank=8)["cmc"])


# --- distance matrix ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("metric,normalize", [("euclidean", False), ("euclidean", True), ("cosine", False)])
def test_distance_matrix_matches_scipy(metric, normalize):
    rng = np.random.default_rng(0)
    query, gallery = rng.standard_normal((13, 24)), rng.standard_normal((57, 24))
    if normalize:
        expected = cdist(query / np.linalg.norm(query, axis=1, keepdims=True),
                         gallery / np.linalg.norm(gallery, axis=1, keepdims=True))
    else:
        expected = cdist(query, gallery, metric)
    for q, g in ((query, gallery), (torch.from_numpy(query), torch.from_numpy(gallery))):
        result = compute_distance_matrix(q, g, metric=metric, normalize=normalize, block_elements=100)
        assert result.dtype == np.float32 and result.shape == (13, 57)
        np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-4)


def test_distance_matrix_bad_input():
    with pytest.raises(ValueError, match="feature dimension"):
        compute_distance_matrix(np.zeros((2, 3)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="metric"):
        compute_distance_matrix(np.zeros((2, 3)), np.zeros((4, 3)), metric="l1")
    with pytest.raises(ValueError, match="query_feats"):
        compute_distance_matrix(np.zeros(3), np.zeros((4, 3)))


# ------------------------------------------------------------------------------------- multi-query pooling
def _evaluate_with(evaluator, feats, pids, camids, splits):
    import torch

    evaluator.reset()
    evaluator.process({"targets": torch.tensor(pids), "camids": torch.tensor(camids), "splits": splits},
                      torch.tensor(feats, dtype=torch.float32))
    return evaluator.evaluate()["reid"]


def test_pool_multi_query_by_hand():
    import torch

    from reid2.evaluation import pool_multi_query

    feats = torch.tensor([[1.0, 0.0], [0.0, 3.0], [2.0, 2.0], [4.0, -1.0]])
    pooled, pids, camids = pool_multi_query(feats, [7, 5, 7, 7], [1, 1, 1, 2], "avg")
    assert pids.tolist() == [7, 5, 7] and camids.tolist() == [1, 1, 2]  # order of first appearance
    assert torch.allclose(pooled, torch.tensor([[1.5, 1.0], [0.0, 3.0], [4.0, -1.0]]))
    pooled, _, _ = pool_multi_query(feats, [7, 5, 7, 7], [1, 1, 1, 2], "max")
    assert torch.allclose(pooled, torch.tensor([[2.0, 2.0], [0.0, 3.0], [4.0, -1.0]]))
    with pytest.raises(ValueError, match="MULTI_QUERY_POOLING"):
        pool_multi_query(feats, [1] * 4, [1] * 4, "median")


def test_multi_query_evaluation_pools_per_pid_and_camera():
    """Two views of pid 1 in camera 0, each alone closer to the wrong gallery image; their mean finds the right one."""
    from reid2.evaluation import ReIDEvaluator

    feats = [[1.0, 0.2], [0.2, 1.0],            # queries: pid 1, cam 0 (two gt_bbox views)
             [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]  # gallery: pid 1 cam 1, pid 2 cam 1, pid 3 cam 1
    pids, camids = [1, 1, 1, 2, 3], [0, 0, 1, 1, 1]
    splits = ["query", "query", "gallery", "gallery", "gallery"]
    single = _evaluate_with(ReIDEvaluator("x"), feats, pids, camids, splits)
    pooled = _evaluate_with(ReIDEvaluator("x", multi_query_pooling="avg"), feats, pids, camids, splits)
    assert single["Rank-1"] == 0.0 and single["mAP"] == pytest.approx(50.0)
    assert pooled["Rank-1"] == 100.0 and pooled["mAP"] == 100.0


def test_multi_query_test_set_turns_pooling_on(datasets_root):
    from detectron2.data import DatasetCatalog

    from reid2.config import get_cfg
    from reid2.evaluation import ReIDEvaluator

    DatasetCatalog.get("synthetic_market_multiquery_test")
    cfg = get_cfg()
    assert ReIDEvaluator.from_config(cfg, "synthetic_market_multiquery_test").multi_query_pooling == "avg"
    assert ReIDEvaluator.from_config(cfg, "synthetic_market_test").multi_query_pooling is None
