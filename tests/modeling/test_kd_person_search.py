"""KDPersonSearchRCNN: KD_reid (frozen teacher LUT) and KD_det (teacher detector) wired into OIM training."""
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from reid2.config import get_cfg
from reid2.modeling import KDPersonSearchRCNN, PersonSearchRCNN
from tests.helpers import REPO, image_input

NUM_PIDS = 5
KD_DET = ["MODEL.KD.HINT.ENABLED", True, "MODEL.KD.RPN.ENABLED", True, "MODEL.KD.RCN.ENABLED", True]


def kd_cfg(*opts, config="configs/synthetic/kd_oim_tiny.yaml"):
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / config))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.OIM.NUM_PIDS", NUM_PIDS, "MODEL.OIM.QUEUE_SIZE", 20,
                         "MODEL.KD.REID.LUT_SOURCE", "", "DATASETS.TRAIN", "()", "DATASETS.TEST", "()", *opts])
    return cfg


def batch():
    return [image_input(seed=1, pids=(3, -1)), image_input(seed=2, boxes=((5, 5, 30, 80), (50, 10, 80, 90)),
                                                            pids=(0, -1))]


def save_model(model, path):
    DetectionCheckpointer(model, save_dir=str(path.parent)).save(path.stem)
    return str(path)


@pytest.fixture(scope="module")
def teacher_weights(tmp_path_factory):
    """A (random) detector teacher of the tiny layout, saved as a checkpoint."""
    torch.manual_seed(3)
    teacher = build_model(kd_cfg(config="configs/synthetic/det_tiny.yaml"))
    return save_model(teacher, tmp_path_factory.mktemp("teacher") / "teacher.pth")


def test_kd_reid_lut_is_the_normalised_teacher_table_and_stays_frozen(tmp_path):
    table = np.random.default_rng(0).normal(size=(NUM_PIDS, 256)).astype(np.float32) * 3.0
    np.save(tmp_path / "lut.npy", table)
    torch.manual_seed(0)
    model = build_model(kd_cfg("MODEL.KD.REID.LUT_SOURCE", str(tmp_path / "lut.npy"))).train()
    oim = model.roi_heads.oim_loss
    assert oim.fixed_lut
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    expected = torch.from_numpy(table / np.linalg.norm(table, axis=1, keepdims=True))
    queue_before = oim.queue.clone()
    with EventStorage():
        for _ in range(3):
            losses = model(batch())
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
    assert torch.allclose(oim.lut, expected, atol=1e-6)  # loaded at the first step, never updated
    assert not torch.equal(oim.queue, queue_before) and int(oim.queue_ptr) > 0  # the queue moves
    assert losses["loss_oim"].item() > 0 and set(losses) == {
        "loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_oim"}  # no teacher network: no KD_det


def test_kd_reid_lut_row_count_mismatch_names_the_source(tmp_path):
    np.save(tmp_path / "lut.npy", np.ones((NUM_PIDS + 1, 256), np.float32))
    model = build_model(kd_cfg("MODEL.KD.REID.LUT_SOURCE", str(tmp_path / "lut.npy"))).train()
    with EventStorage(), pytest.raises(ValueError, match=r"lut\.npy.*6 rows.*5 training ids"):
        model(batch())


def test_kd_det_losses_teacher_outside_the_module_tree(teacher_weights):
    torch.manual_seed(0)
    cfg = kd_cfg("MODEL.KD.TEACHER_CONFIG", "configs/synthetic/det_tiny.yaml",
                 "MODEL.KD.TEACHER_WEIGHTS", teacher_weights, "MODEL.PERSON_SEARCH.TINY_WIDTH", 8, *KD_DET)
    model = build_model(cfg).train()
    assert isinstance(model, KDPersonSearchRCNN) and not model.teacher.training
    # student width 8 -> res4 32 channels; teacher width 16 -> 64: the adapter maps them
    assert tuple(model.hint_adapter.conv.weight.shape) == (64, 32, 1, 1)
    assert not any(k.startswith("teacher") or "_teacher" in k for k in model.state_dict())
    assert all(p.requires_grad is False for p in model.teacher.parameters())
    with EventStorage():
        losses = model(batch())
    assert {"loss_hint", "loss_rpn_bounded", "loss_box_bounded"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    teacher_state = torch.load(teacher_weights, weights_only=False)["model"]
    for key, value in model.teacher.state_dict().items():  # weights loaded at the first step
        assert torch.equal(value, teacher_state[key]), key
    sum(losses.values()).backward()
    assert model.hint_adapter.conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.teacher.parameters())
    model.train()
    assert not model.teacher.training  # model.train() does not reach the teacher


