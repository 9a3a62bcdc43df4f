"""Issue #17: weights that fit the model or an error, explicit ImageNet initialisation, the device the user names."""
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from reid2.engine.checkpoint import AtomicCheckpointer, WeightsMismatchError
from tests.helpers import REPO, run_tool, save_random_checkpoint

REID_CFG = "configs/synthetic/reid_tiny.yaml"
PS_CFG = "configs/synthetic/oim_tiny.yaml"


class Toy(nn.Module):
    """backbone (Linear + BN) and a head; ``width`` changes the shapes."""

    def __init__(self, width=4):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(3, width), nn.BatchNorm1d(width))
        self.head = nn.Linear(width, 2)


class ToyWithAdapter(Toy):
    training_only_modules = ("hint_adapter",)
    optional_weight_prefixes = ("head.bias",)

    def __init__(self):
        super().__init__()
        self.hint_adapter = nn.Linear(4, 4)


def _save(path, state, **extra):
    torch.save({"model": state, **extra}, path)
    return str(path)


def _load(model, path, role="checkpoint"):
    checkpointer = AtomicCheckpointer(model)
    checkpointer.weights_role = role
    return checkpointer.load(path)


# ---- the checkpoint role: --eval-only, the tools, --resume ----------------------------------------------
def test_complete_checkpoint_loads_every_value(tmp_path):
    torch.manual_seed(0)
    source = Toy()
    path = _save(tmp_path / "ok.pth", source.state_dict())
    target = Toy()
    _load(target, path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_missing_entry_is_an_error_naming_file_and_key(tmp_path):
    state = Toy().state_dict()
    del state["head.weight"]
    path = _save(tmp_path / "partial.pth", state)
    with pytest.raises(WeightsMismatchError, match=r"partial\.pth .*1 model entries missing.*head\.weight"):
        _load(Toy(), path)


def test_shape_mismatch_is_an_error_naming_shapes(tmp_path):
    path = _save(tmp_path / "wide.pth", Toy(width=5).state_dict())
    shapes = r"backbone\.0\.weight \(file \(5, 3\) vs model \(4, 3\)\)"
    with pytest.raises(WeightsMismatchError, match=r"wide\.pth .*" + shapes):
        _load(Toy(), path)


def test_file_of_another_model_is_an_error(tmp_path):
    path = _save(tmp_path / "other.pth", nn.Sequential(nn.Conv2d(3, 4, 3)).state_dict())
    with pytest.raises(WeightsMismatchError, match=r"other\.pth does not fit Toy: no entry of the file matches"):
        _load(Toy(), path)


def test_declared_optional_keys_may_be_missing_or_differ(tmp_path):
    """training_only_modules (the KD hint adapter) and optional_weight_prefixes (e.g. a KD_reid LUT)."""
    state = ToyWithAdapter().state_dict()
    for key in [k for k in state if k.startswith("hint_adapter.")]:
        del state[key]
    state["head.bias"] = torch.zeros(7)  # another size: declared optional, kept from the model
    _load(ToyWithAdapter(), _save(tmp_path / "inference.pth", state))
    del state["head.weight"]  # not optional
    with pytest.raises(WeightsMismatchError, match="head.weight"):
        _load(ToyWithAdapter(), _save(tmp_path / "bad.pth", state))


def test_bn_step_counter_is_optional(tmp_path):
    state = Toy().state_dict()
    del state["backbone.1.num_batches_tracked"]  # files from before torch 0.4.1 have none
    _load(Toy(), _save(tmp_path / "old.pth", state))


def test_kd_student_declares_its_teacher_lut_optional():
    from reid2.modeling.meta_arch.kd_person_search import KDPersonSearchRCNN

    student = KDPersonSearchRCNN.__new__(KDPersonSearchRCNN)
    nn.Module.__init__(student)
    student.lut_source = "teacher.pth"
    assert student.optional_weight_prefixes == ("roi_heads.oim_loss.lut",)
    student.lut_source = ""
    assert student.optional_weight_prefixes == ()
    assert "hint_adapter" in KDPersonSearchRCNN.training_only_modules


def test_no_weights_is_an_error_and_random_is_explicit(tmp_path):
    with pytest.raises(WeightsMismatchError, match="MODEL.WEIGHTS random"):
        _load(Toy(), "")
    torch.manual_seed(0)
    model = Toy()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert _load(model, "random") == {}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS: weight file .*nope.pth"):
        _load(model, str(tmp_path / "nope.pth"))


def test_torchvision_file_as_model_weights_points_to_the_right_key(tmp_path):
    import torchvision

    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    for role in ("checkpoint", "init"):
        with pytest.raises(WeightsMismatchError) as e:
            _load(Toy(), str(path), role)
        msg = str(e.value)
        assert "torchvision resnet18 ImageNet state dict" in msg and "MODEL.REID_BACKBONE.PRETRAINED" in msg
        assert "tools/convert_weights.py --arch resnet18 --target person_search" in msg


# ---- the init role: MODEL.WEIGHTS at the start of training ---------------------------------------------
def test_init_role_full_checkpoint_must_still_be_complete(tmp_path):
    state = Toy().state_dict()
    del state["head.bias"]
    with pytest.raises(WeightsMismatchError, match="head.bias"):
        _load(Toy(), _save(tmp_path / "ckpt.pth", state), "init")


def test_init_role_provenance_prefixes_must_be_complete(tmp_path):
    """A tools/convert_weights.py file fills what its provenance claims; the rest keeps its initialisation."""
    backbone = {k: v for k, v in Toy().state_dict().items() if k.startswith("backbone.")}
    prov = {"complete_prefixes": ["backbone."]}
    path = _save(tmp_path / "c4.pth", backbone, provenance=prov)
    model = Toy()
    head = model.head.weight.detach().clone()
    _load(model, path, "init")
    assert torch.equal(model.backbone[0].weight, backbone["backbone.0.weight"])
    assert torch.equal(model.head.weight, head)
    with pytest.raises(WeightsMismatchError, match="head.weight"):  # the same file is no checkpoint
        _load(Toy(), path, "checkpoint")
    del backbone["backbone.1.running_var"]
    with pytest.raises(WeightsMismatchError, match=r"initialisation file .*backbone\.1\.running_var"):
        _load(Toy(), _save(tmp_path / "c4_bad.pth", backbone, provenance=prov), "init")


def _model_zoo_pkl(path, state):
    """Detectron2's model-zoo format with name heuristics (what its convert-torchvision-to-d2.py writes)."""
    with open(path, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in state.items()}, "__author__": "torchvision",
                     "matching_heuristics": True}, f)
    return str(path)


