"""DSA-reID's two-stream network (paper §3.2, Table 1) as the ``DSAReID`` meta-architecture.

* DSAG-Stream: 24 MB-N branches (separate weights, run as grouped convolutions, one group per branch)
  → merge left/right (add, 24 → 13) after conv3_x → merge front/back (add, 13 → 8) after conv4_x →
  D (8 maps) → conv5_g + avg pool = d_G, conv5_l (per part) + avg pool = d_L = [d_L,1..8].
* MF-Stream: a trunk F (ResNet-50 conv1..conv4 in the paper; any registered backbone) → global branch
  (ResNet conv5_x-like, stride 1) = f_G and 8 local branches with 1/8 of the channels = f_L,i.
* Fusion z_G = f_G + d_G, z_L = f_L + d_L (or concat + fc). Losses: ID on f_G and every f_L,i (weight 0.5);
  batch-hard triplet (1.5) and ID (1.0) on z_G and on z_L. Inference: MF-Stream only, [f_G, f_L].
"""
from typing import Dict

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, build_backbone
from detectron2.utils.events import get_event_storage
from torch import nn
from torchvision.models.resnet import Bottleneck

from reid2.modeling.backbones import ReIDResNet, check_rgb_input, load_pretrained_backbone
from reid2.modeling.losses import cross_entropy_loss, triplet_loss

from .parts import LEVEL1_GROUPS, LEVEL1_INDEX, LEVEL2_GROUPS, LEVEL2_INDEX, NUM_PARTS

__all__ = ["DSAReID", "DSAGStream", "MFStream", "DSAInferenceModel", "GroupedBasicBlock", "merge_branches",
           "build_dsa_resnet_trunk"]

FUSIONS = ("add", "concat_fc")
MODES = ("dsa", "csa", "none")
PART_REDUCTIONS = ("sum", "mean")
# Table 3: both branches (the paper's DSA-reID), or only the global / only the local branch in both streams
# ("DSA-Global(Single)" / "DSA-Local(Single)").
BRANCHES = ("both", "global", "local")
# Test-time features: "mf" = [f_G, f_L] (the MF-Stream alone, "DSA-reID (Only MF-Stream)", no DensePose needed);
# "fused" = [z_G, z_L] ("DSA (Two streams fused)"), "fused_global" = z_G / "fused_local" = z_L
# ("DSA-Global(Joint)" / "DSA-Local(Joint)"): these need the test images' DSAP images.
TEST_FEATURES = ("mf", "fused", "fused_global", "fused_local")


# ---- MF-Stream trunk: ResNet conv1 .. conv4_x ------------------------------------------------------------
class ResNetTrunk(ReIDResNet):
    """conv1 … conv4_x (layer3) of a torchvision ResNet: F at stride 16 (``{"res4": ...}``).

    conv5_x is not part of the trunk: it becomes the MF head's global branch (randomly initialised, §4.2).
    """

    def __init__(self, depth=50, norm="BN"):
        super().__init__(depth=depth, last_stride=1, norm=norm)
        channels = self.layer3[-1].conv3.out_channels if hasattr(self.layer3[-1], "conv3") \
            else self.layer3[-1].conv2.out_channels
        del self.layer4
        self._out_feature = "res4"
        self._out_shape = ShapeSpec(channels=channels, stride=16)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return {"res4": self.layer3(self.layer2(self.layer1(x)))}


@BACKBONE_REGISTRY.register()
def build_dsa_resnet_trunk(cfg, input_shape: ShapeSpec) -> ResNetTrunk:
    """ResNet conv1..conv4 from ``MODEL.REID_BACKBONE`` (DEPTH, NORM, PRETRAINED = local ImageNet file)."""
    check_rgb_input(input_shape, "build_dsa_resnet_trunk")
    c = cfg.MODEL.REID_BACKBONE
    trunk = ResNetTrunk(depth=c.DEPTH, norm=c.NORM)
    if c.PRETRAINED:
        load_pretrained_backbone(trunk, c.PRETRAINED)  # the file's layer4 (conv5) is reported unused
    return trunk


