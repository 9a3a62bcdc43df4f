"""Label distributions of SLSR (Ainam et al., Eq. 8-13) and of the LSRO / LSR baselines.

With K identity classes and k-means clusters C_1..C_n, a generated image from cluster c gets

    SLSR:  q_c(k) = 1/k_c  for the k_c classes present in C_c, 0 elsewhere      (Eq. 9-10, λ = 1)
    LSRO:  q(k)   = 1/K    for every class (Zheng et al. 2017)

and a real image of identity y gets the one-hot δ_{k,y} (λ = 0), or with LSR (Szegedy et al.)
(1 - ε)·δ_{k,y} + ε/K. The loss of Eq. 13 is then the cross-entropy -Σ_k q(k) log p(k) for every image:
for a generated image that is -(1/k_c) Σ_{k∈C_c} log p(k) (the paper's λ/K factor with K read as the
size of the image's label set). The authors' public code uses the LSRO term for generated images and
ignores q_c; that is *not* what is done here.

Generated images travel through the re-ID loaders with ``pid = -(c + 1)`` (:func:`generated_pid`).
"""
from typing import List, Sequence

import numpy as np
import torch

__all__ = ["LOSS_MODES", "generated_pid", "cluster_of_pid", "cluster_label_sets", "cluster_target_matrix",
           "batch_targets"]

LOSS_MODES = ("slsr", "lsro")


def generated_pid(cluster: int) -> int:
    """The (negative) pid that marks a generated image of ``cluster`` in a batch."""
    if cluster < 0:
        raise ValueError(f"cluster index must be >= 0, got {cluster}")
    return -(int(cluster) + 1)


def cluster_of_pid(pids: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`generated_pid` for negative pids (undefined for real ones)."""
    return -pids - 1


def cluster_label_sets(assignments: Sequence[int], pids: Sequence[int], num_clusters: int,
                       min_images: int = 1) -> List[List[int]]:
    """For each cluster, the sorted identity classes with at least ``min_images`` images in it.

    ``assignments[i]`` is image i's cluster, ``pids[i]`` its (relabelled, 0-based) identity. An identity
    can belong to several clusters (public code: ``gan{c}.list``, threshold 1).
    """
    assignments, pids = np.asarray(assignments), np.asarray(pids)
    if assignments.shape != pids.shape:
        raise ValueError(f"{len(assignments)} cluster assignments for {len(pids)} images")
    if min_images < 1:
        raise ValueError(f"min_images must be >= 1, got {min_images}")
    sets = []
    for c in range(num_clusters):
        ids, counts = np.unique(pids[assignments == c], return_counts=True)
        sets.append(sorted(int(i) for i in ids[counts >= min_images]))
    return sets


def cluster_target_matrix(label_sets: Sequence[Sequence[int]], num_classes: int, mode: str = "slsr") -> torch.Tensor:
    """(num_clusters, K) row-stochastic matrix: row c is the label distribution of cluster c's images."""
    if mode not in LOSS_MODES:
        raise ValueError(f"SLSR.LOSS.MODE must be one of {LOSS_MODES}, got {mode!r}")
    q = torch.zeros(len(label_sets), num_classes)
    for c, classes in enumerate(label_sets):
        if mode == "lsro":
            q[c] = 1.0 / num_classes
            continue
        classes = list(classes)
        if not classes:
            raise ValueError(f"cluster {c} has no identity class: its images cannot get a sparse label")
        if min(classes) < 0 or max(classes) >= num_classes:
            raise ValueError(f"cluster {c}: classes must lie in [0, {num_classes}), got {min(classes)}..{max(classes)}")
        q[c, classes] = 1.0 / len(set(classes))
    return q


def batch_targets(pids: torch.Tensor, cluster_targets: torch.Tensor, num_classes: int,
                  real_epsilon: float = 0.0) -> torch.Tensor:
    """(B, K) targets of a batch: real pids (>= 0) one-hot / LSR(ε), generated pids (< 0) their cluster row."""
    if not 0.0 <= real_epsilon < 1.0:
        raise ValueError(f"SLSR.LOSS.REAL_EPSILON must be in [0, 1), got {real_epsilon}")
    pids = pids.long()
    real = pids >= 0
    if real.any() and int(pids[real].max()) >= num_classes:
        raise ValueError(f"real pid {int(pids[real].max())} out of range for {num_classes} classes")
    out = torch.empty(len(pids), num_classes, device=pids.device, dtype=torch.float32)
    if real.any():
        onehot = torch.nn.functional.one_hot(pids[real], num_classes).float()
        out[real] = (1.0 - real_epsilon) * onehot + real_epsilon / num_classes
    if (~real).any():
        clusters = cluster_of_pid(pids[~real])
        if int(clusters.max()) >= len(cluster_targets):
            raise ValueError(f"generated image of cluster {int(clusters.max())}, but only "
                             f"{len(cluster_targets)} clusters have label sets")
        out[~real] = cluster_targets.to(pids.device)[clusters]
    return out