def _gn_cfg(*opts):
    return kd_cfg("MODEL.PERSON_SEARCH.TINY_NORM", "GN", "MODEL.PERSON_SEARCH.TINY_WIDTH", 32,
                  "MODEL.RPN.BATCH_SIZE_PER_IMAGE", 64, *opts)


def test_kd_det_with_the_student_as_its_own_teacher(tmp_path):
    """Teacher = the student (same weights, GN): the bounded losses are 0 at margin 0 and active with a margin;
    with mu = 1 the classification losses are the hard ones, as a plain PersonSearchRCNN computes them; with
    mu = 0.5 they are 0.5·hard + 0.5·soft, the soft part multiplied by T² under MODEL.KD.SOFT_T2_SCALING."""
    torch.manual_seed(0)
    plain = build_model(_gn_cfg("MODEL.META_ARCHITECTURE", "PersonSearchRCNN",
                                "MODEL.PERSON_SEARCH.EMBEDDING_NORM", ""))
    teacher_cfg = tmp_path / "teacher.yaml"
    teacher_cfg.write_text(_gn_cfg("MODEL.PERSON_SEARCH.EMBEDDING_NORM", "").dump())
    weights = save_model(plain, tmp_path / "student_as_teacher.pth")
    losses = {}
    for name, opts in {"margin0": ["MODEL.KD.MU", 1.0], "margin": ["MODEL.KD.MU", 1.0, "MODEL.KD.REG_MARGIN", 1.0],
                       "mu": ["MODEL.KD.MU", 0.5],
                       "t2": ["MODEL.KD.MU", 0.5, "MODEL.KD.SOFT_T2_SCALING", True]}.items():
        kd = build_model(_gn_cfg("MODEL.KD.TEACHER_CONFIG", str(teacher_cfg), "MODEL.KD.TEACHER_WEIGHTS", weights,
                                 "MODEL.PERSON_SEARCH.EMBEDDING_NORM", "", *KD_DET, *opts)).train()
        kd.load_state_dict(plain.state_dict(), strict=False)
        torch.manual_seed(1)
        with EventStorage():
            losses[name] = kd(batch())
    torch.manual_seed(1)
    with EventStorage():
        hard = plain.train()(batch())
    for key in ("loss_rpn_cls", "loss_cls", "loss_rpn_loc", "loss_box_reg"):
        assert losses["margin0"][key].item() == pytest.approx(hard[key].item(), rel=1e-5), key
    assert losses["margin0"]["loss_rpn_bounded"].item() == 0.0
    assert losses["margin0"]["loss_box_bounded"].item() == 0.0
    assert losses["margin"]["loss_rpn_bounded"].item() > 0 and losses["margin"]["loss_box_bounded"].item() > 0
    # mu 0.5: L = 0.5 hard + 0.5 soft, and a soft cross-entropy (with itself) is an entropy, not the hard loss
    assert losses["mu"]["loss_cls"].item() != pytest.approx(hard["loss_cls"].item(), rel=1e-3)
    for key in ("loss_rpn_cls", "loss_cls"):
        soft = (losses["mu"][key].item() - 0.5 * hard[key].item()) / 0.5
        soft_t2 = (losses["t2"][key].item() - 0.5 * hard[key].item()) / 0.5
        assert soft > 0.1, key  # an entropy of a softened (near-uniform) distribution
        assert soft_t2 == pytest.approx(10.0 ** 2 * soft, rel=1e-4), key


