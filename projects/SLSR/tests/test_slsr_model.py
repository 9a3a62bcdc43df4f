"""``SLSRReID``: the paper's noise layer (a D x D linear layer in front of the classifier, identity at init, for the
generated images), mean-pixel centring, and runs that take stages 1-2 from another run (SLSR.*.FROM_RUN)."""
import json

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from PIL import Image

from reid2.config import get_cfg
from reid2.projects.slsr.clustering import run_stage1, stage1_settings
from reid2.projects.slsr.data import mean_pixel
from reid2.projects.slsr.generation import run_stage2, stage2_settings
from reid2.projects.slsr.paths import StageMismatchError, stage_paths, write_marker
from reid2.projects.slsr.pipeline import redo

K = 6


def _cfg(*opts):
    cfg = get_cfg()
    cfg.merge_from_list([str(x) for x in [
        "MODEL.META_ARCHITECTURE", "SLSRReID", "MODEL.BACKBONE.NAME", "build_reid_tiny_backbone",
        "MODEL.REID_BACKBONE.WIDTH", 8, "MODEL.REID.NUM_CLASSES", K, "MODEL.REID.BN_NECK", False,
        "MODEL.REID.TEST_FEAT", "before_bn", "MODEL.LOSSES.NAMES", '["SLSRLoss"]', "SLSR.USE_GENERATED", False,
        "MODEL.DEVICE", "cpu", *opts]])
    return cfg


def _model(*opts):
    torch.manual_seed(0)
    return build_model(_cfg(*opts))


def test_noise_layer_is_identity_at_init_and_only_moves_generated_rows():
    model = _model()
    a = model.noise_layer
    assert model.feat_dim == 32  # tiny backbone, width 8: 4 x 8 channels
    assert a.weight.shape == (model.feat_dim, model.feat_dim)
    torch.testing.assert_close(a.weight, torch.eye(model.feat_dim))
    assert (a.bias == 0).all()
    f = torch.randn(4, model.feat_dim)
    gen = torch.tensor([False, True, False, True])
    plain = model.classifier(f)
    torch.testing.assert_close(model.head(f, generated=gen)["logits"], plain)  # identity at init
    with torch.no_grad():
        a.weight.copy_(torch.randn_like(a.weight))
        a.bias.copy_(torch.randn_like(a.bias))
    out = model.head(f, generated=gen)["logits"]
    torch.testing.assert_close(out[~gen], plain[~gen])  # real rows bypass it
    torch.testing.assert_close(out[gen], (f[gen] @ a.weight.T + a.bias) @ model.classifier.weight.T)
    # APPLY_TO all: every row through A, evaluation (no mask) included
    every = _model("SLSR.NOISE_LAYER.APPLY_TO", "all")
    every.load_state_dict(model.state_dict())
    torch.testing.assert_close(every.head(f)["logits"], (f @ a.weight.T + a.bias) @ model.classifier.weight.T)
    # test features come before the layer: the same as a model without it
    images = torch.randn(2, 3, 32, 16)
    off = _model("SLSR.NOISE_LAYER.ENABLED", False)
    assert off.noise_layer is None
    off.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("noise_layer")})
    torch.testing.assert_close(model.eval()(({"images": images})), off.eval()({"images": images}))
    # the K x K reading sits in the loss instead
    assert _model("SLSR.NOISE_LAYER.TYPE", "softmax").noise_layer is None


def test_noise_layer_gradient_comes_from_generated_images_only():
    model = _model().train()
    batch = {"images": torch.randn(4, 3, 32, 16), "targets": torch.tensor([0, 1, 2, 3])}
    from detectron2.utils.events import EventStorage

    with EventStorage():
        sum(model(batch).values()).backward()
    assert model.noise_layer.weight.grad is not None and model.noise_layer.weight.grad.abs().sum() == 0
    model.zero_grad()
    # a generated image of cluster 0 (pid -1): the SLSR loss needs label sets, give the loss one by hand
    from reid2.projects.slsr.targets import cluster_target_matrix

    model.losses["SLSRLoss"].cluster_targets = cluster_target_matrix([[0, 1, 2]], K)
    batch["targets"] = torch.tensor([0, -1, 2, 3])
    with EventStorage():
        sum(model(batch).values()).backward()
    assert model.noise_layer.weight.grad.abs().sum() > 0


