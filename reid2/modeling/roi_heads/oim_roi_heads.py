"""``OIMROIHeads``: Detectron2's C4 ``Res5ROIHeads`` plus OIM's identity branch (Xiao et al., CVPR'17).

One res5 pass per RoI feeds both heads: its average-pooled feature goes to the box predictor
(person/background scores, box deltas) and to the embedding head (Linear → 256, L2-normalised), which is
trained with :class:`OIMLoss`. Sampled foreground proposals inherit the person id of their matched ground
truth (``proposals.gt_pids``; background ``BACKGROUND_PID``).

Extension points (used by the distillation heads): :meth:`label_and_sample_proposals`,
:meth:`box_forward` (predictions and pooled features of any proposals, e.g. the student's sampled
proposals through a teacher), :meth:`losses`; in training ``forward`` returns the sampled proposals.
"""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from ..backbones.c4 import build_basic_res5_head, build_res4_tail, build_tiny_res5_head, head_cfg, res4_trunk_blocks
from ..backbones.mobilenet_c4 import build_mobilenet_c4_res5_head
from ..losses.oim import OIMLoss
from ..losses.pids import BACKGROUND_PID

__all__ = ["OIMROIHeads", "EmbeddingHead", "BACKGROUND_PID"]



class EmbeddingHead(nn.Module):
    """Linear projection of the pooled res5 feature to the identity space, L2-normalised (Caffe ``feat``).

    ``norm="BN"`` inserts a BatchNorm1d before the normalisation (NAE/SeqNet's ``NormAwareEmbedding``): it
    removes the component all RoIs share, which keeps a randomly initialised network from starting with
    (and staying at) identical embeddings.
    """

    def __init__(self, in_channels: int, feat_dim: int = 256, norm: str = ""):
        super().__init__()
        if norm not in ("", "BN"):
            raise ValueError(f"MODEL.PERSON_SEARCH.EMBEDDING_NORM must be '' or 'BN', got {norm!r}")
        self.projection = nn.Linear(in_channels, feat_dim)
        nn.init.normal_(self.projection.weight, std=0.01)
        nn.init.zeros_(self.projection.bias)
        self.norm = nn.BatchNorm1d(feat_dim) if norm == "BN" else nn.Identity()

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.norm(self.projection(pooled)), dim=1)


