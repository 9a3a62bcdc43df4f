"""MODEL.PERSON_SEARCH.SPLIT: the C4 cut (after res4) and the original OIM's conv4_3 cut (after res4c, res4d-f
per RoI) of the same ResNet-50; checkpoints of one layout load into the other; head norm and freezing options."""
import pickle

import numpy as np
import pytest
import torch
import torchvision
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage

from reid2.config import get_cfg
from reid2.modeling.backbones.c4 import remap_res4_split_keys
from reid2.modeling.backbones.convert import convert_state_dict, save_converted
from reid2.utils.serialization import SafeCheckpointer
from tests.helpers import REPO, image_input


def r50_cfg(split, *opts, config="configs/oim_r50.yaml"):
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / config))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.OIM.NUM_PIDS", 8,
                         "MODEL.OIM.QUEUE_SIZE", 16, "DATASETS.TRAIN", "()", "DATASETS.TEST", "()",
                         "MODEL.PERSON_SEARCH.SPLIT", split, *opts])
    return cfg


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    c4 = build_model(r50_cfg("C4"))
    conv4_3 = build_model(r50_cfg("conv4_3"))
    return c4, conv4_3


def as_c4_names(state):
    """conv4_3 names -> C4 names (roi_heads.res4.i -> backbone.res4.i), written independently of the code."""
    return {k.replace("roi_heads.res4.", "backbone.res4.", 1): v for k, v in state.items()}


def test_conv4_3_layout_and_shapes(models):
    _, model = models
    assert len(model.backbone.res4) == 3 and [n for n, _ in model.roi_heads.res4.named_children()] == ["3", "4", "5"]
    assert model.backbone.output_shape()["res4"].channels == 1024
    assert model.backbone.output_shape()["res4"].stride == 16
    model.eval()
    with torch.no_grad():
        features = model.backbone(torch.zeros(1, 3, 160, 224))
        assert features["res4"].shape == (1, 1024, 10, 14)
        boxes = [Boxes(torch.tensor([[0.0, 0.0, 64.0, 128.0], [32.0, 16.0, 96.0, 144.0]]))]
        pooled = model.roi_heads.pooler([features["res4"]], boxes)
        assert pooled.shape == (2, 1024, 14, 14)  # the original's RoI pooling: 1024 x 14 x 14 at conv4_3
        assert model.roi_heads.res4(pooled).shape == (2, 1024, 14, 14)
        assert model.roi_heads._shared_roi_transform([features["res4"]], boxes).shape == (2, 2048, 7, 7)
        assert model.roi_heads.pooled_features(features, boxes).shape == (2, 2048)


def test_both_splits_have_the_same_resnet50_parameters(models):
    c4, conv4_3 = models
    shapes_c4 = {k: tuple(v.shape) for k, v in c4.state_dict().items()}
    shapes_conv4_3 = {k: tuple(v.shape) for k, v in as_c4_names(conv4_3.state_dict()).items()}
    assert shapes_conv4_3 == shapes_c4
    assert sum(p.numel() for p in c4.parameters()) == sum(p.numel() for p in conv4_3.parameters())
    trainable = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in models]
    assert trainable[0] == trainable[1]
    assert not any(k.startswith("roi_heads.res4.") for k in shapes_c4)


def test_checkpoints_load_across_splits_strictly(models):
    c4, conv4_3 = models
    conv4_3.load_state_dict(c4.state_dict())  # strict: every key renamed, none missing
    assert torch.equal(conv4_3.roi_heads.res4[2].conv2.weight, c4.backbone.res4[5].conv2.weight)
    assert torch.equal(conv4_3.backbone.res4[0].conv1.weight, c4.backbone.res4[0].conv1.weight)
    assert torch.equal(conv4_3.roi_heads.res5[0].conv1.weight, c4.roi_heads.res5[0].conv1.weight)
    back = build_model(r50_cfg("C4"))
    back.load_state_dict(conv4_3.state_dict())
    for key, value in c4.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_converted_c4_imagenet_weights_initialise_the_conv4_3_model(tmp_path):
    """tools/convert_weights.py output (C4 names: backbone.res4.3-5) -> every tensor lands in the conv4_3 model."""
    torch.manual_seed(1)
    source = torchvision.models.resnet50(weights=None).state_dict()
    converted = convert_state_dict(source, "resnet50", "person_search")
    path = tmp_path / "r50_c4.pth"
    save_converted(converted, str(path))
    cfg = r50_cfg("conv4_3", "MODEL.RESNETS.STRIDE_IN_1X1", False)
    model = build_model(cfg)
    SafeCheckpointer(model).load(str(path))
    state = model.state_dict()
    assert torch.equal(state["roi_heads.res4.4.conv3.weight"], source["layer3.4.conv3.weight"])
    assert torch.equal(state["roi_heads.res4.3.conv1.norm.running_var"], source["layer3.3.bn1.running_var"])
    assert torch.equal(state["backbone.res4.2.conv3.norm.weight"], source["layer3.2.bn3.weight"])
    assert torch.equal(state["roi_heads.res5.0.shortcut.weight"], source["layer4.0.downsample.0.weight"])
    landed = {k for k in as_c4_names(state)} & set(converted.state_dict)
    assert landed == set(converted.state_dict)
    for key in converted.state_dict:
        model_key = key
        if key.startswith("backbone.res4.") and int(key.split(".")[2]) >= 3:
            model_key = key.replace("backbone.", "roi_heads.", 1)
        assert torch.equal(state[model_key], converted.state_dict[key]), key