def test_mean_pixel_centring_by_hand(tmp_path):
    dicts = []
    for i, rgb in enumerate([(255, 0, 0), (0, 255, 51)]):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((8, 4, 3), rgb, np.uint8)).save(path)
        dicts.append({"file_name": str(path), "pid": i, "camid": 0})
    cfg = _cfg("INPUT.REID.NORMALIZE", "none", "INPUT.REID.SIZE_TEST", "[8, 4]", "INPUT.REID.CROP_SIZE", "[0, 0]",
               "DATALOADER.NUM_WORKERS", 0, "TEST.IMS_PER_BATCH", 1)
    torch.testing.assert_close(mean_pixel(cfg, dicts), torch.tensor([0.5, 0.5, 0.1]))
    cfg.INPUT.REID.NORMALIZE = "tanh"  # the mean is taken after the normalisation: 2 x - 1
    torch.testing.assert_close(mean_pixel(cfg, dicts), torch.tensor([0.0, 0.0, -0.8]))
    with pytest.raises(ValueError, match="MEAN_PIXEL_CENTERING"):
        mean_pixel(cfg, [])
    centred, plain = _model("SLSR.MEAN_PIXEL_CENTERING", True).eval(), _model().eval()
    centred.pixel_mean.copy_(torch.tensor([0.5, -0.25, 1.0]))
    images = torch.randn(2, 3, 32, 16)
    shifted = images - torch.tensor([0.5, -0.25, 1.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(centred.pooled_features(images), plain.pooled_features(shifted))
    assert "pixel_mean" in centred.state_dict()  # travels with the checkpoint


def _stage_cfg(work, *opts):
    return _cfg("DATASETS.TRAIN", '("synthetic_market_train",)', "OUTPUT_DIR", work, *opts)


def _fake_run(folder, cfg):
    """A finished stages 1-2 of ``cfg`` in ``folder`` (markers, clusters.json, manifest.json)."""
    paths = stage_paths(cfg)
    write_marker(paths.stage1, stage1_settings(cfg))
    paths_c = folder / "stage1" / "clusters.json"
    paths_c.write_text(json.dumps({"num_classes": K, "clusters": [{"classes": [0, 1]}] * 3}))
    write_marker(paths.stage2, stage2_settings(cfg))
    (folder / "stage2" / "manifest.json").write_text(json.dumps({"images": []}))


def test_stages_taken_from_another_run(tmp_path):
    r50 = tmp_path / "r50"
    _fake_run(r50, _stage_cfg(r50))
    dense = tmp_path / "dense"
    # A DenseNet-like run (another backbone, other stage-1 CNN settings) reusing the R50 run's stages 1-2.
    cfg = _stage_cfg(dense, "MODEL.REID_BACKBONE.WIDTH", 16, "SLSR.CLUSTER.CNN_LR", 0.5,
                     "SLSR.CLUSTER.FROM_RUN", r50, "SLSR.GAN.FROM_RUN", r50)
    assert run_stage1(cfg) == str(r50 / "stage1" / "clusters.json")
    assert run_stage2(cfg) == str(r50 / "stage2" / "manifest.json")
    assert not (dense / "stage1").exists() and not (dense / "stage2").exists()  # nothing computed here
    redo(cfg, "stage1")  # never deletes the other run's stages
    assert (r50 / "stage1" / "DONE.json").is_file() and (r50 / "stage2" / "DONE.json").is_file()
    # What the label sets depend on must agree.
    bad = _stage_cfg(dense, "SLSR.NUM_CLUSTERS", 2, "SLSR.CLUSTER.FROM_RUN", r50)
    with pytest.raises(StageMismatchError, match="FROM_RUN.*'k': \\(3, 2\\)"):
        run_stage1(bad)
    with pytest.raises(StageMismatchError, match="num_generated"):
        run_stage2(_stage_cfg(dense, "SLSR.GAN.NUM_GENERATED", 7, "SLSR.CLUSTER.FROM_RUN", r50,
                              "SLSR.GAN.FROM_RUN", r50))
    # GAN images of one run with the clusters of another: refused.
    with pytest.raises(ValueError, match="GAN.FROM_RUN.*CLUSTER.FROM_RUN"):
        run_stage2(_stage_cfg(dense, "SLSR.GAN.FROM_RUN", r50))
    # An unfinished run is named.
    with pytest.raises(FileNotFoundError, match="CLUSTER.FROM_RUN.*no DONE.json"):
        run_stage1(_stage_cfg(dense, "SLSR.CLUSTER.FROM_RUN", tmp_path / "missing"))