@ROI_HEADS_REGISTRY.register()
class OIMROIHeads(Res5ROIHeads):
    """C4 RoI heads with a shared res5: box predictor + (when ``embedding_head`` is given) OIM identity branch.

    Inference instances get ``reid_feats`` (N, D): the embedding of the proposal each detection came from
    (as the original OIM, which embeds proposals, not the regressed boxes).
    """

    @configurable
    def __init__(self, *, embedding_head: Optional[nn.Module] = None, oim_loss: Optional[OIMLoss] = None,
                 oim_loss_weight: float = 1.0, res4: Optional[nn.Module] = None, **kwargs):
        super().__init__(**kwargs)
        # SPLIT "conv4_3": res4d-f, run per RoI before res5 (None for the C4 split).
        self.res4 = res4
        if (embedding_head is None) != (oim_loss is None):
            raise ValueError("OIMROIHeads: give both embedding_head and oim_loss, or neither (detector only)")
        if self.mask_on:
            raise ValueError("OIMROIHeads does not support MODEL.MASK_ON")
        self.embedding_head = embedding_head
        self.oim_loss = oim_loss
        self.oim_loss_weight = oim_loss_weight

    @property
    def reid_on(self) -> bool:
        return self.embedding_head is not None

    @classmethod
    def from_config(cls, cfg, input_shape):
        from reid2.data import num_train_identities

        ret = super().from_config(head_cfg(cfg), input_shape)
        if res4_trunk_blocks(cfg) is not None:
            ret["res4"] = build_res4_tail(head_cfg(cfg))
        if cfg.MODEL.PERSON_SEARCH.REID_ON:
            oim = cfg.MODEL.OIM
            pooled_channels = ret["box_predictor"].cls_score.in_features
            ret["embedding_head"] = EmbeddingHead(pooled_channels, oim.FEAT_DIM,
                                                   norm=cfg.MODEL.PERSON_SEARCH.EMBEDDING_NORM)
            ret["oim_loss"] = OIMLoss(num_train_identities(cfg, "MODEL.OIM.NUM_PIDS"), oim.QUEUE_SIZE, oim.FEAT_DIM,
                                      scalar=oim.SCALAR, momentum=oim.MOMENTUM, normalize_lut=oim.NORMALIZE_LUT,
                                      fixed_lut=oim.FIXED_LUT)
            ret["oim_loss_weight"] = oim.LOSS_WEIGHT
        return ret

    @classmethod
    def _build_res5_block(cls, cfg):
        head = cfg.MODEL.PERSON_SEARCH.RES5_HEAD
        if head == "tiny":
            return build_tiny_res5_head(cfg)
        if head == "mobilenet_v2":
            return build_mobilenet_c4_res5_head(cfg)
        if head != "resnet":
            raise ValueError(f"MODEL.PERSON_SEARCH.RES5_HEAD must be 'resnet', 'mobilenet_v2' or 'tiny', "
                             f"got {head!r}")
        if cfg.MODEL.RESNETS.DEPTH in (18, 34):
            return build_basic_res5_head(cfg)
        return super()._build_res5_block(cfg)

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals: List[Instances], targets: List[Instances]) -> List[Instances]:
        """Detectron2's sampling; ``gt_pids`` of the matched ground truth on foreground, ``BACKGROUND_PID`` else."""
        if not all(t.has("gt_pids") for t in targets):
            raise ValueError("OIMROIHeads: training targets need 'gt_pids' (use PersonSearchDatasetMapper)")
        sampled = super().label_and_sample_proposals(proposals, targets)
        for p in sampled:
            background = p.gt_classes == self.num_classes
            if p.has("gt_pids"):
                p.gt_pids = torch.where(background, torch.full_like(p.gt_pids, BACKGROUND_PID), p.gt_pids)
            else:  # image without ground truth: Detectron2 copies no gt_* field
                p.gt_pids = torch.full_like(p.gt_classes, BACKGROUND_PID)
        return sampled

    def _shared_roi_transform(self, features: List[torch.Tensor], boxes: List[Boxes]) -> torch.Tensor:
        x = self.pooler(features, boxes)
        if self.res4 is not None:
            x = self.res4(x)
        return self.res5(x)

    def pooled_features(self, features: Dict[str, torch.Tensor], boxes: List[Boxes]) -> torch.Tensor:
        """(ΣN_i, C): RoI-pooled res4 (→ res4d-f) → res5 → spatial mean, for boxes in input-image coordinates."""
        return self._shared_roi_transform([features[f] for f in self.in_features], boxes).mean(dim=[2, 3])

    def box_forward(self, features: Dict[str, torch.Tensor], proposals: List[Instances]) -> Tuple[tuple, torch.Tensor]:
        """(box predictor outputs (scores, deltas), pooled features) of the proposals."""
        pooled = self.pooled_features(features, [p.proposal_boxes for p in proposals])
        return self.box_predictor(pooled), pooled

    def losses(self, predictions: tuple, pooled: torch.Tensor, proposals: List[Instances]) -> Dict[str, torch.Tensor]:
        """Fast R-CNN losses and, with the identity branch, ``loss_oim`` already weighted by λ_oim."""
        losses = self.box_predictor.losses(predictions, proposals)
        if self.reid_on:
            pids = cat([p.gt_pids for p in proposals])
            losses["loss_oim"] = self.oim_loss_weight * self.oim_loss(self.embedding_head(pooled), pids)
        return losses

    def forward(self, images: ImageList, features: Dict[str, torch.Tensor], proposals: List[Instances],
                targets: Optional[List[Instances]] = None):
        """Training: (sampled proposals, losses). Inference: (instances with ``reid_feats`` if reid_on, {})."""
        del images
        if self.training:
            if not targets:
                raise ValueError("OIMROIHeads: training needs targets (ground-truth Instances)")
            proposals = self.label_and_sample_proposals(proposals, targets)
            predictions, pooled = self.box_forward(features, proposals)
            return proposals, self.losses(predictions, pooled, proposals)
        predictions, pooled = self.box_forward(features, proposals)
        instances, kept_indices = self.box_predictor.inference(predictions, proposals)
        if self.reid_on:
            pooled_per_image = pooled.split([len(p) for p in proposals])
            for inst, image_pooled, kept in zip(instances, pooled_per_image, kept_indices):
                inst.reid_feats = self.embedding_head(image_pooled[kept])
        return instances, {}

    def embed_boxes(self, features: Dict[str, torch.Tensor], boxes: List[Boxes]) -> List[torch.Tensor]:
        """Identity embeddings (n_i, D) of given boxes (input-image coordinates), one tensor per image."""
        if not self.reid_on:
            raise RuntimeError("embed_boxes needs the identity branch (MODEL.PERSON_SEARCH.REID_ON True)")
        embeddings = self.embedding_head(self.pooled_features(features, boxes))
        return list(embeddings.split([len(b) for b in boxes]))
