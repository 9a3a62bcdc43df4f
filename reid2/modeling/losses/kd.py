"""KD_det losses of Chen et al. (NeurIPS'17) as used by Munjal et al. (BMVC'19, §4.1, Eq. 1-3).

    L_cls  = μ·L_hard + (1−μ)·L_soft,    L_soft = −Σ_c w_c P_t,c log P_s,c,  P = softmax(z / T)
    L_reg  = L_sL1(R_s, y) + ν·L_b,      L_b = ‖R_s − y‖² if ‖R_s − y‖² + m > ‖R_t − y‖², else 0
    L_hint = ‖f_a(F_s) − F_t‖²  (normalisation: ``reduction`` of :func:`hint_loss`)

Every teacher-side input is detached: the teacher only supervises. Losses over an empty batch
return a zero that is still connected to the student's graph (so DDP sees every parameter used).
No T² factor is applied to the soft losses here, as in Chen et al. and HqWei's PyTorch port; the model
multiplies them by T² under ``MODEL.KD.SOFT_T2_SCALING`` (Hinton et al.).
"""
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from reid2.utils.precision import at_least_fp32

__all__ = [
    "bounded_regression_loss",
    "distillation_cls_loss",
    "HINT_REDUCTIONS",
    "hint_loss",
    "rcn_class_weights",
    "rpn_soft_objectness_loss",
    "soft_cross_entropy_with_temperature",
]


def _check_same_shape(name: str, student: torch.Tensor, teacher: torch.Tensor, what: str) -> None:
    if student.shape != teacher.shape:
        raise ValueError(
            f"{name}: student and teacher {what} must have the same shape, got "
            f"{tuple(student.shape)} vs {tuple(teacher.shape)}"
        )


def _check_temperature(name: str, T: float) -> None:
    if not T > 0:
        raise ValueError(f"{name}: temperature T must be > 0, got {T}")


def rcn_class_weights(
    num_classes: int, bg_weight: float = 1.5, background_index: Optional[int] = None
) -> torch.Tensor:
    """Per-class weights w_c for the RCN soft loss: ``bg_weight`` on background, 1 elsewhere.

    ``num_classes`` is the number of *foreground* classes K (``MODEL.ROI_HEADS.NUM_CLASSES``); the
    result has K+1 entries. ``background_index`` defaults to K, Detectron2's convention (the box
    predictor's last logit is background); pass 0 for codebases that put background first.
    Chen et al. weight background by 1.5 because most sampled RoIs are background and the teacher's
    rare foreground mass would otherwise be drowned; the weight compensates the imbalance.
    """
    if num_classes < 1:
        raise ValueError(f"rcn_class_weights: num_classes (foreground) must be >= 1, got {num_classes}")
    index = num_classes if background_index is None else background_index
    if not -(num_classes + 1) <= index <= num_classes:
        raise ValueError(
            f"rcn_class_weights: background_index {index} is outside the {num_classes + 1} classes"
        )
    weights = torch.ones(num_classes + 1)
    weights[index] = bg_weight
    return weights


def soft_cross_entropy_with_temperature(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    T: float = 10.0,
    class_weights: Optional[Union[torch.Tensor, Sequence[float]]] = None,
    sample_weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """L_soft = 1/N Σ_i v_i · −Σ_c w_c P_t,ic log P_s,ic with P = softmax(z / T) over the C classes.

    Both logits are (N, C); ``class_weights`` w is (C,) (default all 1), e.g. :func:`rcn_class_weights`
    for the RCN's K+1 classes with Detectron2's background-last order; ``sample_weights`` v is (N,)
    (default all 1). Mean over the N samples.

    Chen et al. weight the classes inside the sum (w). Its minimiser is P_s ∝ w ⊙ P_t, not P_t: with
    w_bg = 1.5 the student's background logit is pulled T·ln 1.5 (4 at T = 10) above the teacher's,
    which lowers every detection score. Weighting the samples instead (v_i = w of RoI i's label)
    gives background RoIs the same extra weight and keeps the minimiser at P_t.
    """
    name = "soft_cross_entropy_with_temperature"
    _check_same_shape(name, student_logits, teacher_logits, "logits")
    _check_temperature(name, T)
    if student_logits.dim() != 2:
        raise ValueError(f"{name}: logits must be (N, C), got shape {tuple(student_logits.shape)}")
    if student_logits.shape[0] == 0:
        return student_logits.sum() * 0.0
    student_logits, teacher_logits = at_least_fp32(student_logits, teacher_logits)  # fp32 targets under AMP
    teacher_probs = F.softmax(teacher_logits.detach() / T, dim=1)
    per_class = teacher_probs * F.log_softmax(student_logits / T, dim=1)
    if class_weights is not None:
        weights = torch.as_tensor(class_weights, dtype=per_class.dtype, device=per_class.device)
        if weights.shape != (student_logits.shape[1],):
            raise ValueError(
                f"{name}: class_weights must have one entry per class ({student_logits.shape[1]}), "
                f"got shape {tuple(weights.shape)}"
            )
        per_class = per_class * weights
    per_sample = -per_class.sum(dim=1)
    if sample_weights is not None:
        if sample_weights.shape != per_sample.shape:
            raise ValueError(f"{name}: sample_weights must have one entry per sample ({per_sample.shape[0]}), "
                             f"got shape {tuple(sample_weights.shape)}")
        per_sample = per_sample * sample_weights.to(per_sample)
    return per_sample.mean()


def rpn_soft_objectness_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float = 10.0
) -> torch.Tensor:
    """Soft objectness loss for Detectron2's RPN, which emits one logit z per anchor.

    A binary softmax over [0, z] equals the sigmoid, so P = σ(z / T) and
    L = −[p_t log p_s + (1 − p_t) log(1 − p_s)], averaged over the anchors given (pass the
    anchors the RPN's hard loss uses, e.g. its sampled ones). Any shape; both must match.
    """
    name = "rpn_soft_objectness_loss"
    _check_same_shape(name, student_logits, teacher_logits, "objectness logits")
    _check_temperature(name, T)
    if student_logits.numel() == 0:
        return student_logits.sum() * 0.0
    student_logits, teacher_logits = at_least_fp32(student_logits, teacher_logits)  # fp32 targets under AMP
    teacher_probs = torch.sigmoid(teacher_logits.detach() / T)
    return F.binary_cross_entropy_with_logits(student_logits / T, teacher_probs, reduction="mean")


