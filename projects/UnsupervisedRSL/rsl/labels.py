"""Pseudo-labels of one round, from features and cameras only (never identities).

* :func:`rsl_labels` — Sun & Jung: per-camera k-means, reliable = cosine to the own cluster center > λ,
  re-clustering of the reliable images into M pseudo-identities, soft labels softmax(s / t) for the rest.
* :func:`pul_labels` — Fan et al. (PUL, public code): k-means on the raw features of the whole set,
  centers = the image nearest each centroid, reliable = cosine to *any* center > λ, label = own k-means label.
* :func:`cluster_quality` — purity / NMI of pseudo-labels against true labels (reporting only).

Every function takes plain arrays; the caller decides what it passes, so the label-blindness of the
method is a property of the call sites (``trainer.RoundHook``) and is tested end to end.
"""
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from reid2.utils.arrays import l2_normalize

__all__ = ["RoundLabels", "kmeans", "cluster_centers", "soft_labels", "num_camera_clusters",
           "rsl_labels", "pul_labels", "cluster_quality"]


@dataclass
class RoundLabels:
    """The re-training set of a round over N images and M classes.

    ``labels[i]``: pseudo-identity of a reliable image, -1 otherwise. ``soft[i]`` (M,) soft label of an
    unselected image (rows of reliable / unused images are zero). ``use[i]``: the image is trained on.
    """

    labels: np.ndarray  # (N,) int64
    soft: np.ndarray  # (N, M) float32
    use: np.ndarray  # (N,) bool
    num_classes: int
    stats: Dict[str, float] = field(default_factory=dict)

    @property
    def reliable(self) -> np.ndarray:
        return self.labels >= 0


def _unit_rows(x) -> np.ndarray:  # in float64, as k-means and the cosines of a round are computed
    return l2_normalize(x, axis=1, dtype=np.float64)


def kmeans(x: np.ndarray, k: int, seed: int = 0, n_init: int = 1):
    """scikit-learn k-means (k-means++ init); returns (labels (N,), centroids (k, D), distances (N, k))."""
    km = KMeans(n_clusters=int(k), random_state=int(seed), n_init=int(n_init)).fit(x)
    return km.labels_.astype(np.int64), km.cluster_centers_, km.transform(x)


def cluster_centers(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray, mode: str,
                    normalize: bool = True) -> np.ndarray:
    """Cluster centers in the k-means space of ``x``: "centroid" (the k-means mean) or "nearest" (the member
    nearest it); L2-normalised unless ``normalize`` is False."""
    if mode == "centroid":
        c = np.asarray(centroids, dtype=np.float64)
    elif mode == "nearest":
        dist = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)  # (N, k)
        dist[labels[:, None] != np.arange(len(centroids))[None]] = np.inf  # members only
        c = x[dist.argmin(0)]
    else:
        raise ValueError(f"RSL.CENTERS must be 'centroid' or 'nearest', got {mode!r}")
    return _unit_rows(c) if normalize else c


def soft_labels(feats: np.ndarray, centers: np.ndarray, temperature: float,
                normalize_centers: bool = True) -> np.ndarray:
    """Eq. 7-8: s = C f with f L2-normalised (C too unless ``normalize_centers`` is False:
    ``RSL.SOFT_CENTERS_NORMALIZE``), p = softmax(s / t) over the M centers; (N, M)."""
    if temperature <= 0:
        raise ValueError(f"RSL.TEMPERATURE must be positive, got {temperature}")
    c = _unit_rows(centers) if normalize_centers else np.asarray(centers, dtype=np.float64)
    s = _unit_rows(feats) @ c.T / temperature
    s -= s.max(1, keepdims=True)
    p = np.exp(s)
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def num_camera_clusters(spec: float, n: int) -> int:
    """M_k from the config: a count (≥ 1) or a fraction (< 1) of the camera's n images; within [1, n]."""
    if spec <= 0:
        raise ValueError(f"RSL.CAMERA_CLUSTERS must be positive, got {spec}")
    k = int(round(spec * n)) if spec < 1 else int(spec)
    return max(1, min(k, n))