# ---- DSAG-Stream -----------------------------------------------------------------------------------------
def conv_bn(in_c, out_c, k, stride=1, groups=1, relu=True):
    layers = [nn.Conv2d(in_c, out_c, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(out_c)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class GroupedBasicBlock(nn.Module):
    """ResNet-18 basic block applied independently to ``groups`` branches stacked along channels."""

    def __init__(self, in_c, out_c, stride=1, groups=1):
        super().__init__()
        self.conv1 = conv_bn(in_c, out_c, 3, stride, groups)
        self.conv2 = conv_bn(out_c, out_c, 3, 1, groups, relu=False)
        self.shortcut = None
        if stride != 1 or in_c != out_c:
            self.shortcut = conv_bn(in_c, out_c, 1, stride, groups, relu=False)

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv2(self.conv1(x)) + identity)


def merge_branches(x: torch.Tensor, index, num_out: int) -> torch.Tensor:
    """Element-wise add of branches: x (B, N, C, H, W) → (B, num_out, C, H, W), branch n added into index[n]."""
    idx = torch.as_tensor(index, device=x.device)
    out = x.new_zeros((x.shape[0], num_out) + tuple(x.shape[2:]))
    return out.index_add_(1, idx, x)


class DSAGStream(nn.Module):
    """DSAP images (B, 24, 3, S, S) → (d_G (B, G), d_L (B, 8·P)); Table 1 with configurable widths.

    ``branches`` "global" / "local" builds only conv5_g / conv5_l (the other output is None)."""

    def __init__(self, channels=(32, 64, 64, 128), global_channels=2048, part_channels=256, branches="both"):
        super().__init__()
        c1, c2, c3, c4 = channels
        n0, n1, n2 = NUM_PARTS, len(LEVEL1_GROUPS), len(LEVEL2_GROUPS)
        self.n1, self.n2, self.c3, self.c4 = n1, n2, c3, c4
        self.conv1 = conv_bn(3 * n0, c1 * n0, 5, groups=n0)
        self.conv2 = conv_bn(c1 * n0, c2 * n0, 3, groups=n0)
        self.conv3 = nn.Sequential(GroupedBasicBlock(c2 * n0, c3 * n0, 2, n0),  # conv3.1 downsamples
                                   GroupedBasicBlock(c3 * n0, c3 * n0, 1, n0))
        self.conv4 = nn.Sequential(GroupedBasicBlock(c3 * n1, c4 * n1, 2, n1),  # conv4.1 downsamples
                                   GroupedBasicBlock(c4 * n1, c4 * n1, 1, n1))
        self.conv5_g = self.conv5_l = None
        if branches != "local":
            self.conv5_g = nn.Sequential(GroupedBasicBlock(c4 * n2, global_channels, 1),
                                         GroupedBasicBlock(global_channels, global_channels, 1))
        if branches != "global":
            self.conv5_l = nn.Sequential(GroupedBasicBlock(c4 * n2, part_channels * n2, 1, n2),
                                         GroupedBasicBlock(part_channels * n2, part_channels * n2, 1, n2))
        self.register_buffer("level1_index", torch.tensor(LEVEL1_INDEX), persistent=False)
        self.register_buffer("level2_index", torch.tensor(LEVEL2_INDEX), persistent=False)

    def mb_ns(self, dsap: torch.Tensor) -> torch.Tensor:
        """The multi-branch sub-networks: D = [D_1 .. D_8] concatenated along channels (B, 8·c4, S/4, S/4)."""
        if dsap.dim() != 5 or dsap.shape[1:3] != (NUM_PARTS, 3):
            raise ValueError(f"DSAG-Stream input must be (B, 24, 3, S, S), got {tuple(dsap.shape)}")
        b, _, _, s, _ = dsap.shape
        x = self.conv3(self.conv2(self.conv1(dsap.reshape(b, NUM_PARTS * 3, s, s))))
        h = x.shape[-1]
        x = merge_branches(x.reshape(b, NUM_PARTS, self.c3, h, h), self.level1_index, self.n1)  # left/right
        x = self.conv4(x.reshape(b, self.n1 * self.c3, h, h))
        h = x.shape[-1]
        x = merge_branches(x.reshape(b, self.n1, self.c4, h, h), self.level2_index, self.n2)  # front/back
        return x.reshape(b, self.n2 * self.c4, h, h)

    def forward(self, dsap):
        d = self.mb_ns(dsap)
        d_g = None if self.conv5_g is None else self.conv5_g(d).mean((2, 3))
        d_l = None if self.conv5_l is None else self.conv5_l(d).mean((2, 3))  # channel block i = d_L,i
        return d_g, d_l


# ---- MF-Stream -------------------------------------------------------------------------------------------
def bottleneck_stage(in_c, out_c, num_blocks):
    """ResNet conv5_x-like stage (stride 1, as with the last stride removed): Bottlenecks of out_c/4 width."""
    planes = out_c // Bottleneck.expansion
    if planes * Bottleneck.expansion != out_c or planes < 1:
        raise ValueError(f"MF head channels must be a positive multiple of 4, got {out_c}")
    down = nn.Sequential(nn.Conv2d(in_c, out_c, 1, bias=False), nn.BatchNorm2d(out_c))
    blocks = [Bottleneck(in_c, planes, downsample=down)]
    blocks += [Bottleneck(out_c, planes) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


class MFStream(nn.Module):
    """Full image → (f_G (B, G), f_L (B, num_parts · G/num_parts)); the only stream used at test time.

    ``branches`` "global" / "local" builds only that branch (the other output is None)."""

    def __init__(self, trunk, global_channels=2048, num_blocks=3, num_parts=8, branches="both"):
        super().__init__()
        self.trunk = trunk
        shapes = trunk.output_shape()
        self._in_feature = list(shapes)[-1]
        in_c = shapes[self._in_feature].channels
        if global_channels % num_parts:
            raise ValueError(f"MODEL.DSA.MF.GLOBAL_CHANNELS ({global_channels}) must divide by NUM_PARTS ({num_parts})")
        self.global_branch = self.local_branches = None
        if branches != "local":
            self.global_branch = bottleneck_stage(in_c, global_channels, num_blocks)
        if branches != "global":
            self.local_branches = nn.ModuleList(
                bottleneck_stage(in_c, global_channels // num_parts, num_blocks) for _ in range(num_parts))
        self.global_dim, self.part_dim, self.num_parts = global_channels, global_channels // num_parts, num_parts

    def forward(self, images):
        f = self.trunk(images)[self._in_feature]
        f_g = None if self.global_branch is None else self.global_branch(f).mean((2, 3))
        f_l = None if self.local_branches is None else torch.cat([b(f).mean((2, 3)) for b in self.local_branches], 1)
        return f_g, f_l


def cat_present(*features):
    """Concatenate the features a model has (a branch left out is None)."""
    return torch.cat([f for f in features if f is not None], 1)


class DSAInferenceModel(nn.Module):
    """The exported test-time model: the MF-Stream alone, returning [f_G, f_L] (no DSAG weights; f_G or f_L
    alone for a single-branch model)."""

    def __init__(self, mf: MFStream):
        super().__init__()
        self.mf = mf

    def forward(self, batched_inputs):
        images = batched_inputs["images"] if isinstance(batched_inputs, dict) else batched_inputs
        images = images.to(next(self.parameters()).device)
        return cat_present(*self.mf(images))


def classifier(in_dim, hidden, num_classes):
    """The paper's ID classifier: two FC layers (softmax in the loss)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, num_classes))


# ---- the meta-architecture -------------------------------------------------------------------------------
@META_ARCH_REGISTRY.register()
class DSAReID(nn.Module):
    """Two-stream DSA-reID (``MODEL.DSA.MODE`` dsa | csa) or the MF-Stream baseline (none).

    Training input: the batch of ``dsa.data`` loaders (``images``, ``targets`` and, unless MODE is none,
    ``dsap`` (B, 24, 3, S, S)). Training returns the weighted losses. Inference returns ``TEST_FEATURE``:
    [f_G, f_L] (B, 2·G) from ``images`` alone (mf, default), or [z_G, z_L], z_G, z_L, which also need ``dsap``.
    ``BRANCHES`` global / local keep one branch in both streams (its losses only).
    """

    class_count_keys = {"MODEL.REID.NUM_CLASSES": ("cls_z_g.3.weight",)}  # read by reid2's predictor

    @configurable
    def __init__(self, *, trunk, num_classes, mode="dsa", fusion="add", dsag_channels=(32, 64, 64, 128),
                 dsag_global=2048, dsag_part=256, mf_global=2048, mf_blocks=3, num_parts=8, cls_hidden=512,
                 mf_id_weight=0.5, fused_triplet_weight=1.5, fused_id_weight=1.0, mf_part_reduction="sum",
                 branches="both", test_feature="mf", epsilon=0.0, margin=0.3):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"MODEL.DSA.MODE must be one of {MODES}, got {mode!r}")
        if fusion not in FUSIONS:
            raise ValueError(f"MODEL.DSA.FUSION must be one of {FUSIONS}, got {fusion!r}")
        if num_parts != len(LEVEL2_GROUPS) and mode != "none":
            raise ValueError(f"MODEL.DSA.MF.NUM_PARTS must be {len(LEVEL2_GROUPS)} to fuse with the DSAG-Stream")
        if mf_part_reduction not in PART_REDUCTIONS:
            raise ValueError(f"MODEL.DSA.LOSS.MF_PART_REDUCTION must be one of {PART_REDUCTIONS}, "
                             f"got {mf_part_reduction!r}")
        if branches not in BRANCHES:
            raise ValueError(f"MODEL.DSA.BRANCHES must be one of {BRANCHES}, got {branches!r}")
        if test_feature not in TEST_FEATURES:
            raise ValueError(f"MODEL.DSA.TEST_FEATURE must be one of {TEST_FEATURES}, got {test_feature!r}")
        if test_feature != "mf" and mode == "none":
            raise ValueError(f"MODEL.DSA.TEST_FEATURE {test_feature!r} fuses with the DSAG-Stream, which "
                             "MODEL.DSA.MODE 'none' does not have: use TEST_FEATURE 'mf'")
        needs = {"fused_global": "global", "fused_local": "local"}.get(test_feature)
        if needs and branches not in ("both", needs):
            raise ValueError(f"MODEL.DSA.TEST_FEATURE {test_feature!r} needs the {needs} branch; "
                             f"MODEL.DSA.BRANCHES is {branches!r}")
        self.mode, self.fusion, self.mf_part_reduction = mode, fusion, mf_part_reduction
        self.branches, self.test_feature = branches, test_feature
        self.mf = MFStream(trunk, mf_global, mf_blocks, num_parts, branches)
        g, l_dim = mf_global, mf_global  # f_G and f_L (= num_parts × G/num_parts)
        self.dsag = None
        if mode != "none":
            if dsag_global != g or dsag_part * num_parts != l_dim:
                raise ValueError(
                    f"fusion needs equal sizes: d_G {dsag_global} vs f_G {g} (MODEL.DSA.DSAG.GLOBAL_CHANNELS vs "
                    f"MODEL.DSA.MF.GLOBAL_CHANNELS), d_L,i {dsag_part} vs f_L,i {g // num_parts} "
                    "(MODEL.DSA.DSAG.PART_CHANNELS)")
            self.dsag = DSAGStream(dsag_channels, dsag_global, dsag_part, branches)
            if fusion == "concat_fc":
                self.fuse_g = nn.Linear(2 * g, g) if branches != "local" else None
                self.fuse_l = nn.Linear(2 * l_dim, l_dim) if branches != "global" else None
        self.cls_f_g = self.cls_z_g = self.cls_f_l = self.cls_z_l = None
        if branches != "local":
            self.cls_f_g = classifier(g, cls_hidden, num_classes)
            self.cls_z_g = classifier(g, cls_hidden, num_classes)
        if branches != "global":
            self.cls_f_l = nn.ModuleList(
                classifier(g // num_parts, cls_hidden, num_classes) for _ in range(num_parts))
            self.cls_z_l = classifier(l_dim, cls_hidden, num_classes)
        self.w_mf, self.w_tri, self.w_id = mf_id_weight, fused_triplet_weight, fused_id_weight
        self.epsilon, self.margin = epsilon, margin

    @classmethod
    def from_config(cls, cfg):
        from reid2.data import num_train_classes

        d = cfg.MODEL.DSA
        return dict(
            trunk=build_backbone(cfg), num_classes=num_train_classes(cfg), mode=d.MODE, fusion=d.FUSION,
            dsag_channels=tuple(d.DSAG.CHANNELS), dsag_global=d.DSAG.GLOBAL_CHANNELS, dsag_part=d.DSAG.PART_CHANNELS,
            mf_global=d.MF.GLOBAL_CHANNELS, mf_blocks=d.MF.NUM_BLOCKS, num_parts=d.MF.NUM_PARTS,
            cls_hidden=d.CLS_HIDDEN, mf_id_weight=d.LOSS.MF_ID_WEIGHT,
            fused_triplet_weight=d.LOSS.FUSED_TRIPLET_WEIGHT, fused_id_weight=d.LOSS.FUSED_ID_WEIGHT,
            mf_part_reduction=d.LOSS.MF_PART_REDUCTION, branches=d.BRANCHES, test_feature=d.TEST_FEATURE,
            epsilon=cfg.MODEL.LOSSES.CE.EPSILON, margin=cfg.MODEL.LOSSES.TRIPLET.MARGIN)

    @property
    def device(self):
        return next(self.parameters()).device

    def fuse(self, f_g, f_l, d_g, d_l):
        """(z_G, z_L); a branch left out (None) stays None."""
        if self.fusion == "add":
            add = lambda f, d: None if f is None else f + d
            return add(f_g, d_g), add(f_l, d_l)
        cat_fc = lambda fc, f, d: None if f is None else fc(torch.cat([f, d], 1))
        return cat_fc(self.fuse_g, f_g, d_g), cat_fc(self.fuse_l, f_l, d_l)

    def _dsag(self, batched_inputs, why):
        if "dsap" not in batched_inputs:
            raise KeyError(f"{why}: the batch has no 'dsap' (use REID2.TRAINER 'DSATrainer', whose loaders add "
                           "it, or MODEL.DSA.MODE 'none' / TEST_FEATURE 'mf' for the MF-Stream alone)")
        return self.dsag(batched_inputs["dsap"].to(self.device))

    def inference(self, batched_inputs):
        """The ``TEST_FEATURE`` features of a batch (B, D)."""
        f_g, f_l = self.mf(batched_inputs["images"].to(self.device))
        if self.test_feature == "mf":
            return cat_present(f_g, f_l)
        z_g, z_l = self.fuse(f_g, f_l, *self._dsag(
            batched_inputs, f"MODEL.DSA.TEST_FEATURE={self.test_feature!r} fuses with the test images' DSAP images"))
        if self.test_feature == "fused_global":
            return z_g
        if self.test_feature == "fused_local":
            return z_l
        return cat_present(z_g, z_l)

    def forward(self, batched_inputs):
        if not self.training:
            return self.inference(batched_inputs)
        targets = batched_inputs["targets"].to(self.device)
        f_g, f_l = self.mf(batched_inputs["images"].to(self.device))
        if self.dsag is not None:
            d_g, d_l = self._dsag(batched_inputs, f"MODEL.DSA.MODE={self.mode!r} trains on DSAP images")
            z_g, z_l = self.fuse(f_g, f_l, d_g, d_l)
        else:
            z_g, z_l = f_g, f_l
        ce = lambda cls, x: cross_entropy_loss(cls(x), targets, self.epsilon)
        losses = {}
        if f_g is not None:
            logits_zg = self.cls_z_g(z_g)
            losses["loss_mf_id_global"] = self.w_mf * ce(self.cls_f_g, f_g)
            losses["loss_fused_id_global"] = self.w_id * cross_entropy_loss(logits_zg, targets, self.epsilon)
            losses["loss_fused_triplet_global"] = self.w_tri * triplet_loss(z_g, targets, self.margin)
        if f_l is not None:
            parts = f_l.chunk(len(self.cls_f_l), 1)
            part_ids = torch.stack([ce(c, p) for c, p in zip(self.cls_f_l, parts)])
            reduced = part_ids.sum() if self.mf_part_reduction == "sum" else part_ids.mean()
            losses["loss_mf_id_parts"] = self.w_mf * reduced
            losses["loss_fused_id_local"] = self.w_id * ce(self.cls_z_l, z_l)
            losses["loss_fused_triplet_local"] = self.w_tri * triplet_loss(z_l, targets, self.margin)
        try:
            logits = logits_zg if f_g is not None else self.cls_z_l(z_l)
            acc = (logits.detach().argmax(1) == targets).float().mean()
            get_event_storage().put_scalar("cls_accuracy", acc.item())
        except AssertionError:  # outside a trainer
            pass
        return losses

    def export_inference_model(self) -> DSAInferenceModel:
        """The MF-Stream alone (shared modules, eval mode): what is needed at test time. Only for
        ``TEST_FEATURE`` mf: the fused features need the DSAG-Stream and the test images' DensePose."""
        if self.test_feature != "mf":
            raise ValueError(f"MODEL.DSA.TEST_FEATURE={self.test_feature!r} needs the DSAG-Stream and DSAP images "
                             "at test time; only TEST_FEATURE 'mf' (the MF-Stream alone) can be exported")
        return DSAInferenceModel(self.mf).eval()

    def inference_state_dict(self) -> Dict[str, torch.Tensor]:
        """State dict of :meth:`export_inference_model` (keys ``mf.*`` only)."""
        return self.export_inference_model().state_dict()
