"""projects/UnsupervisedRSL: reliable / soft labels (Sun & Jung), PUL, label-blindness, rounds and resume."""
import json
import math
import shutil

import numpy as np
import pytest
import torch

import reid2  # noqa: F401
import reid2.projects.rsl as rsl
from reid2.projects.rsl import labels as L
from reid2.utils.arrays import l2_normalize
from tests.helpers import REPO, run_tool

CFG = "projects/UnsupervisedRSL/configs/synthetic_rsl_tiny.yaml"
# Tiny synthetic data: 12 training identities over 4 cameras.
# Fixed-length rounds unless a test sets RSL.EPOCHS_PER_ROUND.
TINY = ["RSL.NUM_CLUSTERS", "12", "RSL.EPOCHS_PER_ROUND", "0", "SOLVER.IMS_PER_BATCH", "8", "TEST.IMS_PER_BATCH", "64",
        "REID2.LOG_PERIOD", "1", "MODEL.REID_BACKBONE.WIDTH", "8", "REID2.DEVICE", "cpu"]


# ---- label computations on constructed features -------------------------------------------------
def _unit(*v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _constructed():
    """Two cameras; per camera 3 images near each of two directions, plus one outlier on the diagonal."""
    rng = np.random.default_rng(0)
    e = np.eye(3)
    feats, cams, truth = [], [], []
    for cam, dirs in ((0, (0, 1)), (1, (0, 2))):
        for d in dirs:
            for _ in range(3):
                feats.append(e[d] + 0.01 * rng.standard_normal(3))
                cams.append(cam)
                truth.append(d)
        feats.append(_unit(1, 1, 1))
        cams.append(cam)
        truth.append(9)
    return np.asarray(feats), np.asarray(cams), np.asarray(truth)


def test_soft_labels_match_hand_computation():
    centers = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    f = np.array([[3.2, 2.4]])  # direction (0.8, 0.6): cosines 0.8, 0.6, 0.96
    t = 0.02
    e = [math.exp(s / t) for s in (0.8, 0.6, 0.96)]
    hand = [x / sum(e) for x in e]
    np.testing.assert_allclose(L.soft_labels(f, centers, t)[0], hand, rtol=1e-5)
    # t large -> uniform; rows sum to 1
    np.testing.assert_allclose(L.soft_labels(f, centers, 1e6)[0], [1 / 3] * 3, rtol=1e-5)
    with pytest.raises(ValueError):
        L.soft_labels(f, centers, 0.0)


def test_rsl_reliable_selection_and_soft_labels_on_constructed_features():
    feats, cams, truth = _constructed()
    out = L.rsl_labels(feats, cams, num_clusters=3, camera_clusters=2, lam=0.85, temperature=0.02)
    # the two diagonal outliers have cosine ~0.74 to their camera cluster's centroid; the rest > 0.97
    np.testing.assert_array_equal(out.reliable, truth != 9)
    assert out.stats == {"num_reliable": 12, "num_soft": 2, "num_clusters": 3, "num_camera_clusters": 4}
    # re-clustering across cameras recovers the three directions (e1 seen by both cameras)
    q = L.cluster_quality(out.labels, truth, out.reliable)
    assert q["purity"] == 1.0 and q["nmi"] == pytest.approx(1.0)
    # soft labels of the outliers = softmax(cos(f, C) / t) over the re-clustering centroids (by hand)
    rel = out.reliable
    C = np.stack([l2_normalize(feats[rel], axis=1, dtype=np.float64)[out.labels[rel] == k].mean(0) for k in range(3)])
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    for i in np.flatnonzero(~rel):
        s = C @ _unit(*feats[i])
        hand = np.exp(s / 0.02) / np.exp(s / 0.02).sum()
        np.testing.assert_allclose(out.soft[i], hand, rtol=1e-4, atol=1e-7)
    assert not out.soft[rel].any() and out.use.all()
    # λ above every similarity: nothing reliable is an error; λ = -1: everything reliable, no soft label
    with pytest.raises(RuntimeError):
        L.rsl_labels(feats, cams, 3, camera_clusters=2, lam=1.01)
    assert L.rsl_labels(feats, cams, 3, camera_clusters=2, lam=-1.0).stats["num_soft"] == 0


def test_rsl_options_nearest_any_and_camera_centers():
    feats, cams, truth = _constructed()
    near = L.rsl_labels(feats, cams, 3, camera_clusters=2, lam=0.85, centers="nearest")
    np.testing.assert_array_equal(near.reliable, truth != 9)
    anyc = L.rsl_labels(feats, cams, 3, camera_clusters=2, lam=0.5, select="any")
    assert anyc.reliable.all()  # the outlier is within 0.5 of some center
    cc = L.rsl_labels(feats, cams, 3, camera_clusters=2, lam=0.85, recluster="camera_centers")
    assert L.cluster_quality(cc.labels, truth, cc.reliable)["purity"] == 1.0
    assert L.num_camera_clusters(0.25, 10) == 2 and L.num_camera_clusters(4, 3) == 3


def test_pul_selection_on_constructed_features():
    feats, cams, truth = _constructed()
    feats = feats[cams == 0]  # PUL ignores cameras: one set with two clusters and one outlier
    truth = truth[cams == 0]
    out = L.pul_labels(feats, num_clusters=2, lam=0.85)
    # centers are images (nearest the centroids): cos(outlier, e_k) = 0.577 < λ
    np.testing.assert_array_equal(out.reliable, truth != 9)
    np.testing.assert_array_equal(out.use, truth != 9)
    assert not out.soft.any() and out.stats["num_soft"] == 0
    assert L.cluster_quality(out.labels, truth, out.reliable)["purity"] == 1.0
    assert L.pul_labels(feats, 2, lam=0.5).reliable.all()  # 0.577 > 0.5: reliable to *any* center


def test_cluster_quality_by_hand():
    pseudo = np.array([0, 0, 0, 1, 1, 2])
    true = np.array([5, 5, 7, 7, 7, 8])
    q = L.cluster_quality(pseudo, true)
    assert q["purity"] == pytest.approx(5 / 6)
    from sklearn.metrics import normalized_mutual_info_score

    assert q["nmi"] == pytest.approx(normalized_mutual_info_score(true, pseudo))


def test_model_loss_mixes_hard_and_soft_targets():
    from reid2.config import get_cfg
    from reid2.projects.rsl import RSLReID

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / CFG))
    cfg.merge_from_list(TINY + ["MODEL.REID.DROPOUT", "0.0", "MODEL.REID.BN_NECK", "True"])
    model = RSLReID(cfg).train()
    torch.manual_seed(0)
    images = torch.randn(4, 3, 128, 64)
    targets = torch.tensor([3, -1, 0, -1])
    soft = torch.zeros(4, 12)
    soft[1, :3] = torch.tensor([0.5, 0.3, 0.2])
    soft[3, 5] = 1.0
    losses = model({"images": images, "targets": targets, "soft_targets": soft})
    with torch.no_grad():  # train mode too: BN on the batch statistics, as in the forward
        logp = torch.log_softmax(model.classifier(model.bottleneck(model.pooled_features(images))), 1)
    hard = -(logp[0, 3] + logp[2, 0]) / 4
    soft_l = -(soft[1] * logp[1]).sum() / 4 - logp[3, 5] / 4
    assert losses["loss_reliable"].item() == pytest.approx(hard.item(), rel=1e-4)
    assert losses["loss_soft"].item() == pytest.approx(soft_l.item(), rel=1e-4)


