"""DSAP-images (dense alignment, paper §3.1) and CSA part crops (coarse alignment, paper Table 4).

Orientation. The paper puts a body pixel of part p with semantics (u, v) at (⌊u·S⌋, ⌊v·S⌋) of DSAP image p,
rows = U, columns = V. Here each part image is that image **rotated by 90° counter-clockwise**
(``np.rot90(paper, 1)``: a transpose plus a vertical flip): column ⌊u·S⌋, row S − 1 − ⌊v·S⌋ (⌊·S⌋ capped at
S − 1, needed for u or v = 1). This is DensePose's texture-atlas layout (U along x, 1 − V along y,
``shared/notes/densepose.md`` §2), so the images can be checked against DensePose's own texture views; a fixed
rotation of every part image changes nothing for a CNN trained from scratch with square kernels.
The row is computed from ⌊v·S⌋ (not ⌊(1 − v)·S⌋), so values with v·S an exact integer land on the exact rotation
of the paper's cell.

Collisions (several pixels on one cell): ``collision="copy"`` (default) keeps the last pixel in raster order,
the paper's "we simply copy the pixel value"; ``"mean"`` averages them (smoother, less aliased).
Unreached cells keep the fill pixel (the paper's "mean values of images").
"""
from typing import Optional, Sequence

import cv2
import numpy as np

from .parts import NUM_PARTS, POINT_LABEL_SYMMETRIES

COLLISIONS = ("copy", "mean")

__all__ = ["COLLISIONS", "dsap_cells", "warp_to_dsap", "csa_part_images", "flip_iuv", "load_uv_symmetry_transforms",
           "mean_pixel"]


def mean_pixel(image: np.ndarray) -> np.ndarray:
    """The image's mean colour (float32 [3]): the default fill of empty cells."""
    return np.asarray(image, dtype=np.float64).reshape(-1, image.shape[-1]).mean(0).astype(np.float32)


def _check_inputs(image, labels, u, v, size):
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be H×W×3, got {image.shape}")
    if labels.shape != image.shape[:2] or np.shape(u) != labels.shape or np.shape(v) != labels.shape:
        raise ValueError(f"labels {labels.shape}, u {np.shape(u)}, v {np.shape(v)} must all be the image's H×W "
                         f"{image.shape[:2]}")
    if size < 1:
        raise ValueError(f"DSAP size must be positive, got {size}")
    if labels.size and (labels.min() < 0 or labels.max() > NUM_PARTS):
        raise ValueError(f"labels must be in 0..{NUM_PARTS}, got [{labels.min()}, {labels.max()}]")
    return image, labels


def _fill(image, fill):
    f = mean_pixel(image) if fill is None else np.broadcast_to(np.asarray(fill, np.float32), (3,))
    return np.asarray(f, np.float32)


def dsap_cells(u, v, size: int):
    """(row, col) of DSAP cells for semantics (u, v) (clamped to [0, 1]): col ⌊u·S⌋, row S − 1 − ⌊v·S⌋."""
    uu = np.clip(np.asarray(u, np.float64), 0.0, 1.0)
    vv = np.clip(np.asarray(v, np.float64), 0.0, 1.0)
    col = np.minimum(np.floor(uu * size).astype(np.int64), size - 1)
    row = size - 1 - np.minimum(np.floor(vv * size).astype(np.int64), size - 1)
    return row, col


