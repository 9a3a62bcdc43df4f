"""Array helpers shared by evaluation, tools and projects."""
import numpy as np

__all__ = ["l2_normalize"]


def l2_normalize(x, axis: int = -1, dtype=np.float32) -> np.ndarray:
    """Rows scaled to unit L2 norm (``dtype``, float32 by default); all-zero rows stay zero."""
    x = np.asarray(x, dtype=dtype)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)