def test_model_takes_every_reid_baseline_argument(monkeypatch):
    """RSLReID's config is ReIDBaseline's with its own classifier size and loss: a new ReIDBaseline argument
    reaches it without an edit here."""
    from reid2.config import get_cfg
    from reid2.modeling import ReIDBaseline
    from reid2.projects.rsl import RSLReID

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / CFG))
    cfg.merge_from_list(TINY + ["MODEL.REID.NUM_CLASSES", "5", "MODEL.REID.EMBEDDING_DIM", "16"])
    base, args = ReIDBaseline.from_config(cfg), RSLReID.from_config(cfg)
    assert set(args) == set(base) | {"reliable_weight", "soft_weight"}
    assert args["num_classes"] == 12 and args["losses_cfg"] is None
    assert {k: v for k, v in args.items() if k in base and k not in ("backbone", "num_classes", "losses_cfg")} == \
        {k: v for k, v in base.items() if k not in ("backbone", "num_classes", "losses_cfg")}
    original = ReIDBaseline.from_config.__func__
    monkeypatch.setattr(ReIDBaseline, "from_config",
                        classmethod(lambda cls, cfg, **kw: dict(original(cls, cfg, **kw), new_argument=7)))
    assert RSLReID.from_config(cfg)["new_argument"] == 7