def test_inference_weights_have_no_adapter_and_load_into_the_plain_model(datasets_root, teacher_weights, tmp_path):
    from reid2.engine.person_search import INFERENCE_WEIGHTS, PersonSearchTrainer

    cfg = kd_cfg("MODEL.KD.TEACHER_CONFIG", "configs/synthetic/det_tiny.yaml", "MODEL.KD.TEACHER_WEIGHTS",
                 teacher_weights, *KD_DET, "DATASETS.TRAIN", "('synthetic_cuhk_sysu_train',)",
                 "MODEL.OIM.NUM_PIDS", 0, "SOLVER.MAX_ITER", 2, "SOLVER.IMS_PER_BATCH", 2, "TEST.EVAL_PERIOD", 0,
                 "OUTPUT_DIR", str(tmp_path))
    torch.manual_seed(0)
    trainer = PersonSearchTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    exported = torch.load(tmp_path / INFERENCE_WEIGHTS, weights_only=False)["model"]
    assert any(k.startswith("hint_adapter") for k in trainer.model.state_dict())
    assert not any("hint_adapter" in k for k in exported)

    plain_cfg = cfg.clone()
    plain_cfg.MODEL.META_ARCHITECTURE = "PersonSearchRCNN"
    plain = build_model(plain_cfg)
    incompatible = plain.load_state_dict(exported, strict=True)
    assert not incompatible.missing_keys and not incompatible.unexpected_keys
    inputs = [{k: v for k, v in image_input(seed=5).items() if k != "instances"}]
    with torch.no_grad():
        ours = trainer.model.eval()(inputs)[0]["instances"]
        theirs = plain.eval()(inputs)[0]["instances"]
    assert torch.allclose(ours.pred_boxes.tensor, theirs.pred_boxes.tensor)
    assert torch.allclose(ours.reid_feats, theirs.reid_feats)


def test_kd_det_without_teacher_config_is_a_clear_error():
    with pytest.raises(ValueError, match="MODEL.KD.TEACHER_CONFIG"):
        build_model(kd_cfg(*KD_DET))
    with pytest.raises(FileNotFoundError, match="MODEL.KD.TEACHER_CONFIG.*nowhere.yaml"):
        build_model(kd_cfg("MODEL.KD.TEACHER_CONFIG", "nowhere.yaml", *KD_DET))


def test_kd_det_hint_reduction_key_scales_the_hint_by_the_map_size(teacher_weights):
    """Same model and batch: sum_per_image = mean · C·H·W and mean_per_position = mean · C (res4: C = 64)."""
    opts = ["MODEL.KD.TEACHER_CONFIG", "configs/synthetic/det_tiny.yaml", "MODEL.KD.TEACHER_WEIGHTS", teacher_weights,
            *KD_DET]
    hints, shape = {}, None
    for reduction in ("mean", "sum_per_image", "mean_per_position"):
        torch.manual_seed(0)
        model = build_model(kd_cfg(*opts, "MODEL.KD.HINT.REDUCTION", reduction)).train()
        assert model.hint_reduction == reduction
        with EventStorage():
            hints[reduction] = model(batch())["loss_hint"].item()
        shape = model.extract_features(model.preprocess_image(batch()))["res4"].shape
    _, channels, height, width = shape
    assert hints["sum_per_image"] == pytest.approx(hints["mean"] * channels * height * width, rel=1e-4)
    assert hints["mean_per_position"] == pytest.approx(hints["mean"] * channels, rel=1e-4)
    with pytest.raises(ValueError, match="MODEL.KD.HINT.REDUCTION"):
        build_model(kd_cfg(*opts, "MODEL.KD.HINT.REDUCTION", "sum"))