def distillation_cls_loss(hard_loss: torch.Tensor, soft_loss: torch.Tensor, mu: float = 0.5) -> torch.Tensor:
    """L_cls = μ·L_hard + (1 − μ)·L_soft (μ = 0.5 in Chen et al. and Munjal et al.)."""
    if not 0.0 <= mu <= 1.0:
        raise ValueError(f"distillation_cls_loss: mu must be in [0, 1], got {mu}")
    return mu * hard_loss + (1.0 - mu) * soft_loss


def bounded_regression_loss(
    student_deltas: torch.Tensor,
    teacher_deltas: torch.Tensor,
    target_deltas: torch.Tensor,
    margin: float = 0.0,
) -> torch.Tensor:
    """Teacher-bounded regression: per sample i, with squared L2 norms over the box deltas,

        L_b,i = ‖R_s,i − y_i‖²  if ‖R_s,i − y_i‖² + m > ‖R_t,i − y_i‖²,  else 0,

    averaged over the N samples given (zeros included). Inputs are (N, 4) (any (N, D) works);
    pass the foreground RoIs/anchors and the deltas of their ground-truth class. The student is only
    pushed towards y while it is not better than the teacher by at least the margin m; the teacher
    term is detached (it only switches the loss on or off).
    """
    name = "bounded_regression_loss"
    _check_same_shape(name, student_deltas, teacher_deltas, "deltas")
    if target_deltas.shape != student_deltas.shape:
        raise ValueError(
            f"{name}: target_deltas must have the student's shape {tuple(student_deltas.shape)}, "
            f"got {tuple(target_deltas.shape)}"
        )
    if student_deltas.dim() != 2:
        raise ValueError(f"{name}: deltas must be (N, 4), got shape {tuple(student_deltas.shape)}")
    if student_deltas.shape[0] == 0:
        return student_deltas.sum() * 0.0
    student_deltas, teacher_deltas, target = at_least_fp32(student_deltas, teacher_deltas, target_deltas.detach())
    student_err = (student_deltas - target).pow(2).sum(dim=1)
    teacher_err = (teacher_deltas.detach() - target).pow(2).sum(dim=1)
    active = student_err + margin > teacher_err
    return torch.where(active, student_err, torch.zeros_like(student_err)).mean()


HINT_REDUCTIONS = ("sum_per_image", "mean_per_position", "mean")


def hint_loss(student_adapted: torch.Tensor, teacher_feat: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """L_hint from (f_a(F_s) − F_t)², the teacher detached; both maps (N, C, H, W) and equal in shape.

    ``reduction`` says what λ_hint multiplies (the paper writes the sum ‖·‖² and gives no normalisation):

    * ``"sum_per_image"``: Σ_{c,h,w} per image, mean over the N images: Eq. 1 as printed (Caffe's EuclideanLoss,
      Σ / 2N, up to its ½). Over a 1024×38×63 res4 map that is ~2.5·10⁶ squared errors per image.
    * ``"mean_per_position"``: Σ_c, mean over N·H·W: the squared L2 distance of the feature vectors per position.
    * ``"mean"``: mean over all N·C·H·W elements (``sum_per_image`` / (C·H·W)).
    """
    if reduction not in HINT_REDUCTIONS:
        raise ValueError(f"hint_loss: reduction (MODEL.KD.HINT.REDUCTION) must be one of {HINT_REDUCTIONS}, "
                         f"got {reduction!r}")
    if student_adapted.shape[:2] != teacher_feat.shape[:2]:
        raise ValueError(
            f"hint_loss: (N, C) of the adapted student feature {tuple(student_adapted.shape)} and the "
            f"teacher feature {tuple(teacher_feat.shape)} differ; the hint adapter must map the student's "
            f"channels to the teacher's"
        )
    if student_adapted.shape != teacher_feat.shape:
        raise ValueError(
            f"hint_loss: spatial sizes differ, student {tuple(student_adapted.shape[2:])} vs teacher "
            f"{tuple(teacher_feat.shape[2:])}; feed the teacher the student's resized image and use "
            f"features of the same stride"
        )
    # fp32 under AMP: sums of ~10^6 squared errors overflow fp16 and lose digits in bf16
    student_adapted, teacher_feat = at_least_fp32(student_adapted, teacher_feat)
    if reduction == "mean":
        return F.mse_loss(student_adapted, teacher_feat.detach(), reduction="mean")
    squared = (student_adapted - teacher_feat.detach()).pow(2)
    if reduction == "sum_per_image":
        return squared.flatten(1).sum(dim=1).mean()
    return squared.sum(dim=1).mean()