def test_paper_augmentation():
    import torchvision.transforms as T
    from PIL import Image

    from reid2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "projects/UnsupervisedRSL/configs/market1501_rsl_r50.yaml"))
    tf = rsl.build_rsl_train_transform(cfg)
    affine = next(t for t in tf.transforms if isinstance(t, T.RandomAffine))
    assert list(affine.degrees) == [-20.0, 20.0] and affine.translate == (0.2, 0.2)  # 0.2 * 224 ≈ 45 px
    assert not any(isinstance(t, T.RandomHorizontalFlip) for t in tf.transforms)
    assert tf(Image.new("RGB", (64, 128))).shape == (3, 224, 224)


# ---- trainer: label-blindness, rounds, resume ---------------------------------------------------
def _cfg(out, *opts):
    from reid2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / CFG))
    cfg.merge_from_list(TINY + ["OUTPUT_DIR", str(out), *opts])
    from reid2.engine import resolve_device

    resolve_device(cfg)
    cfg.freeze()
    return cfg


def _train(cfg, resume=False):
    torch.manual_seed(cfg.SEED)  # as default_setup: the same random initial model
    trainer = rsl.RSLTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    trainer.train()
    return trainer


_SCRAMBLED = "rsl_test_scrambled_market_train"


def _register_scrambled():
    from detectron2.data import DatasetCatalog

    if _SCRAMBLED in DatasetCatalog.list():
        return

    def load():
        dicts = [dict(d) for d in DatasetCatalog.get("synthetic_market_train")]
        perm = np.random.default_rng(123).permutation(len(dicts))
        for d, j in zip(dicts, perm):  # every identity field comes from another image
            src = DatasetCatalog.get("synthetic_market_train")[j]
            d["pid"], d["orig_pid"], d["image_id"] = src["pid"], src["orig_pid"], "scrambled_" + src["image_id"]
        return dicts

    DatasetCatalog.register(_SCRAMBLED, load)


