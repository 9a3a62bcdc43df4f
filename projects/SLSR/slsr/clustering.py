"""Stage 1: a classification CNN, its last-conv features of every training image, k-means, silhouettes.

Outputs in ``<work>/stage1/``: ``cnn/`` (the CNN run, unless ``SLSR.CLUSTER.WEIGHTS`` is given),
``features.npy`` (N x D, the order of ``assignments.csv``), ``assignments.csv`` (file_name, pid,
cluster), ``clusters.json`` (per cluster: image count and the identity classes present, i.e. its label
set), ``silhouette.csv`` / ``silhouette.md`` / ``silhouette.png`` (Table 1: average silhouette for
k = 2..5) and ``DONE.json`` (written last).

k-means runs on the raw (un-normalised) features, as the public code does. The silhouette table has two
columns: the score of k-means on the raw features (what SLSR clusters) and the public code's variant
(k-means and silhouette on the 2-D PCA projection).
"""
import csv
import logging
import math
import os

import numpy as np
from detectron2.utils.env import seed_all_rng

from reid2.data import get_reid_train_dicts
from reid2.evaluation import dataset_features
from reid2.utils.progress import progress_bar

from .paths import (
    atomic_save,
    atomic_write_json,
    atomic_write_text,
    check_borrowed,
    stage_done,
    stage_paths,
    write_marker,
)
from .targets import cluster_label_sets

__all__ = ["run_stage1", "train_cluster_cnn", "extract_features", "kmeans", "silhouette_table",
           "stage1_settings", "cnn_config"]

logger = logging.getLogger("reid2.slsr")


def stage1_settings(cfg):
    c = cfg.SLSR.CLUSTER
    return {"train": list(cfg.DATASETS.TRAIN), "backbone": cfg.MODEL.BACKBONE.NAME, "weights": c.WEIGHTS,
            "cnn_epochs": c.CNN_EPOCHS, "cnn_lr": c.CNN_LR, "feature": c.FEATURE, "k": cfg.SLSR.NUM_CLUSTERS,
            "n_init": c.N_INIT, "seed": c.SEED, "min_images": c.MIN_IMAGES_PER_ID,
            "silhouette_ks": list(c.SILHOUETTE_KS), "input": list(cfg.INPUT.REID.SIZE_TEST)}


def cnn_config(cfg, output_dir, num_images):
    """The stage-1 CNN's config: softmax only, real images only, ``CNN_EPOCHS`` at ``CNN_LR``, no evaluation."""
    c = cfg.clone()
    c.defrost()
    c.MODEL.META_ARCHITECTURE = "ReIDBaseline"  # a plain classifier (no noise layer, no mean-pixel centring)
    c.MODEL.LOSSES.NAMES = ["CrossEntropyLoss"]
    c.MODEL.LOSSES.CE.EPSILON = 0.0
    c.SOLVER.BASE_LR = cfg.SLSR.CLUSTER.CNN_LR
    c.SOLVER.MAX_ITER = max(1, math.ceil(cfg.SLSR.CLUSTER.CNN_EPOCHS * num_images / cfg.SOLVER.IMS_PER_BATCH))
    c.SOLVER.CHECKPOINT_PERIOD = min(cfg.SOLVER.CHECKPOINT_PERIOD, c.SOLVER.MAX_ITER)
    c.SOLVER.WARMUP_ITERS = 0
    c.REID2.TRAINER = "ReIDTrainer"
    c.REID2.BEST_METRIC = ""
    c.TEST.EVAL_PERIOD = 0
    c.DATASETS.TEST = ()
    c.OUTPUT_DIR = output_dir
    c.freeze()
    return c


