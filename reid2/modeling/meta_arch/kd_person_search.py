"""``KDPersonSearchRCNN``: OIM person search trained with knowledge distillation (Munjal et al., BMVC'19).

Two independent teacher signals, each switched on by the config:

* KD_reid (``MODEL.KD.REID.LUT_SOURCE``): the student's OIM look-up table is a trained OIM teacher's,
  copied in (rows L2-normalised, row count checked) and frozen; the unlabelled queue still moves. The
  table is (re)loaded at the first training step, so ``--eval-only`` never needs the file.
* KD_det (``MODEL.KD.TEACHER_CONFIG`` + ``TEACHER_WEIGHTS``, and ``MODEL.KD.{HINT,RPN,RCN}.ENABLED``): a
  frozen teacher detector, built from its own config, runs in eval mode on the student's batch (same resized
  images, hence the same anchors). Losses of Chen et al. (NeurIPS'17), see :mod:`reid2.modeling.losses.kd`:
  hint on the res4 map through a 1×1 adapter (``loss_hint``), L_cls = μ·L_hard + (1−μ)·L_soft for the RPN
  (binary objectness on the RPN's sampled anchors) and the RCN (K+1 classes on the student's sampled
  proposals, background weighted), and the teacher-bounded regression (``loss_rpn_bounded``,
  ``loss_box_bounded``, weighted by ν) beside the smooth-L1 losses, normalised as those are (by the sampled
  anchors / RoIs, so the two regression terms keep Detectron2's relative scale). Two departures from the
  paper's formula, off by default: ``SOFT_T2_SCALING`` (L_soft × T², so the soft term keeps the hard loss's
  gradient scale) and ``BG_WEIGHT_MODE "sample"`` (the background weight on background RoIs' soft loss rather
  than inside the class sum, whose optimum lowers every score).

The teacher is not a sub-module: it is in no checkpoint, no optimizer and no DDP wrapper. The adapter is a
training-only module: the model declares it in ``training_only_modules``, so trainers export weights without it, and the
trainer writes ``model_final_inference.pth`` without it, loadable into a plain :class:`PersonSearchRCNN`.
"""
import logging
import os
from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from detectron2.structures import Boxes, ImageList, Instances

from reid2.config.kd import build_teacher_cfg
from reid2.utils.serialization import SafeCheckpointer

from ..kd import (
    HINT_REDUCTIONS,
    TRAINING_ONLY_MODULES,
    HintAdapter,
    bounded_regression_loss,
    distillation_cls_loss,
    hint_loss,
    load_lut,
    rcn_class_weights,
    rpn_soft_objectness_loss,
    soft_cross_entropy_with_temperature,
)
from .person_search import PersonSearchRCNN

__all__ = ["KDPersonSearchRCNN"]

logger = logging.getLogger(__name__)


def _rpn_outputs(rpn, features: Dict[str, torch.Tensor]):
    """Anchors, objectness logits [(N, Hi·Wi·A)] and deltas [(N, Hi·Wi·A, 4)] as Detectron2's ``RPN.forward``."""
    maps = [features[f] for f in rpn.in_features]
    anchors = rpn.anchor_generator(maps)
    logits, deltas = rpn.rpn_head(maps)
    logits = [score.permute(0, 2, 3, 1).flatten(1) for score in logits]
    box_dim = rpn.anchor_generator.box_dim
    deltas = [x.view(x.shape[0], -1, box_dim, x.shape[-2], x.shape[-1]).permute(0, 3, 4, 1, 2).flatten(1, -2)
              for x in deltas]
    return anchors, logits, deltas