@pytest.mark.parametrize("method", ["rsl", "pul"])
def test_label_blindness_scrambled_training_pids_change_nothing(datasets_root, tmp_path, method):
    _register_scrambled()
    opts = ["RSL.METHOD", method, "RSL.ROUNDS", "2", "RSL.ITERS_PER_ROUND", "3", "RSL.EVAL_EACH_ROUND", "False",
            "RSL.LAMBDA", "0.97", "SOLVER.CHECKPOINT_PERIOD", "1000"]
    if method == "pul":
        opts += ["RSL.FINETUNE_FROM", "initial", "RSL.KMEANS_NORMALIZE", "False", "RSL.LAMBDA", "0.995"]
    a = _train(_cfg(tmp_path / "a", *opts))
    b = _train(_cfg(tmp_path / "b", *opts, "DATASETS.TRAIN", f"('{_SCRAMBLED}',)"))
    la, lb = a.round_hook.labels, b.round_hook.labels
    ha, hb = a.round_hook.history, b.round_hook.history
    assert any(0 < h["num_reliable"] < len(la.labels) for h in ha)  # reliable and unselected images in a round
    np.testing.assert_array_equal(la.labels, lb.labels)
    np.testing.assert_array_equal(la.soft, lb.soft)
    np.testing.assert_array_equal(la.use, lb.use)
    for (k, va), (_, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(va, vb), k
    assert [h["num_reliable"] for h in ha] == [h["num_reliable"] for h in hb]
    # the reporting (only) did see the scrambled labels
    assert [(h["purity"], h["nmi"]) for h in ha] != [(h["purity"], h["nmi"]) for h in hb]


@pytest.mark.parametrize("method", ["rsl", "pul"])
def test_resume_inside_and_across_round_boundary(datasets_root, tmp_path, monkeypatch, method):
    opts = ["RSL.ROUNDS", "2", "RSL.ITERS_PER_ROUND", "4", "SOLVER.CHECKPOINT_PERIOD", "3", "RSL.LAMBDA", "0.97"]
    if method == "pul":  # PUL restarts every round from the starting model: kept across the resume too
        opts += ["RSL.METHOD", "pul", "RSL.FINETUNE_FROM", "initial", "RSL.KMEANS_NORMALIZE", "False",
                 "RSL.LAMBDA", "0.995"]
    torch.manual_seed(0)  # the starting model (MODEL.WEIGHTS), as a source-trained model would be
    start = tmp_path / "start.pth"
    torch.save({"model": rsl.RSLReID(_cfg(tmp_path / "unused")).state_dict()}, start)
    opts += ["MODEL.WEIGHTS", str(start)]
    full = _train(_cfg(tmp_path / "full", *opts))
    out = tmp_path / "full"
    assert {"model_0000002.pth", "model_0000005.pth", "model_round00.pth", "model_round01.pth",
            "model_final.pth"} <= {p.name for p in out.iterdir()}
    rounds = json.loads((out / "rsl_rounds.json").read_text())
    assert [r["round"] for r in rounds] == [0, 1] and [r["iteration"] for r in rounds] == [0, 4]
    for r in rounds:
        assert {"num_reliable", "num_soft", "purity", "nmi", "Rank-1", "mAP"} <= set(r)
    ref = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["model"]

    calls = []
    real = rsl.trainer.compute_round_labels
    monkeypatch.setattr(rsl.trainer, "compute_round_labels", lambda *a, **k: calls.append(1) or real(*a, **k))
    # ckpt iteration 2 (round 0) -> crosses into round 1, which is clustered after resuming;
    # ckpt iteration 5 (inside round 1) -> round 1's labels come from the checkpoint.
    for ckpt, start, expected_calls in (("model_0000002.pth", 3, 1), ("model_0000005.pth", 6, 0)):
        calls.clear()
        run = tmp_path / f"resume_{start}"
        run.mkdir()
        shutil.copy(out / ckpt, run / ckpt)
        (run / "last_checkpoint").write_text(ckpt)
        cfg = _cfg(run, *opts)
        torch.manual_seed(99)  # a different random init: everything must come from the checkpoint
        trainer = rsl.RSLTrainer(cfg)
        trainer.resume_or_load(resume=True)
        assert trainer.start_iter == start
        trainer.train()
        assert len(calls) == expected_calls
        assert [h["round"] for h in trainer.round_hook.history] == [0, 1]
        np.testing.assert_array_equal(trainer.round_hook.labels.labels, full.round_hook.labels.labels)
        got = torch.load(run / "model_final.pth", map_location="cpu", weights_only=False)["model"]
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-6, msg=k)
        hist = json.loads((run / "rsl_rounds.json").read_text())
        assert hist[1]["num_reliable"] == rounds[1]["num_reliable"]
        assert hist[1]["Rank-1"] == pytest.approx(rounds[1]["Rank-1"], abs=1e-6)


def test_train_net_rounds_and_resume(datasets_root, tmp_path):
    """The project is imported by tools/train_net.py; --resume continues with the next round."""
    out = tmp_path / "cli"
    env = {"REID2_DATASETS": str(datasets_root)}
    base = ["tools/train_net.py", "--config-file", CFG, *TINY, "RSL.ITERS_PER_ROUND", "3", "OUTPUT_DIR", str(out)]
    res = run_tool(base + ["RSL.ROUNDS", "1"], env_extra=env)
    assert res.returncode == 0, res.stderr[-4000:]
    res = run_tool(base[:3] + ["--resume"] + base[3:] + ["RSL.ROUNDS", "2"], env_extra=env)
    assert res.returncode == 0, res.stderr[-4000:]
    log = res.stderr + res.stdout
    assert "Starting training from iteration 3" in log and "RSL round 1 (rsl)" in log
    rounds = json.loads((out / "rsl_rounds.json").read_text())
    assert [r["round"] for r in rounds] == [0, 1]
    assert all(0.0 <= r["Rank-1"] <= 100.0 and 0.0 <= r["mAP"] <= 100.0 for r in rounds)