def train_cluster_cnn(cfg, output_dir, num_images):
    """Train (resuming from ``output_dir``'s last checkpoint) the softmax CNN; returns ``model_final.pth``."""
    from reid2.engine import ReIDTrainer

    final = os.path.join(output_dir, "model_final.pth")
    if os.path.isfile(final):
        logger.info("SLSR stage 1: CNN already trained (%s)", final)
        return final
    c = cnn_config(cfg, output_dir, num_images)
    os.makedirs(output_dir, exist_ok=True)
    if cfg.SEED >= 0:  # the same initialisation whether or not earlier stages ran in this process
        seed_all_rng(cfg.SEED)
    logger.info("SLSR stage 1: training the clustering CNN for %d iterations in %s", c.SOLVER.MAX_ITER, output_dir)
    trainer = ReIDTrainer(c)
    trainer.resume_or_load(resume=True)
    trainer.train()
    if not os.path.isfile(final):
        raise RuntimeError(f"SLSR stage 1: CNN training ended without {final}")
    return final


def extract_features(cfg, model, dicts, feature="before_bn", batch_size=64, desc="features"):
    """(N, D) float32 features of ``dicts`` (test transforms), in order: pooled ("before_bn") or BN-neck."""
    if feature not in ("before_bn", "after_bn"):
        raise ValueError(f"SLSR.CLUSTER.FEATURE must be before_bn or after_bn, got {feature!r}")
    return dataset_features(cfg, model, dicts, lambda images: model.embed(images, feature), batch_size, desc)


def kmeans(features, k, n_init=10, seed=0, desc=None):
    """scikit-learn k-means, restarts run one by one (progress bar), best inertia kept: (labels, centers, inertia)."""
    from sklearn.cluster import KMeans

    if not 1 <= k <= len(features):
        raise ValueError(f"k-means: k={k} must lie in [1, {len(features)}] (the number of images)")
    best = None
    for i in progress_bar(range(max(1, n_init)), desc=desc or f"k-means k={k}", unit="run"):
        km = KMeans(n_clusters=k, n_init=1, random_state=seed + i).fit(features)
        if best is None or km.inertia_ < best.inertia_:
            best = km
    return best.labels_.astype(np.int64), best.cluster_centers_, float(best.inertia_)


def silhouette_table(features, ks=(2, 3, 4, 5), sample=10000, seed=0, n_init=3):
    """Rows ``{"k", "silhouette", "silhouette_pca2"}`` (Table 1); sampled scores when N > ``sample`` > 0."""
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score

    n = len(features)
    size = sample if 0 < sample < n else None
    pca2 = PCA(n_components=2, random_state=seed).fit_transform(features) if features.shape[1] > 2 else features
    rows = []
    for k in progress_bar(list(ks), desc="silhouette k", unit="k"):
        if not 2 <= k < n:
            logger.warning("SLSR: silhouette for k=%d skipped (needs 2 <= k < %d images)", k, n)
            continue
        labels, _, _ = kmeans(features, k, n_init, seed, desc=f"k-means k={k}")
        labels2, _, _ = kmeans(pca2, k, n_init, seed, desc=f"k-means 2-D PCA k={k}")
        rows.append({"k": int(k),
                     "silhouette": _silhouette(silhouette_score, features, labels, size, seed),
                     "silhouette_pca2": _silhouette(silhouette_score, pca2, labels2, size, seed)})
    return rows


def _silhouette(fn, x, labels, size, seed):
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(fn(x, labels, sample_size=size, random_state=seed))


def format_silhouette_table(rows, chosen_k=None):
    lines = ["| k | average silhouette (raw features) | average silhouette (2-D PCA, public code) |",
             "|---|---|---|"]
    for r in rows:
        mark = " (used)" if r["k"] == chosen_k else ""
        lines.append(f"| {r['k']}{mark} | {100 * r['silhouette']:.2f}% | {100 * r['silhouette_pca2']:.2f}% |")
    return "\n".join(lines)


def plot_silhouette(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ks = [r["k"] for r in rows]
    ax.plot(ks, [r["silhouette"] for r in rows], "o-", label="raw features")
    ax.plot(ks, [r["silhouette_pca2"] for r in rows], "s--", label="2-D PCA (public code)")
    ax.set_xlabel("number of clusters k")
    ax.set_ylabel("average silhouette")
    ax.set_xticks(ks)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)


