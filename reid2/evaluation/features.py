"""Features of many images with a re-ID model in eval mode: the one loop behind clustering rounds (RSL, SLSR),
the predictor's embedder and any caller that wants an (N, D) array in the images' order."""
from typing import Callable, Iterable, Optional

import numpy as np
import torch

from reid2.utils.modules import unwrap_model
from reid2.utils.progress import progress_bar

__all__ = ["compute_features", "dataset_features"]


@torch.no_grad()
def compute_features(model, batches: Iterable, embed: Optional[Callable] = None, total: Optional[int] = None,
                     desc: Optional[str] = None) -> np.ndarray:
    """(N, D) float32 features of every batch, concatenated in order.

    ``batches`` yields image tensors (B, 3, H, W) or batch dicts with ``images``; ``embed(images)`` gives the
    features (default: the model's eval forward on ``{"images": images}``, a tensor or ``{"features": ...}``).
    The model is put in eval mode and its mode restored afterwards, also on error, so a training loop can call
    this between steps. ``desc`` shows a progress bar; an empty input gives a (0, 0) array.
    """
    model = unwrap_model(model)
    if embed is None:
        def embed(images):
            return model({"images": images})
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    feats = []
    try:
        for batch in progress_bar(batches, total=total, desc=desc, unit="batch", enabled=None if desc else False):
            images = batch["images"] if isinstance(batch, dict) else batch
            out = embed(images.to(device))
            out = out["features"] if isinstance(out, dict) else out
            feats.append(out.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(feats).numpy() if feats else np.zeros((0, 0), np.float32)


def dataset_features(cfg, model, dicts, embed: Optional[Callable] = None, batch_size: Optional[int] = None,
                     desc: Optional[str] = "features") -> np.ndarray:
    """:func:`compute_features` of re-ID dataset dicts (``file_name``, ``pid``, ...) read with ``cfg``'s test
    transform and loader (``batch_size`` images a batch, default ``TEST.IMS_PER_BATCH``)."""
    from reid2.data import build_reid_test_loader

    if batch_size:
        cfg = cfg.clone()
        cfg.defrost()
        cfg.TEST.IMS_PER_BATCH = batch_size
    loader = build_reid_test_loader(cfg, None, dicts=dicts, skip_bad_images=False)  # one row per dict
    return compute_features(model, loader, embed, total=len(loader), desc=desc)