def rsl_labels(feats, camids, num_clusters: int, camera_clusters: float = 0.25, lam: float = 0.85,
               temperature: float = 0.02, centers: str = "centroid", select: str = "own",
               recluster: str = "images", normalize: bool = True, seed: int = 0, n_init: int = 1,
               soft_centers_normalize: bool = True) -> RoundLabels:
    """Reliable and soft labels (Sun & Jung, §2.1-2.2) of features (N, D) with camera ids (N,).

    ``centers``: per-camera and re-clustering centers are k-means centroids or the nearest member image.
    ``select``: "own" (cosine to the image's own camera-cluster center > λ) or "any" (to any center of
    its camera). ``recluster``: "images" (Eq. 6 on the reliable features) or "camera_centers" (k-means of
    the per-camera centers holding a reliable image; images take their camera cluster's new label).
    ``normalize``: k-means on L2-normalised features (the paper measures everything by cosine).
    ``soft_centers_normalize``: Eq. 7's centers C L2-normalised (else as the re-clustering gives them: in the
    k-means space, or the mean of the members' unit features for "camera_centers").
    """
    feats = np.asarray(feats, dtype=np.float64)
    camids = np.asarray(camids)
    n = len(feats)
    fn = _unit_rows(feats)
    x = fn if normalize else feats
    reliable = np.zeros(n, dtype=bool)
    cam_cluster = np.full(n, -1, dtype=np.int64)  # global index of the image's camera cluster
    cam_centers = []
    for cam in np.unique(camids):
        idx = np.flatnonzero(camids == cam)
        k = num_camera_clusters(camera_clusters, len(idx))
        lab, cen, _ = kmeans(x[idx], k, seed=seed, n_init=n_init)
        c = cluster_centers(x[idx], lab, cen, centers)  # (k, D), normalised
        sim = fn[idx] @ c.T  # (n_k, k) cosine
        if select == "own":
            keep = sim[np.arange(len(idx)), lab] > lam
        elif select == "any":
            keep = (sim > lam).any(1)
        else:
            raise ValueError(f"RSL.SELECT must be 'own' or 'any', got {select!r}")
        reliable[idx] = keep
        cam_cluster[idx] = lab + len(cam_centers)
        cam_centers.extend(c)
    rel = np.flatnonzero(reliable)
    if len(rel) == 0:
        raise RuntimeError(f"no image passed the reliability threshold λ={lam}; lower RSL.LAMBDA")
    labels = np.full(n, -1, dtype=np.int64)
    if recluster == "images":
        m = min(num_clusters, len(rel))
        lab, cen, _ = kmeans(x[rel], m, seed=seed, n_init=n_init)
        C = cluster_centers(x[rel], lab, cen, centers, normalize=False)
        labels[rel] = lab
    elif recluster == "camera_centers":
        used = np.unique(cam_cluster[rel])
        cc = np.asarray(cam_centers)[used]
        m = min(num_clusters, len(used))
        lab, _, _ = kmeans(cc, m, seed=seed, n_init=n_init)
        remap = dict(zip(used.tolist(), lab.tolist()))
        labels[rel] = [remap[c] for c in cam_cluster[rel]]
        C = np.stack([fn[rel][labels[rel] == j].mean(0) for j in range(m)])
    else:
        raise ValueError(f"RSL.RECLUSTER must be 'images' or 'camera_centers', got {recluster!r}")
    soft = np.zeros((n, num_clusters), dtype=np.float32)
    unsel = np.flatnonzero(~reliable)
    if len(unsel):
        soft[unsel, :m] = soft_labels(fn[unsel], C, temperature, normalize_centers=soft_centers_normalize)
    stats = {"num_reliable": int(len(rel)), "num_soft": int(len(unsel)), "num_clusters": int(m),
             "num_camera_clusters": int(len(cam_centers))}
    return RoundLabels(labels, soft, np.ones(n, dtype=bool), int(num_clusters), stats)


def pul_labels(feats, num_clusters: int, lam: float = 0.85, normalize: bool = False, seed: int = 0,
               n_init: int = 1) -> RoundLabels:
    """PUL's selection (``PUL/unsupervised.py``): only reliable images are trained on, with hard labels."""
    feats = np.asarray(feats, dtype=np.float64)
    fn = _unit_rows(feats)
    x = fn if normalize else feats
    m = min(num_clusters, len(feats))
    lab, _, dist = kmeans(x, m, seed=seed, n_init=n_init)
    centers = fn[dist.argmin(0)]  # the image nearest each centroid
    reliable = ((centers @ fn.T) > lam).any(0)
    labels = np.where(reliable, lab, -1).astype(np.int64)
    stats = {"num_reliable": int(reliable.sum()), "num_soft": 0, "num_clusters": int(m)}
    return RoundLabels(labels, np.zeros((len(feats), num_clusters), dtype=np.float32), reliable.copy(),
                       int(num_clusters), stats)


def cluster_quality(pseudo: np.ndarray, true: np.ndarray, mask: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Purity (share of images in their cluster's majority identity) and NMI over ``mask`` (reliable images)."""
    pseudo, true = np.asarray(pseudo), np.asarray(true)
    if mask is not None:
        pseudo, true = pseudo[mask], true[mask]
    if len(pseudo) == 0:
        return {"purity": float("nan"), "nmi": float("nan")}
    majority = sum(np.bincount(np.unique(true, return_inverse=True)[1][pseudo == c]).max()
                   for c in np.unique(pseudo))
    return {"purity": float(majority / len(pseudo)),
            "nmi": float(normalized_mutual_info_score(true, pseudo))}