def _load_cnn(cfg, weights):
    from reid2.engine import ReIDTrainer
    from reid2.utils.serialization import SafeCheckpointer

    model = ReIDTrainer.build_model(cfg)
    SafeCheckpointer(model).load(weights)
    return model


def run_stage1(cfg, force=False):
    """Run stage 1 unless complete; returns the path of ``clusters.json``."""
    paths = stage_paths(cfg)
    out = paths.stage1
    settings = stage1_settings(cfg)
    if not paths.owns("stage1"):  # another run's clusters: what the label sets depend on must agree
        check_borrowed(out, {k: settings[k] for k in ("train", "k", "min_images")}, "stage1",
                       "SLSR.CLUSTER.FROM_RUN")
        return paths.clusters
    if stage_done(out, settings, "stage1", force):
        return paths.clusters
    c = cfg.SLSR.CLUSTER
    dicts = get_reid_train_dicts(cfg.DATASETS.TRAIN)
    weights = c.WEIGHTS or train_cluster_cnn(cfg, os.path.join(out, "cnn"), len(dicts))
    model = _load_cnn(cnn_config(cfg, os.path.join(out, "cnn"), len(dicts)), weights)
    feats = extract_features(cfg, model, dicts, c.FEATURE, c.BATCH_SIZE, desc="SLSR stage 1 features")
    atomic_save(os.path.join(out, "features.npy"), lambda f: np.save(f, feats))
    k = cfg.SLSR.NUM_CLUSTERS
    labels, _, inertia = kmeans(feats, k, c.N_INIT, c.SEED, desc=f"SLSR stage 1 k-means k={k}")
    pids = [d["pid"] for d in dicts]
    num_classes = len(set(pids))
    sets = cluster_label_sets(labels, pids, k, c.MIN_IMAGES_PER_ID)
    empty = [i for i, s in enumerate(sets) if not s]
    if empty:
        raise RuntimeError(f"SLSR stage 1: clusters {empty} have no identity with >= {c.MIN_IMAGES_PER_ID} images; "
                           "lower SLSR.CLUSTER.MIN_IMAGES_PER_ID or SLSR.NUM_CLUSTERS")

    def write_csv(f):
        w = csv.writer(f)
        w.writerow(["file_name", "pid", "cluster"])
        w.writerows((d["file_name"], d["pid"], int(l)) for d, l in zip(dicts, labels))

    atomic_save(os.path.join(out, "assignments.csv"), write_csv, mode="w", newline="")
    counts = np.bincount(labels, minlength=k)
    clusters = {"num_classes": num_classes, "num_images": len(dicts), "k": k, "inertia": inertia,
                "feature_dim": int(feats.shape[1]),
                "clusters": [{"cluster": i, "num_images": int(counts[i]), "num_classes": len(sets[i]),
                              "classes": sets[i]} for i in range(k)]}
    rows = silhouette_table(feats, c.SILHOUETTE_KS, c.SILHOUETTE_SAMPLE, c.SEED)
    table = format_silhouette_table(rows, k)

    def write_sil(f):
        w = csv.DictWriter(f, ["k", "silhouette", "silhouette_pca2"])
        w.writeheader()
        w.writerows(rows)

    atomic_save(os.path.join(out, "silhouette.csv"), write_sil, mode="w", newline="")
    atomic_write_text(os.path.join(out, "silhouette.md"), table + "\n")
    if rows:
        plot_silhouette(rows, os.path.join(out, "silhouette.png"))
    atomic_write_json(paths.clusters, clusters)
    logger.info("SLSR stage 1: %d images, %d classes, cluster sizes %s, label-set sizes %s\n%s", len(dicts),
                num_classes, counts.tolist(), [len(s) for s in sets], table)
    write_marker(out, settings, silhouette=rows)
    return paths.clusters
