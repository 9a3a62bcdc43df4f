"""Knowledge-distillation keys (MODEL.KD): KD_det (Chen et al. losses) and KD_reid (teacher LUT).

Defaults follow Munjal et al. (BMVC'19) §4, who take μ, the hint weight and the bounded-regression
weight from Chen et al. (NeurIPS'17). The OIM loss weight λ_oim (0.1 in the paper's KD runs) is the
person-search OIM weight, not a KD key.
"""
from pathlib import Path

from detectron2.config import CfgNode as CN

__all__ = ["add_kd_config", "build_teacher_cfg", "resolve_config_path"]


def add_kd_config(cfg: CN) -> None:
    _C = cfg
    _C.MODEL.KD = CN()
    # KD_det teacher: a Detectron2 / reid2 config file and its weights ("" = no detection teacher).
    _C.MODEL.KD.TEACHER_CONFIG = ""
    _C.MODEL.KD.TEACHER_WEIGHTS = ""

    # Hint loss λ_hint·L_hint((f_a(F_s) − F_t)²) on the res4 features through a 1×1 adapter.
    _C.MODEL.KD.HINT = CN({"ENABLED": False})
    _C.MODEL.KD.HINT.WEIGHT = 0.5  # λ_hint (γ in Chen et al.)
    # What λ_hint multiplies: "sum_per_image" (Σ over C·H·W, mean over images: Eq. 1's ‖·‖² as printed, the
    # reading of the paper's λ_hint 0.5), "mean_per_position" (Σ over C, mean over N·H·W) or "mean" (over all
    # N·C·H·W elements: λ_hint / (C·H·W) of the paper's, ~1/2.5e6 at 600×1000).
    _C.MODEL.KD.HINT.REDUCTION = "mean"
    _C.MODEL.KD.HINT.ADAPTER_RELU = False  # ReLU after the adapter's 1×1 conv (HqWei's port uses one)

    # Distil the RPN (soft objectness + bounded regression) and / or the RCN (box head).
    _C.MODEL.KD.RPN = CN({"ENABLED": False})
    _C.MODEL.KD.RCN = CN({"ENABLED": False})
    # L_cls = MU·L_hard + (1 − MU)·L_soft.
    _C.MODEL.KD.MU = 0.5
    # Softmax temperature T of the soft targets, P = softmax(z / T).
    _C.MODEL.KD.TEMPERATURE = 10.0
    # Multiply L_soft by T² (Hinton et al.), so that its gradient, which softmax(z / T) shrinks by 1/T, keeps
    # the hard loss's scale. Chen et al. and Munjal et al. do not (False); without it, at T = 10 the soft
    # term barely moves the student and μ = 0.5 mostly halves the hard classification loss.
    _C.MODEL.KD.SOFT_T2_SCALING = False
    # Weight w_bg of the background class in the RCN soft loss (1 on the other classes). 1.5 is Chen et al.'s;
    # the KD paper's equation (§4.1, −Σ P_t log P_s) has none: its configs set 1.0.
    _C.MODEL.KD.BG_WEIGHT = 1.5
    # Where BG_WEIGHT applies: "class" = inside the soft cross-entropy's class sum (Chen et al.'s formula; its
    # optimum puts the student's background logit T·ln(BG_WEIGHT) above the teacher's, lowering all scores),
    # "sample" = on the soft loss of each background RoI (same emphasis, optimum at the teacher's output).
    _C.MODEL.KD.BG_WEIGHT_MODE = "class"
    # L_reg = L_sL1 + REG_WEIGHT·L_b: ν, the weight of the teacher-bounded regression loss.
    _C.MODEL.KD.REG_WEIGHT = 0.5
    # Margin m of L_b: the student is penalised while ‖R_s − y‖² + m > ‖R_t − y‖².
    _C.MODEL.KD.REG_MARGIN = 0.0

    _C.MODEL.KD.REID = CN()
    # KD_reid: teacher checkpoint (.pth) or exported LUT (.npy/.npz). When set, the student's OIM LUT
    # is loaded from it (rows L2-normalised, row count = number of training ids) and frozen.
    _C.MODEL.KD.REID.LUT_SOURCE = ""
    # State-dict key / .npz array of the LUT ("" = search the known reid2/SeqNet/NAE/COAT/psd2 keys).
    _C.MODEL.KD.REID.LUT_KEY = ""


def resolve_config_path(path: str, key: str) -> str:
    """``path`` if it is a file (relative paths from the current directory); a clear error naming ``key``."""
    if Path(path).is_file():
        return str(path)
    raise FileNotFoundError(f"{key}: config file {path!r} not found (a relative path is read from the current "
                            f"directory, {Path.cwd()})")


def build_teacher_cfg(cfg) -> CN:
    """The KD_det teacher's own config (``MODEL.KD.TEACHER_CONFIG``) on the student's device, weights from
    ``MODEL.KD.TEACHER_WEIGHTS``, built as a detector of the same layout."""
    from .defaults import get_cfg

    teacher_cfg = get_cfg()
    teacher_cfg.merge_from_file(resolve_config_path(cfg.MODEL.KD.TEACHER_CONFIG, "MODEL.KD.TEACHER_CONFIG"))
    teacher_cfg.MODEL.DEVICE = cfg.MODEL.DEVICE
    teacher_cfg.MODEL.WEIGHTS = cfg.MODEL.KD.TEACHER_WEIGHTS
    # A teacher with an identity branch would need the student's training set to size its LUT; its LUT is
    # not used by KD_det, so build it as a detector of the same layout.
    teacher_cfg.MODEL.PERSON_SEARCH.REID_ON = False
    teacher_cfg.MODEL.KD.TEACHER_CONFIG = ""
    teacher_cfg.MODEL.KD.REID.LUT_SOURCE = ""
    if teacher_cfg.MODEL.META_ARCHITECTURE == "KDPersonSearchRCNN":
        teacher_cfg.MODEL.META_ARCHITECTURE = "PersonSearchRCNN"
    teacher_cfg.freeze()
    return teacher_cfg
