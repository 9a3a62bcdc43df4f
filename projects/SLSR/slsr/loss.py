"""``SLSRLoss`` (REID_LOSS_REGISTRY): Eq. 13 with the SLSR / LSRO label of generated images and, with
``SLSR.NOISE_LAYER.TYPE softmax``, the K x K reading of the noise layer of §4.3 (the paper's D x D reading,
``TYPE feature``, sits in the model: :mod:`slsr.modeling`).

    p = softmax(z),   p̃ = normalise(max(W p, η))  (noise layer, W ∈ R^{K x K} initialised to I)
    L = 1/B Σ_i -Σ_k q_i(k) log p̂_i(k),   p̂_i = p̃_i for the images the layer applies to, else p_i

with q_i from :mod:`slsr.targets`. W is learnt with the network ("a linear layer on top of the softmax
layer rather than a non-linear one"); the clamp/renormalisation keeps p̃ a distribution whatever W
becomes. At test time only features are used, so the layer never changes retrieval.
"""
import json

import torch
import torch.nn.functional as F
from torch import nn

from reid2.modeling import REID_LOSS_REGISTRY, soft_cross_entropy

from .modeling import check_noise_layer_cfg
from .targets import batch_targets, cluster_target_matrix

__all__ = ["NoiseAdaptationLayer", "SLSRLoss", "slsr_loss", "load_label_sets"]

_EPS = 1e-8


class NoiseAdaptationLayer(nn.Module):
    """K x K linear map on softmax probabilities, identity at initialisation; outputs a distribution."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(num_classes, num_classes, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(num_classes))

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        out = self.linear(probs).clamp(min=_EPS)
        return out / out.sum(dim=1, keepdim=True)


def slsr_loss(logits, targets, noise_layer=None, noise_rows=None):
    """Mean over the batch of -Σ_k q(k) log p̂(k); ``noise_rows`` (B,) bool selects the rows through the layer
    (their logits become log p̃, which log-softmax leaves unchanged)."""
    if noise_layer is not None and noise_rows is not None and bool(noise_rows.any()):
        noisy = torch.log(noise_layer(F.softmax(logits[noise_rows], dim=1)))
        logits = logits.clone()
        logits[noise_rows] = noisy
    return soft_cross_entropy(logits, targets)


def load_label_sets(path: str):
    """(label_sets, num_classes) from stage 1's ``clusters.json``."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"SLSR: cluster file {path} not found; run stage 1 (projects/SLSR/tools/train_net.py) or set "
            "SLSR.WORK_DIR to the pipeline's output folder") from None
    return [c["classes"] for c in data["clusters"]], int(data["num_classes"])


@REID_LOSS_REGISTRY.register()
class SLSRLoss(nn.Module):
    """Cross-entropy of Eq. 13 over real (pid >= 0) and generated (pid < 0) images of a batch.

    Built by ``ReIDBaseline`` from ``cfg`` (``MODEL.LOSSES.NAMES: ["SLSRLoss"]``); the clusters' label
    sets come from ``<SLSR.WORK_DIR>/stage1/clusters.json`` when ``SLSR.USE_GENERATED``.
    """

    def __init__(self, cfg, num_classes, feat_dim, label_sets=None):
        super().__init__()
        c = cfg.SLSR
        self.num_classes, self.weight, self.epsilon = num_classes, c.LOSS.WEIGHT, c.LOSS.REAL_EPSILON
        if label_sets is None and c.USE_GENERATED:
            from .paths import stage_paths

            label_sets, n = load_label_sets(stage_paths(cfg).clusters)
            if n != num_classes:
                raise ValueError(f"SLSR: clusters.json was built for {n} classes, the model has {num_classes}")
        label_sets = label_sets or []
        q = cluster_target_matrix(label_sets, num_classes, c.LOSS.MODE) if label_sets else torch.zeros(0, num_classes)
        self.register_buffer("cluster_targets", q, persistent=False)
        check_noise_layer_cfg(cfg)
        self.apply_to = c.NOISE_LAYER.APPLY_TO
        softmax_layer = c.NOISE_LAYER.ENABLED and c.NOISE_LAYER.TYPE == "softmax"
        self.noise_layer = NoiseAdaptationLayer(num_classes) if softmax_layer else None

    def forward(self, out):
        logits, pids = out["logits"], out["targets"]
        targets = batch_targets(pids, self.cluster_targets, self.num_classes, self.epsilon)
        rows = torch.ones_like(pids, dtype=torch.bool) if self.apply_to == "all" else pids < 0
        loss = slsr_loss(logits, targets.to(logits.dtype), self.noise_layer, rows)
        return {"loss_slsr": self.weight * loss}
