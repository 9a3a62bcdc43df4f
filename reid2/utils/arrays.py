"""Array helpers shared by evaluation, tools and projects."""
import numpy as np

__all__ = ["l2_normalize"]


def l2_normalize(x, axis: int = -1) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)