@pytest.mark.parametrize("length", ["iters", pytest.param("epochs", marks=pytest.mark.slow)])
def test_sigkilled_rounds_resume_bit_identical(datasets_root, tmp_path, length):
    """Killed (SIGKILL) in round 0 and resumed with --resume: round 1 clusters the same model into the same labels,
    and the final checkpoint equals the uninterrupted run's tensor by tensor (fixed or epoch-counted rounds)."""
    from tests.helpers import assert_same_checkpoint, kill_and_resume

    env = {"REID2_DATASETS": str(datasets_root), "OMP_NUM_THREADS": "1"}
    rounds = (["RSL.ITERS_PER_ROUND", "3"] if length == "iters" else  # 1 epoch of 109 images: 4 iterations
              ["RSL.EPOCHS_PER_ROUND", "1", "SOLVER.IMS_PER_BATCH", "32"])
    args = ["tools/train_net.py", "--config-file", CFG, *TINY, "RSL.ROUNDS", "2", *rounds,
            "SOLVER.CHECKPOINT_PERIOD", "2", "RSL.EVAL_EACH_ROUND", "False", "DATASETS.TEST", "()"]
    res = run_tool([*args, "OUTPUT_DIR", str(tmp_path / "full")], env_extra=env)
    assert res.returncode == 0, res.stderr[-4000:]
    res = kill_and_resume(args, tmp_path / "killed", "model_0000001", env)
    assert "Starting training from iteration 2" in res.stderr + res.stdout
    assert_same_checkpoint(tmp_path / "full" / "model_final.pth", tmp_path / "killed" / "model_final.pth",
                           skip=("IterationTimer", "label_seconds"))  # wall-clock times
    rounds = [json.loads((tmp_path / d / "rsl_rounds.json").read_text()) for d in ("full", "killed")]
    assert [r["num_reliable"] for r in rounds[0]] == [r["num_reliable"] for r in rounds[1]]


# ---- round length, open-choice switches, paper configs --------------------------------------------
def _plain_cfg(*opts, path=CFG):
    from reid2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / path))
    cfg.merge_from_list(list(opts))
    return cfg


def test_round_length_counts_epochs_of_the_used_images():
    from reid2.projects.rsl.trainer import max_iterations, round_length

    cfg = _plain_cfg("SOLVER.IMS_PER_BATCH", "32", "RSL.EPOCHS_PER_ROUND", "8", "RSL.ROUNDS", "4")
    assert round_length(cfg, 406) == 102  # ceil(8 * 406 / 32) = ceil(101.5)
    assert round_length(cfg, 64) == 16 and round_length(cfg, 1) == 1
    assert max_iterations(cfg, 406) == 4 * 102  # the bound: every image used in every round
    paper = _plain_cfg(path="projects/UnsupervisedRSL/configs/market1501_pul_r50.yaml")
    assert round_length(paper, 12936) == 16170  # 20 epochs of Market at batch 16 (RSL: every image)
    assert round_length(paper, 3000) == 3750  # PUL: 20 epochs of 3,000 selected images
    fixed = _plain_cfg("RSL.EPOCHS_PER_ROUND", "0", "RSL.ITERS_PER_ROUND", "100", "RSL.ROUNDS", "4")
    assert round_length(fixed, 406) == round_length(fixed, 64) == 100 and max_iterations(fixed, 406) == 400
    for bad in (("RSL.EPOCHS_PER_ROUND", "-1"), ("RSL.EPOCHS_PER_ROUND", "0", "RSL.ITERS_PER_ROUND", "0")):
        with pytest.raises(ValueError, match="RSL.EPOCHS_PER_ROUND"):
            round_length(_plain_cfg(*bad), 10)


def test_soft_centers_normalize_by_hand():
    """Eq. 7 with raw centers: a tight cluster (|c| = 1) beats a loose one (|c| = 0.5) at a smaller angle."""
    centers = np.array([[1.0, 0.0], [0.3, 0.4]])  # directions (1, 0) and (0.6, 0.8); norms 1 and 0.5
    f = np.array([[1.2, 1.6]])  # direction (0.6, 0.8)
    t = 0.1
    for normalize, s in ((True, (0.6, 1.0)), (False, (0.6, 0.5))):
        e = np.exp(np.asarray(s) / t)
        got = L.soft_labels(f, centers, t, normalize_centers=normalize)[0]
        np.testing.assert_allclose(got, e / e.sum(), rtol=1e-5)
    assert L.soft_labels(f, centers, t)[0].argmax() == 1
    assert L.soft_labels(f, centers, t, normalize_centers=False)[0].argmax() == 0
    # in rsl_labels: the soft labels use the raw re-clustering centroids (means of the members' unit features)
    feats, cams, truth = _constructed()
    a = L.rsl_labels(feats, cams, 3, camera_clusters=2, lam=0.85)
    b = L.rsl_labels(feats, cams, 3, camera_clusters=2, lam=0.85, soft_centers_normalize=False)
    np.testing.assert_array_equal(a.labels, b.labels)
    fn = l2_normalize(feats, axis=1, dtype=np.float64)
    C = np.stack([fn[b.reliable][b.labels[b.reliable] == k].mean(0) for k in range(3)])
    for i in np.flatnonzero(~b.reliable):
        s = C @ fn[i] / 0.02
        np.testing.assert_allclose(b.soft[i], np.exp(s - s.max()) / np.exp(s - s.max()).sum(), rtol=1e-4, atol=1e-7)
    assert not np.allclose(a.soft, b.soft, rtol=0, atol=1e-6)


