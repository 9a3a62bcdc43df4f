"""``PersonSearchRCNN``: end-to-end person search (OIM) as a Detectron2 ``GeneralizedRCNN``.

Backbone to res4 → RPN → :class:`~reid2.modeling.roi_heads.OIMROIHeads` (shared res5: box predictor + identity
embedding). Training returns the loss dict (RPN, Fast R-CNN, ``loss_oim`` weighted by λ_oim); inference
returns per image ``{"instances": Instances(pred_boxes, scores, pred_classes, reid_feats)}`` in original image
coordinates. :meth:`embed_boxes` embeds given (query) boxes without running the detector.

Every forward path computes the backbone features in :meth:`extract_features`, so a subclass (e.g. knowledge
distillation with a hint loss on res4) can override or reuse it.
"""
from typing import Dict, List, Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.structures import Boxes, ImageList
from torch import nn

from .. import backbones, roi_heads  # noqa: F401  (register the C4 parts it is built from)
from ..backbones.c4 import remap_res4_split_keys, res4_trunk_blocks, truncate_res4

__all__ = ["PersonSearchRCNN"]


@META_ARCH_REGISTRY.register()
class PersonSearchRCNN(GeneralizedRCNN):
    """Faster R-CNN C4 with an OIM identity branch (Xiao et al., CVPR'17).

    ``MODEL.PERSON_SEARCH.SPLIT "conv4_3"`` cuts the ResNet after res4c instead (the original OIM): the backbone
    keeps res4a-c, the RoI head runs res4d-f before res5. Checkpoints of either split load into both.
    """

    @configurable
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if isinstance(getattr(self.backbone, "res4", None), nn.Sequential):
            self._register_load_state_dict_pre_hook(_move_res4_blocks, with_module=True)

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        trunk = res4_trunk_blocks(cfg)
        if trunk is not None:
            truncate_res4(ret["backbone"], trunk)
        return ret

    class_count_keys = {"MODEL.OIM.NUM_PIDS": ("roi_heads.oim_loss.lut",)}

    def extract_features(self, images: ImageList) -> Dict[str, torch.Tensor]:
        """Backbone features (``{"res4": ...}`` for C4 models) of preprocessed images."""
        return self.backbone(images.tensor)

    def forward(self, batched_inputs: List[dict]):
        if not self.training:
            return self.inference(batched_inputs)
        if not all("instances" in x for x in batched_inputs):
            raise ValueError("PersonSearchRCNN: training inputs need 'instances' (PersonSearchDatasetMapper)")
        images = self.preprocess_image(batched_inputs)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        features = self.extract_features(images)
        proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        _, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        return {**detector_losses, **proposal_losses}

    def inference(self, batched_inputs: List[dict], do_postprocess: bool = True):
        """Detections with ``reid_feats``; in original image coordinates when ``do_postprocess``."""
        images = self.preprocess_image(batched_inputs)
        features = self.extract_features(images)
        proposals, _ = self.proposal_generator(images, features, None)
        results, _ = self.roi_heads(images, features, proposals, None)
        if do_postprocess:
            return self._postprocess(results, batched_inputs, images.image_sizes)
        return results

    def embed_boxes(self, batched_inputs: List[dict], boxes_per_image: Sequence) -> List[torch.Tensor]:
        """Identity embeddings (n_i, D) of boxes given in original image coordinates (xyxy), one per image.

        ``batched_inputs`` are test-mapped dicts (``image`` resized, ``height``/``width`` of the original).
        Call it in eval mode (and under ``torch.no_grad()`` for evaluation), like inference.
        """
        if len(boxes_per_image) != len(batched_inputs):
            raise ValueError(f"embed_boxes: {len(batched_inputs)} images but {len(boxes_per_image)} box sets")
        images = self.preprocess_image(batched_inputs)
        features = self.extract_features(images)
        scaled = []
        for inputs, boxes, (height, width) in zip(batched_inputs, boxes_per_image, images.image_sizes):
            boxes = torch.as_tensor(boxes, dtype=torch.float32, device=self.device).reshape(-1, 4)
            scale_x = width / inputs.get("width", width)
            scale_y = height / inputs.get("height", height)
            scaled.append(Boxes(boxes * boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])))
        return self.roi_heads.embed_boxes(features, scaled)


def _move_res4_blocks(model, state_dict, prefix, *args):
    """Load-time renaming of res4 blocks between the C4 (``backbone.res4.i``) and conv4_3 (``roi_heads.res4.i``)
    layouts, so a C4 checkpoint (e.g. converted ImageNet weights) initialises a conv4_3 model and vice versa."""
    remap_res4_split_keys(state_dict, len(model.backbone.res4), prefix)