def test_init_role_imagenet_pkl_must_fill_the_backbone(tmp_path):
    torch.manual_seed(1)
    imagenet = {k[len("backbone."):]: v for k, v in Toy().state_dict().items() if k.startswith("backbone.")}
    model = Toy()
    _load(model, _model_zoo_pkl(tmp_path / "R-toy.pkl", imagenet), "init")  # names matched by suffix
    assert torch.equal(model.backbone[0].weight, imagenet["0.weight"])
    del imagenet["0.bias"]
    with pytest.raises(WeightsMismatchError, match=r"R-toy-bad\.pkl .*backbone\.0\.bias"):
        _load(Toy(), _model_zoo_pkl(tmp_path / "R-toy-bad.pkl", imagenet), "init")


# ---- through the entry points ---------------------------------------------------------------------------
def test_eval_only_needs_fitting_weights(datasets_root, tmp_path):
    env = {"REID2_DATASETS": str(datasets_root)}
    base = ["tools/train_net.py", "--config-file", REID_CFG, "--eval-only", "MODEL.DEVICE", "cpu"]
    res = run_tool([*base, "OUTPUT_DIR", str(tmp_path / "a")], env_extra=env)
    assert res.returncode != 0 and "MODEL.WEIGHTS random" in res.stderr, res.stderr[-2000:]
    assert "Evaluation results" not in res.stdout + res.stderr

    ps_ckpt = save_random_checkpoint(PS_CFG, tmp_path)  # a person-search checkpoint for a re-ID config
    res = run_tool([*base, "MODEL.WEIGHTS", ps_ckpt, "OUTPUT_DIR", str(tmp_path / "b")], env_extra=env)
    assert res.returncode != 0 and f"{ps_ckpt} does not fit ReIDBaseline" in res.stderr, res.stderr[-2000:]
    assert "Evaluation results" not in res.stdout + res.stderr

    res = run_tool([*base, "MODEL.WEIGHTS", "random", "OUTPUT_DIR", str(tmp_path / "c")], env_extra=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "MODEL.WEIGHTS random: the model keeps its random initialisation" in res.stdout + res.stderr


def test_tools_refuse_a_checkpoint_of_another_model(datasets_root, tmp_path):
    from reid2.engine.predictor import load_model

    ps_ckpt = save_random_checkpoint(PS_CFG, tmp_path)
    with pytest.raises(WeightsMismatchError, match="does not fit ReIDBaseline"):
        load_model(REID_CFG, ps_ckpt, ["MODEL.DEVICE", "cpu"])
    with pytest.raises(WeightsMismatchError, match="--weights random"):
        load_model(REID_CFG, None, ["MODEL.DEVICE", "cpu"])
    res = run_tool(["tools/export.py", "--config-file", REID_CFG, "--weights", ps_ckpt,
                    "--output-dir", str(tmp_path / "exp")], env_extra={"REID2_DATASETS": str(datasets_root)})
    assert res.returncode == 2 and "does not fit ReIDBaseline" in res.stderr and "OK" not in res.stdout


# ---- MODEL.REQUIRE_PRETRAINED ------------------------------------------------------------------------------
def _config_files():
    paper = [*Path(REPO, "configs").glob("*.yaml"), *Path(REPO, "configs").glob("*/*.yaml"),
             *Path(REPO, "projects").glob("*/configs/*.yaml")]
    return sorted(str(p.relative_to(REPO)) for p in paper)


@pytest.mark.parametrize("path", _config_files())
def test_paper_configs_require_imagenet_and_tiny_ones_do_not(path):
    from reid2.config import load_config

    cfg = load_config(str(REPO / path))
    tiny = "synthetic" in path and "mnv2" not in path  # the MobileNetV2 configs start from ImageNet weights
    assert cfg.MODEL.REQUIRE_PRETRAINED is (not tiny), path


def test_paper_reid_config_without_imagenet_stops_before_training(datasets_root, tmp_path):
    """configs/market1501/bc_r50.yaml with PRETRAINED "" used to train from random weights without a word."""
    from reid2.config import load_config
    from reid2.engine import ReIDTrainer

    cfg = load_config(str(REPO / "configs/market1501/bc_r50.yaml"), [
        "MODEL.DEVICE", "cpu", "DATASETS.TRAIN", "('synthetic_market_train',)", "DATALOADER.NUM_WORKERS", "0",
        "OUTPUT_DIR", str(tmp_path)])
    trainer = ReIDTrainer(cfg)
    with pytest.raises(ValueError) as e:
        trainer.resume_or_load(resume=False)
    msg = str(e.value)
    for part in ("MODEL.REID_BACKBONE.PRETRAINED is empty", "tools/convert_weights.py --target reid",
                 "resnet50-0676ba61.pth", "MODEL.REQUIRE_PRETRAINED False"):
        assert part in msg, msg
    assert not list(tmp_path.glob("model_*.pth"))  # nothing trained

    cfg.MODEL.REQUIRE_PRETRAINED = False  # the explicit key: random init on purpose
    ReIDTrainer(cfg).resume_or_load(resume=False)


def test_person_search_without_imagenet_names_model_weights(datasets_root, tmp_path):
    from detectron2.modeling import build_model

    from reid2.config import load_config
    from reid2.engine import check_pretrained

    cfg = load_config(str(REPO / PS_CFG), ["MODEL.DEVICE", "cpu", "MODEL.REQUIRE_PRETRAINED", "True",
                                            "OUTPUT_DIR", str(tmp_path)])
    model = build_model(cfg)
    with pytest.raises(ValueError, match=r"MODEL\.WEIGHTS is ''.*R-50\.pkl.*--target person_search.*"
                                         r"MODEL\.REQUIRE_PRETRAINED False"):
        check_pretrained(cfg, model)
    cfg.MODEL.WEIGHTS = "random"  # "random" is no ImageNet initialisation either
    with pytest.raises(ValueError, match="MODEL.WEIGHTS is 'random'"):
        check_pretrained(cfg, model)
    cfg.MODEL.WEIGHTS = "r50_c4.pth"  # a file: the checkpointer checks that it fills the backbone
    check_pretrained(cfg, model)


# ---- MODEL.DEVICE --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cuda", [False, True])
def test_device_auto_is_the_default_and_follows_cuda(monkeypatch, cuda):
    from reid2.config import get_cfg
    from reid2.engine import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    cfg = get_cfg()
    assert cfg.MODEL.DEVICE == "auto"
    assert resolve_device(cfg).MODEL.DEVICE == ("cuda" if cuda else "cpu")


def test_explicit_cpu_is_honoured_on_a_cuda_machine(monkeypatch):
    from reid2.engine.predictor import build_cfg

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert build_cfg(str(REPO / REID_CFG), ["MODEL.DEVICE", "cpu"]).MODEL.DEVICE == "cpu"
    assert build_cfg(str(REPO / REID_CFG), [], device="cpu").MODEL.DEVICE == "cpu"


def test_explicit_cuda_without_cuda_is_an_error(monkeypatch):
    from reid2.config import get_cfg
    from reid2.engine import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:1"):
        cfg = get_cfg()
        cfg.MODEL.DEVICE = device
        with pytest.raises(ValueError, match=f"MODEL.DEVICE '{device}', but CUDA is not available"):
            resolve_device(cfg)


def test_older_reid2_device_key_sets_the_device_or_conflicts(monkeypatch):
    from reid2.config import get_cfg
    from reid2.engine import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = get_cfg()
    cfg.REID2.DEVICE = "cpu"
    assert resolve_device(cfg).MODEL.DEVICE == "cpu"
    cfg = get_cfg()
    cfg.REID2.DEVICE, cfg.MODEL.DEVICE = "cpu", "cuda"
    with pytest.raises(ValueError, match="MODEL.DEVICE 'cuda' and REID2.DEVICE 'cpu' disagree"):
        resolve_device(cfg)