def test_kmeans_normalize_switch_clusters_raw_or_unit_features():
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(3)
    feats = np.abs(rng.standard_normal((40, 6))) * rng.lognormal(0, 1, (40, 1))  # norms spread over ~e^±2
    fn = l2_normalize(feats, axis=1, dtype=np.float64)
    raw, unit = L.pul_labels(feats, 5, lam=-1.0, seed=4), L.pul_labels(feats, 5, lam=-1.0, seed=4, normalize=True)
    np.testing.assert_array_equal(raw.labels, KMeans(5, random_state=4, n_init=1).fit(feats).labels_)
    np.testing.assert_array_equal(unit.labels, KMeans(5, random_state=4, n_init=1).fit(fn).labels_)
    assert L.cluster_quality(raw.labels, unit.labels)["nmi"] < 0.99  # different partitions


def test_config_keys_reach_the_label_functions(monkeypatch):
    from reid2.projects.rsl import trainer as T

    seen = {}
    monkeypatch.setattr(T, "rsl_labels", lambda *a, **k: seen.setdefault("rsl", k))
    monkeypatch.setattr(T, "pul_labels", lambda *a, **k: seen.setdefault("pul", k))
    cfg = _plain_cfg("RSL.KMEANS_NORMALIZE", "False", "RSL.SOFT_CENTERS_NORMALIZE", "False", "RSL.CENTERS", "nearest",
                     "RSL.CAMERA_CLUSTERS", "0.5", "SEED", "7")
    T.compute_round_labels(cfg, np.zeros((4, 2)), np.zeros(4), round_index=2)
    assert {k: seen["rsl"][k] for k in ("normalize", "soft_centers_normalize", "centers", "camera_clusters", "seed")} \
        == {"normalize": False, "soft_centers_normalize": False, "centers": "nearest", "camera_clusters": 0.5,
            "seed": 2007}
    cfg.merge_from_list(["RSL.METHOD", "pul", "RSL.KMEANS_NORMALIZE", "True"])
    T.compute_round_labels(cfg, np.zeros((4, 2)), np.zeros(4))
    assert seen["pul"]["normalize"] is True


@pytest.mark.parametrize("finetune_from", ["previous", "initial"])
def test_finetune_from_restarts_or_continues_each_round(datasets_root, tmp_path, monkeypatch, finetune_from):
    """At round 1's start the backbone is the starting model ("initial", PUL) or round 0's result ("previous")."""
    snapshots = []
    real = rsl.RoundHook.start_round

    def spy(self, r):
        before = {k: v.clone() for k, v in self.trainer.model.backbone.state_dict().items()}
        real(self, r)
        snapshots.append((before, {k: v.clone() for k, v in self.trainer.model.backbone.state_dict().items()}))

    monkeypatch.setattr(rsl.RoundHook, "start_round", spy)
    trainer = _train(_cfg(tmp_path, "RSL.ROUNDS", "2", "RSL.ITERS_PER_ROUND", "2", "RSL.EVAL_EACH_ROUND", "False",
                          "DATASETS.TEST", "()", "RSL.LAMBDA", "0.97", "RSL.FINETUNE_FROM", finetune_from,
                          "SOLVER.CHECKPOINT_PERIOD", "1000"))
    (start0, after0), (end0, after1) = snapshots
    assert all(torch.equal(start0[k], after0[k]) for k in start0)  # round 0 starts from the starting model
    changed = not all(torch.equal(end0[k], start0[k]) for k in start0)
    assert changed  # round 0 trained
    same_as = start0 if finetune_from == "initial" else end0
    assert all(torch.equal(after1[k], same_as[k]) for k in same_as)
    assert trainer.iter == 4