def _class_deltas(deltas: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """(N, 4) deltas of each RoI's class from (N, 4) class-agnostic or (N, 4K) class-specific predictions."""
    if deltas.shape[1] == 4:
        return deltas
    return deltas.view(deltas.shape[0], -1, 4)[torch.arange(len(classes), device=deltas.device), classes]


@META_ARCH_REGISTRY.register()
class KDPersonSearchRCNN(PersonSearchRCNN):
    """:class:`PersonSearchRCNN` + KD_reid (frozen teacher LUT) and / or KD_det (teacher detector)."""

    # Child modules used only in training (the hint adapter): left out of the exported inference weights, and
    # optional when weights are loaded for inference.
    training_only_modules = TRAINING_ONLY_MODULES

    @property
    def optional_weight_prefixes(self):
        """With KD_reid the OIM table is copied from ``MODEL.KD.REID.LUT_SOURCE`` at the first step and unused at
        inference, so a weight file may lack it (or hold one of another size)."""
        return ("roi_heads.oim_loss.lut",) if self.lut_source else ()

    @configurable
    def __init__(self, *, teacher=None, teacher_weights: str = "", hint_adapter: Optional[HintAdapter] = None,
                 hint_weight: float = 0.5, hint_reduction: str = "mean", rpn_kd: bool = False,
                 rcn_kd: bool = False, mu: float = 0.5,
                 temperature: float = 10.0, soft_t2_scaling: bool = False, bg_weight: float = 1.5,
                 bg_weight_mode: str = "class", reg_weight: float = 0.5, reg_margin: float = 0.0,
                 lut_source: str = "", lut_key: str = "", **kwargs):
        super().__init__(**kwargs)
        if (hint_adapter is not None or rpn_kd or rcn_kd) and teacher is None:
            raise ValueError("MODEL.KD.{HINT,RPN,RCN}.ENABLED need a teacher: set MODEL.KD.TEACHER_CONFIG")
        if lut_source and not self.roi_heads.reid_on:
            raise ValueError("MODEL.KD.REID.LUT_SOURCE needs the identity branch (MODEL.PERSON_SEARCH.REID_ON)")
        self.hint_adapter = hint_adapter
        self.hint_weight, self.rpn_kd, self.rcn_kd = hint_weight, rpn_kd, rcn_kd
        if hint_reduction not in HINT_REDUCTIONS:
            raise ValueError(f"MODEL.KD.HINT.REDUCTION must be one of {HINT_REDUCTIONS}, got {hint_reduction!r}")
        self.hint_reduction = hint_reduction
        if bg_weight_mode not in ("class", "sample"):
            raise ValueError(f"MODEL.KD.BG_WEIGHT_MODE must be 'class' or 'sample', got {bg_weight_mode!r}")
        self.mu, self.temperature, self.bg_weight, self.bg_weight_mode = mu, temperature, bg_weight, bg_weight_mode
        self.soft_scale = temperature ** 2 if soft_t2_scaling else 1.0
        self.reg_weight, self.reg_margin = reg_weight, reg_margin
        self.lut_source, self.lut_key = lut_source, lut_key
        if lut_source:
            self.roi_heads.oim_loss.fixed_lut = True  # KD_reid: the teacher's table, never updated
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)
        # Held outside the module tree: not saved, not optimised, not wrapped by DDP, never in train mode.
        object.__setattr__(self, "_teacher", teacher)
        self.teacher_weights = teacher_weights
        self._kd_ready = False

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        kd = cfg.MODEL.KD
        ret.update(mu=kd.MU, temperature=kd.TEMPERATURE, soft_t2_scaling=kd.SOFT_T2_SCALING,
                   bg_weight=kd.BG_WEIGHT, bg_weight_mode=kd.BG_WEIGHT_MODE, reg_weight=kd.REG_WEIGHT,
                   reg_margin=kd.REG_MARGIN, rpn_kd=kd.RPN.ENABLED, rcn_kd=kd.RCN.ENABLED,
                   hint_weight=kd.HINT.WEIGHT, hint_reduction=kd.HINT.REDUCTION, lut_source=kd.REID.LUT_SOURCE,
                   lut_key=kd.REID.LUT_KEY)
        if kd.TEACHER_CONFIG:
            ret["teacher"] = build_model(build_teacher_cfg(cfg))
            ret["teacher_weights"] = kd.TEACHER_WEIGHTS
            if kd.HINT.ENABLED:
                feature = cfg.MODEL.ROI_HEADS.IN_FEATURES[0]
                student_channels = ret["backbone"].output_shape()[feature].channels
                teacher_shapes = ret["teacher"].backbone.output_shape()
                if feature not in teacher_shapes:
                    raise ValueError(f"KD hint: the teacher backbone has no {feature!r} map "
                                     f"(has {sorted(teacher_shapes)})")
                teacher_channels = teacher_shapes[feature].channels
                ret["hint_adapter"] = HintAdapter(student_channels, teacher_channels, relu=kd.HINT.ADAPTER_RELU)
        elif kd.HINT.ENABLED or kd.RPN.ENABLED or kd.RCN.ENABLED:
            raise ValueError("MODEL.KD.{HINT,RPN,RCN}.ENABLED need a teacher: set MODEL.KD.TEACHER_CONFIG")
        return ret

    @property
    def teacher(self):
        return self._teacher

    @property
    def kd_det(self) -> bool:
        return self._teacher is not None

    def _prepare_kd(self) -> None:
        """First training step: load the teacher's weights and the teacher LUT (not needed for inference)."""
        if self._kd_ready:
            return
        if self._teacher is not None:
            weights = self.teacher_weights
            if not weights:
                raise ValueError("KD_det: MODEL.KD.TEACHER_WEIGHTS is empty; a randomly initialised teacher "
                                 "teaches nothing (give the trained teacher's checkpoint)")
            if "://" not in weights and not os.path.isfile(weights):
                raise FileNotFoundError(f"MODEL.KD.TEACHER_WEIGHTS: {weights} does not exist")
            SafeCheckpointer(self._teacher).load(weights)
            self._teacher.to(self.device).eval()
            logger.info("KD_det teacher %s loaded from %s", type(self._teacher).__name__, weights)
        if self.lut_source:
            oim = self.roi_heads.oim_loss
            oim.load_lut(load_lut(self.lut_source, oim.num_pids, oim.feat_dim, key=self.lut_key or None))
            logger.info("KD_reid: OIM LUT (%d × %d) loaded from %s and frozen", oim.num_pids, oim.feat_dim,
                        self.lut_source)
        self._kd_ready = True

    def _teacher_images(self, batched_inputs: List[dict]) -> ImageList:
        """The student's (resized) images, normalised as the teacher expects (channel order included)."""
        teacher = self._teacher
        images = [x["image"].to(teacher.device) for x in batched_inputs]
        if teacher.input_format != self.input_format:
            images = [img.flip(0) for img in images]  # RGB <-> BGR
        images = [(img - teacher.pixel_mean) / teacher.pixel_std for img in images]
        return ImageList.from_tensors(images, teacher.backbone.size_divisibility)

    def forward(self, batched_inputs: List[dict]):
        if not self.training:
            return self.inference(batched_inputs)
        if not all("instances" in x for x in batched_inputs):
            raise ValueError("KDPersonSearchRCNN: training inputs need 'instances' (PersonSearchDatasetMapper)")
        self._prepare_kd()
        images = self.preprocess_image(batched_inputs)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        features = self.extract_features(images)
        teacher_features = None
        if self.kd_det:
            with torch.no_grad():
                teacher_images = self._teacher_images(batched_inputs)
                if teacher_images.tensor.shape[-2:] != images.tensor.shape[-2:]:
                    raise ValueError("KD_det: teacher and student pad the batch differently "
                                     f"({tuple(teacher_images.tensor.shape)} vs {tuple(images.tensor.shape)})")
                teacher_features = self._teacher.backbone(teacher_images.tensor)

        losses = {}
        proposals = self._rpn_forward(images, features, gt_instances, teacher_features, losses)
        self._rcn_forward(features, proposals, gt_instances, teacher_features, losses)
        if self.hint_adapter is not None:
            name = self.roi_heads.in_features[0]
            losses["loss_hint"] = self.hint_weight * hint_loss(self.hint_adapter(features[name]),
                                                               teacher_features[name], self.hint_reduction)
        return losses

    def _rpn_forward(self, images, features, gt_instances, teacher_features, losses) -> List[Instances]:
        """Detectron2's RPN step (hard losses, proposals) plus the soft and bounded RPN terms of KD_det."""
        rpn = self.proposal_generator
        anchors, logits, deltas = _rpn_outputs(rpn, features)
        gt_labels, gt_boxes = rpn.label_and_sample_anchors(anchors, gt_instances)
        losses.update(rpn.losses(anchors, logits, gt_labels, deltas, gt_boxes))
        if self.rpn_kd:
            with torch.no_grad():
                _, t_logits, t_deltas = _rpn_outputs(self._teacher.proposal_generator, teacher_features)
            logits_s, logits_t = cat(logits, dim=1), cat(t_logits, dim=1)
            if logits_s.shape != logits_t.shape:
                raise ValueError(f"KD_det RPN: student and teacher have different anchors ({tuple(logits_s.shape)} "
                                 f"vs {tuple(logits_t.shape)}); use the same MODEL.ANCHOR_GENERATOR and stride")
            labels = torch.stack(gt_labels)
            sampled, positive = labels >= 0, labels == 1
            soft = self.soft_scale * rpn_soft_objectness_loss(logits_s[sampled], logits_t[sampled],
                                                              self.temperature)
            losses["loss_rpn_cls"] = distillation_cls_loss(losses["loss_rpn_cls"], soft, self.mu)
            all_anchors = Boxes.cat(anchors).tensor
            targets = torch.stack([rpn.box2box_transform.get_deltas(all_anchors, b) for b in gt_boxes])
            bounded = bounded_regression_loss(cat(deltas, dim=1)[positive], cat(t_deltas, dim=1)[positive],
                                              targets[positive], self.reg_margin)
            # Normalised like Detectron2's smooth-L1 beside it: by the sampled anchors, not the positives.
            normalizer = rpn.batch_size_per_image * len(gt_labels)
            losses["loss_rpn_bounded"] = self.reg_weight * bounded * positive.sum() / normalizer
        return rpn.predict_proposals(anchors, logits, deltas, images.image_sizes)

    def _rcn_forward(self, features, proposals, gt_instances, teacher_features, losses) -> None:
        """OIM RoI heads on the student's sampled proposals; the teacher's box head on the same proposals."""
        heads = self.roi_heads
        proposals = heads.label_and_sample_proposals(proposals, gt_instances)
        predictions, pooled = heads.box_forward(features, proposals)
        losses.update(heads.losses(predictions, pooled, proposals))
        if not self.rcn_kd:
            return
        with torch.no_grad():
            t_scores, t_deltas = _box_predictions(self._teacher.roi_heads, teacher_features, proposals)
        scores, deltas = predictions
        classes = cat([p.gt_classes for p in proposals])
        if self.bg_weight_mode == "class":
            weights = {"class_weights": rcn_class_weights(heads.num_classes, self.bg_weight).to(scores)}
        else:
            background = classes == heads.num_classes
            weights = {"sample_weights": torch.where(background, self.bg_weight, 1.0).to(scores)}
        soft = self.soft_scale * soft_cross_entropy_with_temperature(scores, t_scores, self.temperature, **weights)
        losses["loss_cls"] = distillation_cls_loss(losses["loss_cls"], soft, self.mu)
        fg = (classes >= 0) & (classes < heads.num_classes)
        proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals])[fg]
        gt_boxes = cat([p.gt_boxes.tensor for p in proposals])[fg]
        targets = heads.box_predictor.box2box_transform.get_deltas(proposal_boxes, gt_boxes)
        bounded = bounded_regression_loss(_class_deltas(deltas[fg], classes[fg]),
                                          _class_deltas(t_deltas[fg], classes[fg]), targets, self.reg_margin)
        # Normalised like Detectron2's box regression loss: by all sampled RoIs, not the foreground ones.
        losses["loss_box_bounded"] = self.reg_weight * bounded * fg.sum() / max(len(classes), 1)


def _box_predictions(heads, features, proposals):
    """(scores, deltas) of a C4 RoI head on given proposals: ``OIMROIHeads.box_forward`` or, for Detectron2's
    ``Res5ROIHeads``, the same res5 + box predictor path."""
    if hasattr(heads, "box_forward"):
        return heads.box_forward(features, proposals)[0]
    boxes = [p.proposal_boxes for p in proposals]
    pooled = heads._shared_roi_transform([features[f] for f in heads.in_features], boxes).mean(dim=[2, 3])
    return heads.box_predictor(pooled)