def test_caffe2_style_weights_match_by_suffix_in_the_conv4_3_model(tmp_path, models):
    """The MSRA R-50.pkl path (Detectron2's suffix matching): 'res4.4.conv1.weight' finds roi_heads.res4.4."""
    c4, _ = models
    blobs = {k.split(".", 1)[1]: v.numpy() for k, v in c4.state_dict().items()
             if k.startswith(("backbone.", "roi_heads.res5."))}
    assert "res4.4.conv1.weight" in blobs and "res5.0.conv1.weight" in blobs
    path = tmp_path / "r50_names.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": blobs, "__author__": "test", "matching_heuristics": True}, f)
    model = build_model(r50_cfg("conv4_3"))
    SafeCheckpointer(model).load(str(path))
    state = model.state_dict()
    assert np.array_equal(state["roi_heads.res4.4.conv1.weight"].numpy(), blobs["res4.4.conv1.weight"])
    assert np.array_equal(state["backbone.res4.1.conv2.weight"].numpy(), blobs["res4.1.conv2.weight"])
    assert np.array_equal(state["roi_heads.res5.2.conv3.weight"].numpy(), blobs["res5.2.conv3.weight"])


def test_remap_refuses_a_checkpoint_with_both_layouts():
    state = {"backbone.res4.3.conv1.weight": torch.zeros(1), "roi_heads.res4.3.conv1.weight": torch.ones(1)}
    with pytest.raises(ValueError, match="both layouts"):
        remap_res4_split_keys(state, 3)
    state = {"backbone.res4.4.conv1.weight": torch.zeros(1), "backbone.res4.1.conv1.weight": torch.ones(1),
             "roi_heads.res5.0.conv1.weight": torch.ones(2)}
    assert set(remap_res4_split_keys(dict(state), 3)) == {"roi_heads.res4.4.conv1.weight",
                                                          "backbone.res4.1.conv1.weight",
                                                          "roi_heads.res5.0.conv1.weight"}


def test_paper_config_freezing_and_head_norm_options():
    cfg = r50_cfg("conv4_3", "MODEL.PERSON_SEARCH.HEAD_NORM", "BN", config="configs/oim_r50_conv4_3.yaml")
    assert cfg.MODEL.BACKBONE.FREEZE_AT == 1
    model = build_model(cfg)
    assert not any(p.requires_grad for p in model.backbone.stem.parameters())
    assert all(p.requires_grad for p in model.backbone.res2.parameters())  # conv1 only is frozen
    assert isinstance(model.backbone.res4[2].conv1.norm, FrozenBatchNorm2d)  # trunk: frozen statistics
    for head in (model.roi_heads.res4, model.roi_heads.res5):
        norms = [m for m in head.modules() if isinstance(m, (torch.nn.BatchNorm2d, FrozenBatchNorm2d))]
        assert norms and all(type(m) is torch.nn.BatchNorm2d for m in norms)  # RoI-batch statistics
    frozen4 = build_model(r50_cfg("conv4_3", "MODEL.BACKBONE.FREEZE_AT", 4))
    assert not any(p.requires_grad for p in frozen4.roi_heads.res4.parameters())  # res4 frozen as a whole
    assert all(p.requires_grad for p in frozen4.roi_heads.res5.parameters())


@pytest.mark.parametrize("opts, match", [
    (["MODEL.PERSON_SEARCH.SPLIT", "conv5"], "MODEL.PERSON_SEARCH.SPLIT must be one of"),
    (["MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64], "ResNet-18 has 2 res4 blocks"),
])
def test_bad_split_settings_are_clear_errors(opts, match):
    with pytest.raises(ValueError, match=match):
        build_model(r50_cfg("conv4_3", *opts))


def test_split_needs_the_resnet_backbone():
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs/synthetic/oim_tiny.yaml"))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.OIM.NUM_PIDS", 5, "DATASETS.TRAIN", "()",
                         "MODEL.PERSON_SEARCH.SPLIT", "conv4_3"])
    with pytest.raises(ValueError, match="build_resnet_backbone"):
        build_model(cfg)
    cfg.merge_from_list(["MODEL.PERSON_SEARCH.SPLIT", "C4", "MODEL.PERSON_SEARCH.HEAD_NORM", "BN"])
    with pytest.raises(ValueError, match="HEAD_NORM applies to ResNet heads"):
        build_model(cfg)


def test_conv4_3_paper_config_trains_a_step():
    """configs/oim_r50_conv4_3.yaml (random init, 160 px, 32 RoIs): every loss finite, the moved blocks learn."""
    cfg = r50_cfg("conv4_3", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32, config="configs/oim_r50_conv4_3.yaml")
    torch.manual_seed(0)
    model = build_model(cfg).train()
    inputs = [image_input(160, 224, boxes=((20, 20, 80, 150), (120, 30, 170, 150)), pids=(2, -1), seed=s)
              for s in (1, 2)]
    with EventStorage():
        losses = model(inputs)
    assert {"loss_cls", "loss_box_reg", "loss_oim", "loss_rpn_cls", "loss_rpn_loc"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    assert model.roi_heads.res4[0].conv1.weight.grad.abs().sum() > 0
    assert model.backbone.res2[0].conv1.weight.grad.abs().sum() > 0  # FREEZE_AT 1: res2 trains