@pytest.mark.parametrize("method", ["pul", "rsl"])
def test_epoch_rounds_resume_at_and_inside_round_boundaries(datasets_root, tmp_path, method):
    """RSL.EPOCHS_PER_ROUND: each round is ceil(E * #used / batch) iterations (PUL: its selected images), the run
    ends with the last round, and a resume at a round's end or inside a round gives the same final weights."""
    opts = ["RSL.ROUNDS", "2", "RSL.EPOCHS_PER_ROUND", "1", "SOLVER.IMS_PER_BATCH", "32", "RSL.LAMBDA", "0.97",
            "RSL.EVAL_EACH_ROUND", "False", "DATASETS.TEST", "()", "SOLVER.CHECKPOINT_PERIOD", "1",
            "RSL.METHOD", method]
    if method == "pul":
        opts += ["RSL.FINETUNE_FROM", "initial", "RSL.KMEANS_NORMALIZE", "False", "RSL.LAMBDA", "0.995"]
    torch.manual_seed(0)  # the starting model (PUL returns to it every round), as a source-trained model would be
    torch.save({"model": rsl.RSLReID(_cfg(tmp_path / "unused")).state_dict()}, tmp_path / "start.pth")
    opts += ["MODEL.WEIGHTS", str(tmp_path / "start.pth")]
    full = _train(_cfg(tmp_path / "full", *opts))
    hist = full.round_hook.history
    used = [h["num_reliable"] + h["num_soft"] for h in hist]
    assert [h["iterations"] for h in hist] == [math.ceil(u / 32) for u in used]
    if method == "pul":
        assert used[0] < 109  # PUL trains on its selected images only: shorter rounds than RSL's 4 (109 images)
    else:
        assert used == [109, 109]
    end = sum(h["iterations"] for h in hist)
    assert [h["iteration"] for h in hist] == [0, hist[0]["iterations"]] and full.iter == end
    assert (end < full.cfg.SOLVER.MAX_ITER) if method == "pul" else (end == full.cfg.SOLVER.MAX_ITER)  # the bound
    out = tmp_path / "full"
    assert (out / "model_final.pth").is_file() and (out / f"model_{end - 1:07d}.pth").is_file()
    ref = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    boundary = hist[0]["iterations"] - 1  # round 0's last iteration: the resumed run clusters round 1
    for ckpt in sorted({boundary, end - 2} - {-1}):
        run = tmp_path / f"resume_{ckpt}"
        run.mkdir()
        shutil.copy(out / f"model_{ckpt:07d}.pth", run / f"model_{ckpt:07d}.pth")
        (run / "last_checkpoint").write_text(f"model_{ckpt:07d}.pth")
        torch.manual_seed(99)
        trainer = rsl.RSLTrainer(_cfg(run, *opts))
        trainer.resume_or_load(resume=True)
        assert trainer.start_iter == ckpt + 1
        trainer.train()
        assert trainer.iter == end and [h["iterations"] for h in trainer.round_hook.history] == \
            [h["iterations"] for h in hist]
        got = torch.load(run / "model_final.pth", map_location="cpu", weights_only=False)["model"]
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-6, msg=k)


PAPER_CONFIGS = ["market1501_rsl_r50.yaml", "market1501_pul_r50.yaml", "dukemtmc_rsl_r50.yaml",
                 "dukemtmc_pul_r50.yaml", "dukemtmc_source_r50.yaml", "market1501_source_r50.yaml",
                 "synthetic_rsl_tiny.yaml", "synthetic_pul_tiny.yaml"]