def warp_to_dsap(image, labels, u, v, size: int = 32, fill: Optional[Sequence[float]] = None,
                 collision: str = "copy") -> np.ndarray:
    """Warp the body pixels of ``image`` (H×W×3) into 24 DSAP images: float32 (24, size, size, 3).

    ``labels`` H×W in 0..24 (0 = background, not warped), ``u``, ``v`` H×W (clamped to [0, 1]);
    ``fill`` = pixel of cells no body pixel reaches (default: the image mean); ``collision`` = "copy" (the last
    pixel in raster order wins, the paper) or "mean" (``MODEL.DSA.COLLISION``). Vectorised over the flat
    (part, row, col) cell index.
    """
    if collision not in COLLISIONS:
        raise ValueError(f"MODEL.DSA.COLLISION must be one of {COLLISIONS}, got {collision!r}")
    image, labels = _check_inputs(image, labels, u, v, size)
    fill = _fill(image, fill)
    n = NUM_PARTS * size * size
    out = np.empty((n, 3), np.float32)
    out[:] = fill
    body = labels > 0
    if body.any():
        part = labels[body].astype(np.int64) - 1
        row, col = dsap_cells(np.asarray(u)[body], np.asarray(v)[body], size)
        cell = (part * size + row) * size + col
        pix = image[body].astype(np.float64)  # raster order
        if collision == "copy":
            # first occurrence in the reversed order = last write in raster order (deterministic)
            cells, first = np.unique(cell[::-1], return_index=True)
            out[cells] = pix[::-1][first]
        else:
            count = np.bincount(cell, minlength=n)
            hit = count > 0
            for c in range(3):
                total = np.bincount(cell, weights=pix[:, c], minlength=n)
                out[hit, c] = (total[hit] / count[hit]).astype(np.float32)
    return out.reshape(NUM_PARTS, size, size, 3)


def csa_part_images(image, labels, u=None, v=None, size: int = 32,
                    fill: Optional[Sequence[float]] = None) -> np.ndarray:
    """Coarse alignment (CSA): per part the bounding box of its pixels, cropped and resized to size×size.

    Same output as :func:`warp_to_dsap` (float32 (24, size, size, 3)); absent parts are all ``fill``.
    The crop keeps everything inside the box (no alignment within the part), as the paper's ablation.
    ``u``, ``v`` are unused (accepted so the two builders are interchangeable).
    """
    image = np.asarray(image)
    labels = np.asarray(labels)
    if u is None:
        u = v = np.zeros(labels.shape, np.float32)
    image, labels = _check_inputs(image, labels, u, v, size)
    fill = _fill(image, fill)
    out = np.empty((NUM_PARTS, size, size, 3), np.float32)
    out[:] = fill
    present = np.unique(labels)
    for p in present[present > 0]:
        ys, xs = np.nonzero(labels == p)
        crop = image[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.float32)
        out[p - 1] = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)
    return out


def load_uv_symmetry_transforms(path: str):
    """DensePose's ``UV_symmetry_transforms.mat`` → (U_transforms, V_transforms), each float32 (24, 256, 256)."""
    import os

    from scipy.io import loadmat

    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"UV symmetry file not found: {path} (MODEL.DSA.UV_SYMMETRY_FILE; it ships in DensePose's "
            "densepose_uv_data.tar.gz). Leave it empty to keep the DSAG input unflipped.")
    mat = loadmat(path)
    for key in ("U_transforms", "V_transforms"):
        if key not in mat:
            raise KeyError(f"{path}: missing {key!r} (has {sorted(k for k in mat if not k.startswith('__'))})")
    tables = []
    for key in ("U_transforms", "V_transforms"):
        cells = mat[key]
        tables.append(np.stack([np.asarray(cells[0, p], np.float32) for p in range(NUM_PARTS)]))
    return tables[0], tables[1]


def flip_iuv(labels, u, v, u_transforms, v_transforms):
    """Horizontal flip of an IUV map with DensePose's semantics (as D2 ``chart_output_hflip``):
    mirror the arrays, swap labels with ``POINT_LABEL_SYMMETRIES`` and remap (U, V) with the per-part
    256×256 lookup tables (indexed ``[part-1, v_loc, u_loc]``)."""
    labels = np.asarray(labels)[:, ::-1]
    u = np.clip(np.asarray(u, np.float32)[:, ::-1], 0, 1)
    v = np.clip(np.asarray(v, np.float32)[:, ::-1], 0, 1)
    new_labels = np.asarray(POINT_LABEL_SYMMETRIES, np.uint8)[labels]
    body = labels > 0
    u_loc = (u * 255).astype(np.int64)
    v_loc = (v * 255).astype(np.int64)
    new_u, new_v = np.zeros_like(u), np.zeros_like(v)
    p = labels[body].astype(np.int64) - 1
    new_u[body] = u_transforms[p, v_loc[body], u_loc[body]]
    new_v[body] = v_transforms[p, v_loc[body], u_loc[body]]
    return np.ascontiguousarray(new_labels), new_u, new_v
