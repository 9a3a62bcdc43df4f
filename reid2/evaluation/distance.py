"""Query × gallery distance matrices from embeddings, computed in row blocks so memory stays bounded."""
import numpy as np
import torch

from reid2.utils.arrays import l2_normalize

__all__ = ["compute_distance_matrix"]

_METRICS = ("euclidean", "cosine")
# Elements of one (query block × gallery) temporary: 2**24 float32 = 64 MiB.
_BLOCK_ELEMENTS = 1 << 24


def compute_distance_matrix(query_feats, gallery_feats, metric="euclidean", normalize=False,
                            block_elements=_BLOCK_ELEMENTS) -> np.ndarray:
    """(num_query, num_gallery) float32 distances; smaller = more similar.

    ``metric="euclidean"`` is the plain L2 distance ``‖q − g‖`` (not squared, unlike torchreid's
    ``euclidean``); ``"cosine"`` is ``1 − cos(q, g)``. ``normalize=True`` L2-normalises both sets
    first (then euclidean = ``sqrt(2 · cosine)``). Inputs are numpy arrays or torch tensors of shape
    (N, D); torch inputs are multiplied with torch on their own device (GPU if they live there),
    numpy inputs with numpy. Euclidean uses ``‖q‖² + ‖g‖² − 2 q·g`` (one GEMM per block), clipped at
    0 before the square root, as torchreid / fast-reid do.
    """
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    as_torch = isinstance(query_feats, torch.Tensor) or isinstance(gallery_feats, torch.Tensor)
    query, gallery = _as_float32_pair(query_feats, gallery_feats, as_torch)
    if metric == "cosine" or normalize:
        query, gallery = _l2_normalize(query), _l2_normalize(gallery)
    num_query, num_gallery = query.shape[0], gallery.shape[0]
    out = np.empty((num_query, num_gallery), dtype=np.float32)
    rows = max(1, block_elements // max(num_gallery, 1))
    gallery_t = gallery.T
    gallery_sq = (gallery * gallery).sum(1)
    for start in range(0, num_query, rows):
        block = query[start:start + rows]
        sim = block @ gallery_t
        if metric == "cosine":
            dist = 1.0 - sim
        else:
            dist = (block * block).sum(1)[:, None] + gallery_sq[None, :] - 2.0 * sim
            dist = dist.clamp_(min=0).sqrt_() if as_torch else np.sqrt(np.maximum(dist, 0, out=dist), out=dist)
        out[start:start + rows] = dist.cpu().numpy() if as_torch else dist
    return out


def _as_float32_pair(query_feats, gallery_feats, as_torch):
    if as_torch:
        device = next(x.device for x in (query_feats, gallery_feats) if isinstance(x, torch.Tensor))
        query, gallery = (torch.as_tensor(x).to(device=device, dtype=torch.float32).detach()
                          for x in (query_feats, gallery_feats))
    else:
        query, gallery = (np.asarray(x, dtype=np.float32) for x in (query_feats, gallery_feats))
    for name, feats in (("query_feats", query), ("gallery_feats", gallery)):
        if feats.ndim != 2:
            raise ValueError(f"{name} must be a 2-D (num_images, feat_dim) array, got shape {tuple(feats.shape)}")
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query_feats and gallery_feats must have the same feature dimension, "
                         f"got {query.shape[1]} and {gallery.shape[1]}")
    return query, gallery


def _l2_normalize(feats):
    if isinstance(feats, torch.Tensor):
        return torch.nn.functional.normalize(feats, dim=1)
    return l2_normalize(feats, axis=1)