def test_paper_configs_settings():
    c = {n: _plain_cfg(path=f"projects/UnsupervisedRSL/configs/{n}") for n in PAPER_CONFIGS}
    for n in PAPER_CONFIGS[:6]:
        assert c[n].MODEL.REQUIRE_PRETRAINED and not c[n].MODEL.WEIGHTS, n  # ImageNet only via REID_BACKBONE.PRETRAINED
        assert (c[n].INPUT.REID.SIZE_TRAIN, c[n].SOLVER.IMS_PER_BATCH, c[n].SOLVER.BASE_LR) == ([224, 224], 16, 0.001)
    for n in PAPER_CONFIGS[:4]:
        r = c[n].RSL
        assert (r.EPOCHS_PER_ROUND, r.ROUNDS, r.LAMBDA, r.TEMPERATURE, r.CAMERA_CLUSTERS) == (20, 25, 0.85, 0.02, 0.25)
        assert r.NUM_CLUSTERS == (700 if n.startswith("duke") else 750)
        assert c[n].DATASETS.TRAIN[0].startswith(n.split("_")[0])
        assert (r.FINETUNE_FROM, r.KMEANS_NORMALIZE) == (("initial", False) if "pul" in n else ("previous", True))
    for n, ds, iters in (("dukemtmc_source_r50.yaml", "dukemtmc", 40 * 1033), ("market1501_source_r50.yaml",
                                                                              "market1501", 40 * 809)):
        s = c[n]
        assert s.DATASETS.TRAIN == (f"{ds}_train",) and s.SOLVER.MAX_ITER == iters  # 40 epochs at batch 16
        assert (s.MODEL.META_ARCHITECTURE, list(s.MODEL.LOSSES.NAMES), s.MODEL.REID.DROPOUT) == \
            ("ReIDBaseline", ["CrossEntropyLoss"], 0.5)


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_config_builds_and_trains_a_step(name, tmp_path):
    """Every config of the project builds its model and takes one step (random init on purpose, 64x32 images)."""
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    cfg = _plain_cfg("MODEL.REQUIRE_PRETRAINED", "False", "MODEL.DEVICE", "cpu",
                     path=f"projects/UnsupervisedRSL/configs/{name}")
    torch.manual_seed(0)
    model = build_model(cfg).train()
    source_ids = {"dukemtmc_source_r50.yaml": 702, "market1501_source_r50.yaml": 751}
    assert model.classifier.out_features == source_ids.get(name, cfg.RSL.NUM_CLUSTERS)
    images = torch.randn(4, 3, 64, 32)
    if name in source_ids:  # supervised on the source identities
        inputs = {"images": images, "targets": torch.tensor([0, 1, 2, 3])}
    else:
        soft = torch.zeros(4, cfg.RSL.NUM_CLUSTERS)
        soft[1, :3] = torch.tensor([0.5, 0.3, 0.2])
        inputs = {"images": images, "targets": torch.tensor([3, -1, 0, 5]), "soft_targets": soft}
    with EventStorage():
        losses = model(inputs)
    assert losses and all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    assert model.classifier.weight.grad.abs().sum() > 0


def test_source_model_starts_the_target_runs(tmp_path):
    """A DukeMTMC-trained source checkpoint (702-way classifier) is MODEL.WEIGHTS of the Market RSL run: everything
    but the classifier loads (the round hook gives each round a new M-way classifier); another backbone is refused."""
    from detectron2.modeling import build_model

    from reid2.engine import AtomicCheckpointer
    from reid2.engine.checkpoint import WeightsMismatchError

    small = ["MODEL.REQUIRE_PRETRAINED", "False", "MODEL.DEVICE", "cpu",
             "MODEL.BACKBONE.NAME", "build_reid_tiny_backbone", "MODEL.REID_BACKBONE.WIDTH", "8"]
    torch.manual_seed(1)
    source = build_model(_plain_cfg(*small, path="projects/UnsupervisedRSL/configs/dukemtmc_source_r50.yaml"))
    AtomicCheckpointer(source, str(tmp_path)).save("source")
    torch.manual_seed(2)
    target = build_model(_plain_cfg(*small, path="projects/UnsupervisedRSL/configs/market1501_rsl_r50.yaml"))
    classifier = target.classifier.weight.detach().clone()
    checkpointer = AtomicCheckpointer(target)
    checkpointer.weights_role = "init"
    checkpointer.load(str(tmp_path / "source.pth"))
    for k, v in source.state_dict().items():
        if not k.startswith("classifier."):
            assert torch.equal(target.state_dict()[k], v), k
    assert source.classifier.weight.shape[0] == 702 and torch.equal(target.classifier.weight, classifier)
    torch.manual_seed(3)
    other = build_model(_plain_cfg(*small[:-1], "16", path="projects/UnsupervisedRSL/configs/market1501_rsl_r50.yaml"))
    checkpointer = AtomicCheckpointer(other)
    checkpointer.weights_role = "init"
    with pytest.raises(WeightsMismatchError, match="another shape"):
        checkpointer.load(str(tmp_path / "source.pth"))