def test_kd_det_bg_weight_mode_is_checked(teacher_weights):
    opts = ["MODEL.KD.TEACHER_CONFIG", "configs/synthetic/det_tiny.yaml", "MODEL.KD.TEACHER_WEIGHTS", teacher_weights,
            *KD_DET]
    with pytest.raises(ValueError, match="MODEL.KD.BG_WEIGHT_MODE.*'per_roi'"):
        build_model(kd_cfg(*opts, "MODEL.KD.BG_WEIGHT_MODE", "per_roi"))
    torch.manual_seed(0)
    model = build_model(kd_cfg(*opts, "MODEL.KD.BG_WEIGHT_MODE", "sample")).train()
    with EventStorage():
        losses = model(batch())
    assert torch.isfinite(losses["loss_cls"]) and losses["loss_cls"].item() > 0


@pytest.mark.parametrize("name", ["kd_oim.yaml", "kd_det_oim.yaml", "kd_det_reid_oim.yaml", "kd_oim_r18.yaml",
                                  "kd_det_oim_r18.yaml"])
def test_paper_kd_configs_build(name):
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / name))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.OIM.NUM_PIDS", 5532, "MODEL.WEIGHTS", ""])
    model = build_model(cfg)
    assert isinstance(model, KDPersonSearchRCNN) and isinstance(model, PersonSearchRCNN)
    if cfg.MODEL.KD.REID.LUT_SOURCE:
        assert model.roi_heads.oim_loss.fixed_lut and cfg.MODEL.OIM.LOSS_WEIGHT == 0.1
    if cfg.MODEL.KD.HINT.ENABLED:
        student = 256 if cfg.MODEL.RESNETS.DEPTH == 18 else 1024
        assert tuple(model.hint_adapter.conv.weight.shape) == (1024, student, 1, 1)
        assert model.teacher.backbone.output_shape()["res4"].channels == 1024


@pytest.mark.slow
@pytest.mark.parametrize("name", ["kd_oim_r18.yaml", "kd_det_oim_r18.yaml"])
def test_paper_r18_student_trains_a_step_from_a_r50_teacher(name, tmp_path):
    """The compression configs as a user runs them (ResNet-18 student, ResNet-50 teacher), at 240 px."""
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / name))
    opts = ["MODEL.DEVICE", "cpu", "MODEL.OIM.NUM_PIDS", 5532, "MODEL.WEIGHTS", "", "MODEL.REQUIRE_PRETRAINED", False,
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32]
    if cfg.MODEL.KD.REID.LUT_SOURCE:
        lut = np.random.default_rng(0).normal(size=(5532, 256)).astype(np.float32)
        np.save(tmp_path / "lut.npy", lut)
        opts += ["MODEL.KD.REID.LUT_SOURCE", str(tmp_path / "lut.npy")]
    if cfg.MODEL.KD.TEACHER_CONFIG:
        teacher_cfg = get_cfg()
        teacher_cfg.merge_from_file(str(REPO / cfg.MODEL.KD.TEACHER_CONFIG))
        teacher_cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
        opts += ["MODEL.KD.TEACHER_WEIGHTS", save_model(build_model(teacher_cfg), tmp_path / "det_r50.pth")]
    cfg.merge_from_list(opts)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    inputs = [image_input(240, 320, boxes=((40, 40, 90, 200), (200, 60, 240, 220)), pids=(7, -1), seed=s)
              for s in (4, 5)]
    with EventStorage():
        losses = model(inputs)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values()), losses
    assert model.backbone.output_shape()["res4"].channels == 256
    if cfg.MODEL.KD.TEACHER_CONFIG:
        assert {"loss_hint", "loss_rpn_bounded", "loss_box_bounded"} <= set(losses)
        assert model.teacher.backbone.output_shape()["res4"].channels == 1024
        assert model.hint_adapter.conv.weight.grad.abs().sum() > 0
    else:
        assert model.roi_heads.oim_loss.fixed_lut
        assert torch.allclose(model.roi_heads.oim_loss.lut.norm(dim=1), torch.ones(5532))
