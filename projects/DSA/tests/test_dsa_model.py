"""DSA-reID (projects/DSA): merge tables, both streams' shapes, losses, MF-only inference, data, train_net."""
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reid2.modeling.backbones import TinyBackbone
from reid2.projects.dsa.modeling import DSAGStream, DSAReID, MFStream, ResNetTrunk, merge_branches
from reid2.projects.dsa.parts import (
    BRANCH_NAMES,
    LEVEL1_GROUPS,
    LEVEL1_INDEX,
    LEVEL2_GROUPS,
    LEVEL2_INDEX,
    POINT_LABEL_SYMMETRIES,
    branch_parts,
)
from tests.helpers import REPO, run_tool

# Official DensePose names (notes/densepose.md §1.5): front/back halves share a name.
OFFICIAL = {1: "torso", 2: "torso", 3: "hand_r", 4: "hand_l", 5: "foot_l", 6: "foot_r", 7: "uleg_r", 9: "uleg_r",
            8: "uleg_l", 10: "uleg_l", 11: "lleg_r", 13: "lleg_r", 12: "lleg_l", 14: "lleg_l", 15: "uarm_l",
            17: "uarm_l", 16: "uarm_r", 18: "uarm_r", 19: "larm_l", 21: "larm_l", 20: "larm_r", 22: "larm_r",
            23: "head", 24: "head"}


def test_merge_order_24_13_8():
    # level 1: exactly the left/right pairs of DensePose's flip map (torso halves pass through)
    for group in LEVEL1_GROUPS:
        assert {POINT_LABEL_SYMMETRIES[p] for p in group} == set(group)
    assert sorted(p for g in LEVEL1_GROUPS for p in g) == list(range(1, 25))
    # level 2: joins only nodes whose parts share an official name up to the side (front/back halves)
    for nodes in LEVEL2_GROUPS:
        names = {OFFICIAL[p].rstrip("_lr").split("_")[0] for n in nodes for p in LEVEL1_GROUPS[n]}
        assert len(names) == 1
    assert branch_parts() == [[23, 24], [1, 2], [15, 16, 17, 18], [19, 20, 21, 22], [3, 4], [7, 8, 9, 10],
                              [11, 12, 13, 14], [5, 6]]
    assert BRANCH_NAMES == ["head", "torso", "upper_arms", "lower_arms", "hands", "upper_legs", "lower_legs", "feet"]
    x = torch.arange(1, 25, dtype=torch.float32).reshape(1, 24, 1, 1, 1)
    merged = merge_branches(merge_branches(x, LEVEL1_INDEX, 13), LEVEL2_INDEX, 8).flatten()
    assert merged.tolist() == [float(sum(b)) for b in branch_parts()]


def test_dsag_branch_receives_only_its_parts():
    """D_i depends on the DSAP images of branch i's parts only (separate weights, merges by add)."""
    torch.manual_seed(0)
    net = DSAGStream((2, 3, 3, 4), global_channels=8, part_channels=2).eval()
    dsap = torch.randn(1, 24, 3, 8, 8, requires_grad=True)
    d = net.mb_ns(dsap)
    assert d.shape == (1, 8 * 4, 2, 2)
    for i, parts in enumerate(branch_parts()):
        (grad,) = torch.autograd.grad(d[:, 4 * i:4 * (i + 1)].sum(), dsap, retain_graph=True)
        reached = {p + 1 for p in range(24) if grad[0, p].abs().sum() > 0}
        assert reached == set(parts), BRANCH_NAMES[i]


def test_paper_scale_parameter_shapes():
    with torch.device("meta"):  # shapes only: nothing allocated
        dsag = DSAGStream()
        mf = MFStream(ResNetTrunk(depth=50))
    dsag_shapes = {
        "conv1.0.weight": (24 * 32, 3, 5, 5), "conv2.0.weight": (24 * 64, 32, 3, 3),
        "conv3.0.conv1.0.weight": (24 * 64, 64, 3, 3), "conv3.1.conv2.0.weight": (24 * 64, 64, 3, 3),
        "conv4.0.conv1.0.weight": (13 * 128, 64, 3, 3), "conv4.1.conv2.0.weight": (13 * 128, 128, 3, 3),
        "conv5_g.0.conv1.0.weight": (2048, 8 * 128, 3, 3), "conv5_g.1.conv2.0.weight": (2048, 2048, 3, 3),
        "conv5_l.0.conv1.0.weight": (8 * 256, 128, 3, 3), "conv5_l.1.conv2.0.weight": (8 * 256, 256, 3, 3),
    }
    params = dict(dsag.named_parameters())
    for name, shape in dsag_shapes.items():
        assert tuple(params[name].shape) == shape, name
    assert dsag.conv3[0].conv1[0].stride == (2, 2) and dsag.conv4[0].conv1[0].stride == (2, 2)
    assert dsag.conv3[1].conv1[0].stride == (1, 1) and dsag.conv5_g[0].conv1[0].stride == (1, 1)
    mfp = dict(mf.named_parameters())
    assert not any(k.startswith("trunk.layer4") for k in mfp)  # conv5_x is the head, not the trunk
    assert tuple(mfp["trunk.layer3.5.conv3.weight"].shape) == (1024, 256, 1, 1)  # F: 1024 channels
    assert len(mf.global_branch) == 3 and tuple(mfp["global_branch.0.conv1.weight"].shape) == (512, 1024, 1, 1)
    assert tuple(mfp["global_branch.2.conv3.weight"].shape) == (2048, 512, 1, 1)
    assert len(mf.local_branches) == 8
    assert tuple(mfp["local_branches.7.0.conv1.weight"].shape) == (64, 1024, 1, 1)  # 1/8 of the channels
    assert tuple(mfp["local_branches.7.2.conv3.weight"].shape) == (256, 64, 1, 1)
    assert all(m.stride == (1, 1) for m in mf.global_branch.modules() if isinstance(m, torch.nn.Conv2d))


def tiny_model(mode="dsa", fusion="add", num_classes=4):
    torch.manual_seed(0)
    return DSAReID(trunk=TinyBackbone(width=8, out_stride=16), num_classes=num_classes, mode=mode, fusion=fusion,
                   dsag_channels=(2, 4, 4, 8), dsag_global=64, dsag_part=8, mf_global=64, mf_blocks=1,
                   cls_hidden=16)


def batch(b=8, s=16):
    g = torch.Generator().manual_seed(0)
    return {"images": torch.randn(b, 3, 64, 32, generator=g), "targets": torch.arange(b) // 2,
            "dsap": torch.randn(b, 24, 3, s, s, generator=g)}


@pytest.mark.parametrize("mode,fusion", [("dsa", "add"), ("csa", "add"), ("dsa", "concat_fc"), ("none", "add")])
def test_losses_and_gradients(mode, fusion):
    model = tiny_model(mode, fusion).train()
    losses = model(batch())
    assert set(losses) == {"loss_mf_id_global", "loss_mf_id_parts", "loss_fused_id_global", "loss_fused_id_local",
                           "loss_fused_triplet_global", "loss_fused_triplet_local"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    if model.dsag is not None:  # the DSAG-Stream is trained through the fused losses only
        assert model.dsag.conv1[0].weight.grad.abs().sum() > 0
    assert model.mf.trunk.stages[0].weight.grad.abs().sum() > 0


def test_loss_weights_follow_the_paper():
    model = tiny_model().train()
    b = batch()
    base = model(b)
    model.w_mf, model.w_tri, model.w_id = 1.0, 1.0, 1.0
    unit = model(b)
    for key, w in (("loss_mf_id_global", 0.5), ("loss_mf_id_parts", 0.5), ("loss_fused_id_global", 1.0),
                   ("loss_fused_triplet_global", 1.5), ("loss_fused_triplet_local", 1.5)):
        assert torch.allclose(base[key], w * unit[key], rtol=1e-4), key


def test_mf_part_reduction_sum_or_mean():
    """MODEL.DSA.LOSS.MF_PART_REDUCTION: 0.5 × Σ_i ID(f_L,i) (paper) or 0.5 × mean_i, each ID term recomputed here."""
    from reid2.modeling.losses import cross_entropy_loss

    b = batch()
    model = tiny_model().train()
    torch.manual_seed(1)
    summed = model(b)["loss_mf_id_parts"]
    with torch.no_grad():
        _, f_l = model.mf(b["images"])
    model.mf_part_reduction = "mean"
    torch.manual_seed(1)
    averaged = model(b)["loss_mf_id_parts"]
    per_part = [cross_entropy_loss(cls(p), b["targets"], 0.0) for cls, p in zip(model.cls_f_l, f_l.chunk(8, 1))]
    assert len(per_part) == 8
    torch.testing.assert_close(summed, 0.5 * sum(per_part), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(averaged, 0.5 * sum(per_part) / 8, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="MODEL.DSA.LOSS.MF_PART_REDUCTION"):
        DSAReID(trunk=TinyBackbone(width=8), num_classes=3, mf_global=64, dsag_global=64, dsag_part=8,
                mf_blocks=1, mf_part_reduction="max")


def test_inference_needs_no_iuv_and_export_has_no_dsag():
    model = tiny_model().eval()
    images = batch()["images"]
    feats = model({"images": images})  # no "dsap" key
    assert feats.shape == (8, 128)  # [f_G, f_L] = 64 + 8 × 8
    exported = model.export_inference_model()
    state = exported.state_dict()
    assert state and all(k.startswith("mf.") for k in state)
    assert not any("dsag" in k or "cls_" in k for k in state)
    assert sum(p.numel() for p in exported.parameters()) < sum(p.numel() for p in model.parameters())
    torch.testing.assert_close(exported({"images": images}), feats)
    plain = tiny_model("none").eval()  # an MF-only model loads the exported weights
    plain.mf.load_state_dict({k[3:]: v for k, v in state.items()})
    torch.testing.assert_close(plain({"images": images}), feats)
    with pytest.raises(KeyError, match="dsap"):
        model.train()({"images": images, "targets": torch.arange(8) // 2})


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="MODEL.DSA.MODE"):
        tiny_model(mode="dense")
    with pytest.raises(ValueError, match="MODEL.DSA.FUSION"):
        tiny_model(fusion="mul")
    with pytest.raises(ValueError, match="GLOBAL_CHANNELS"):
        DSAReID(trunk=TinyBackbone(width=8), num_classes=3, dsag_global=32, mf_global=64, dsag_part=8, mf_blocks=1)


def test_trunk_pretrained_file_missing_is_a_clear_error(tmp_path):
    from detectron2.layers import ShapeSpec

    import reid2.projects.dsa  # noqa: F401  (MODEL.DSA keys)
    from reid2.config import get_cfg
    from reid2.projects.dsa.modeling import build_dsa_resnet_trunk

    cfg = get_cfg()
    cfg.MODEL.REID_BACKBONE.DEPTH = 18
    cfg.MODEL.REID_BACKBONE.PRETRAINED = str(tmp_path / "resnet18_imagenet.pth")
    with pytest.raises(FileNotFoundError, match="resnet18_imagenet.pth"):
        build_dsa_resnet_trunk(cfg, ShapeSpec(channels=3))


# ---- data -------------------------------------------------------------------------------------------------
def _tiny_cfg(datasets_root, *opts):
    import reid2.projects.dsa  # noqa: F401  (MODEL.DSA keys)
    from reid2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "projects/DSA/configs/synthetic_dsa_tiny.yaml"))
    cfg.merge_from_list(["SOLVER.IMS_PER_BATCH", "8", *opts])
    return cfg


def test_synthetic_iuv_layout_and_dataset(datasets_root, caplog):
    from detectron2.data import DatasetCatalog

    from reid2.data import build_reid_transforms
    from reid2.projects.dsa.data import DSADataset, build_dsa_train_loader, iuv_path, load_person_iuv
    from reid2.projects.dsa.dsap import warp_to_dsap
    from reid2.utils.files import read_image_rgb

    cfg = _tiny_cfg(datasets_root)
    dicts = DatasetCatalog.get("synthetic_market_train")
    path = Path(iuv_path(dicts[0]["file_name"]))
    assert path.is_file() and path.parent.parent.name == "densepose_iuv" and path.name.endswith("_IUV.png")
    with caplog.at_level(logging.INFO, logger="reid2.projects.dsa.data"):
        b = next(iter(build_dsa_train_loader(cfg, dicts)))
    assert "training persons have no DensePose body pixel" in caplog.text
    assert b["images"].shape == (8, 3, 128, 64) and b["dsap"].shape == (8, 24, 3, 16, 16)

    # flip augments the MF image only: without UV symmetry tables the DSAP images stay unflipped
    d = dicts[0]
    kw = dict(mode="dsa", size=32, normalize="none")
    mf = build_reid_transforms(cfg, is_train=False)
    flipped, plain = DSADataset([d], mf, flip_prob=1.0, **kw)[0], DSADataset([d], mf, flip_prob=0.0, **kw)[0]
    torch.testing.assert_close(flipped["dsap"], plain["dsap"])
    torch.testing.assert_close(flipped["image"], plain["image"].flip(-1))
    rgb = np.asarray(read_image_rgb(d["file_name"]))
    iuv = load_person_iuv(d["file_name"], rgb.shape[:2])
    expect = warp_to_dsap(rgb, iuv.labels, iuv.u, iuv.v) / 255.0
    np.testing.assert_allclose(plain["dsap"].numpy(), expect.transpose(0, 3, 1, 2), atol=1e-5)


def test_missing_iuv_is_a_clear_error(datasets_root, tmp_path):
    from detectron2.data import DatasetCatalog

    from reid2.projects.dsa.data import build_dsa_train_loader

    cfg = _tiny_cfg(datasets_root, "MODEL.DSA.IUV_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"MODEL.DSA.IUV_ROOT.*nowhere.*cache_densepose"):
        build_dsa_train_loader(cfg, DatasetCatalog.get("synthetic_market_train"))


def test_empty_densepose_gets_mean_filled_dsap(datasets_root, tmp_path):
    from detectron2.data import DatasetCatalog

    from reid2.data import build_reid_transforms
    from reid2.projects.dsa.data import DSADataset, scan_iuv
    from reid2.projects.dsa.iuv import IUV, save_npz_iuv
    from reid2.utils.files import read_image_rgb

    dicts = DatasetCatalog.get("synthetic_market_train")[:3]
    root = tmp_path / "iuv"
    for i, d in enumerate(dicts):
        h, w = np.asarray(read_image_rgb(d["file_name"])).shape[:2]
        iuv = IUV.zeros(h, w) if i != 1 else IUV(np.ones((h, w)), np.full((h, w), 0.5), np.full((h, w), 0.5))
        folder = Path(d["file_name"]).parent.name
        save_npz_iuv(str(root / folder / (Path(d["file_name"]).stem + ".npz")), iuv)
    assert scan_iuv(dicts, str(root), "npz") == 2
    ds = DSADataset(dicts, build_reid_transforms(_tiny_cfg(datasets_root), False), iuv_root=str(root),
                    iuv_format="npz", normalize="none", flip_prob=0.0)
    dsap = ds[0]["dsap"]
    mean = torch.from_numpy(np.asarray(read_image_rgb(dicts[0]["file_name"]), np.float64).reshape(-1, 3).mean(0) / 255)
    torch.testing.assert_close(dsap, mean.float()[None, :, None, None].expand_as(dsap))


# ---- tools ------------------------------------------------------------------------------------------------
def test_train_net_trains_and_evaluates_dsa(datasets_root, tmp_path):
    out = tmp_path / "out"
    res = run_tool(["tools/train_net.py", "--config-file", "projects/DSA/configs/synthetic_dsa_tiny.yaml",
                    "SOLVER.MAX_ITER", "3", "SOLVER.STEPS", "(2,)", "SOLVER.IMS_PER_BATCH", "8",
                    "MODEL.DSA.DSAP_SIZE", "16", "OUTPUT_DIR", str(out)], env_extra={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "model_final.pth").is_file()
    assert "Rank-1" in res.stderr + res.stdout
    state = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    assert any(k.startswith("dsag.") for k in state)


def _cache_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("dsa_cache_densepose", REPO / "projects/DSA/tools/cache_densepose.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cache_tool_fails_clearly_without_densepose(tmp_path):
    try:
        import densepose  # noqa: F401
        pytest.skip("densepose is installed here")
    except ImportError:
        pass
    with pytest.raises(SystemExit, match=r"(?s)`densepose` package.*--from-dump"):
        _cache_tool().main(["--dataset", "synthetic_market_train", "--output", str(tmp_path), "--weights", "x.pkl"])


def test_cache_tool_converts_a_dump_and_resumes(datasets_root, tmp_path, caplog, monkeypatch):
    """A dump of the training crops (one with no person) → per-image .npz the DSA loader reads."""
    from detectron2.data import DatasetCatalog

    from projects.DSA.tests.densepose_fakes import fake_densepose_modules
    from reid2.projects.dsa.data import iuv_path, load_person_iuv

    mods, Result = fake_densepose_modules()  # apply_net.py pickles densepose's result class per box
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)

    dicts = DatasetCatalog.get("synthetic_market_train")
    entries = []
    for i, d in enumerate(dicts):
        ref = load_person_iuv(d["file_name"], (128, 64))  # the synthetic legacy IUV as "DensePose output"
        uv = torch.from_numpy(np.stack([ref.u, ref.v]))
        entries.append({"file_name": d["file_name"], "scores": torch.tensor([0.99]) if i else torch.zeros(0),
                        "pred_boxes_XYXY": torch.tensor([[0.0, 0.0, 64.0, 128.0]]) if i else torch.zeros(0, 4),
                        "pred_densepose": [Result(torch.from_numpy(ref.labels.astype(np.int64)), uv)] if i else []})
    dump = tmp_path / "dump.pth"
    torch.save(entries, dump)
    for name in mods:
        monkeypatch.delitem(sys.modules, name)
    out = tmp_path / "cache"
    tool = _cache_tool()
    with caplog.at_level(logging.INFO):
        assert tool.main(["--dataset", "synthetic_market_train", "--output", str(out), "--from-dump", str(dump)]) == 0
    assert f"cached {len(dicts)} images; DensePose found nobody in 1" in caplog.text
    got = load_person_iuv(dicts[1]["file_name"], (128, 64), str(out), "npz")
    ref = load_person_iuv(dicts[1]["file_name"], (128, 64))
    np.testing.assert_array_equal(got.labels, ref.labels)
    np.testing.assert_allclose(got.u, ref.u, atol=1e-3)
    assert load_person_iuv(dicts[0]["file_name"], (128, 64), str(out), "npz").empty
    Path(iuv_path(dicts[2]["file_name"], str(out), "npz")).unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        tool.main(["--dataset", "synthetic_market_train", "--output", str(out), "--from-dump", str(dump)])
    assert f"{len(dicts) - 1} already cached, 1 to do" in caplog.text


@pytest.mark.slow
def test_paper_scale_config_one_training_step(datasets_root):
    """projects/DSA/configs/market1501_dsa.yaml as is (ResNet-50 MF at 256×128, DSAG 2048/256, S = 32), random init
    (no ImageNet weights here), one Adam step on the synthetic data with its legacy IUV PNGs."""
    from detectron2.modeling import build_model

    import reid2.projects.dsa  # noqa: F401  (MODEL.DSA keys)
    from reid2.config import get_cfg
    from reid2.projects.dsa.trainer import DSATrainer

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "projects/DSA/configs/market1501_dsa.yaml"))
    cfg.merge_from_list(["DATASETS.TRAIN", "('synthetic_market_train',)", "MODEL.DSA.IUV_FORMAT", "legacy_png",
                         "SOLVER.IMS_PER_BATCH", "8", "DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cpu",
                         "MODEL.REQUIRE_PRETRAINED", "False"])  # random init on purpose
    assert cfg.MODEL.REID_BACKBONE.PRETRAINED == "" and cfg.MODEL.DSA.DSAP_SIZE == 32
    model = build_model(cfg).train()
    assert sum(p.numel() for p in model.dsag.conv5_g.parameters()) > 100e6  # Table 1's 2048-channel conv5_g
    b = next(iter(DSATrainer.build_train_loader(cfg)))
    assert b["images"].shape == (8, 3, 256, 128) and b["dsap"].shape == (8, 24, 3, 32, 32)
    opt = DSATrainer.build_optimizer(cfg, model)
    losses = model(b)
    total = sum(losses.values())
    assert torch.isfinite(total)
    opt.zero_grad()
    total.backward()
    before = model.dsag.conv1[0].weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.dsag.conv1[0].weight)
    model.eval()
    with torch.no_grad():
        assert model({"images": b["images"][:2]}).shape == (2, 4096)  # [f_G, f_L]


def test_declared_class_count_keys_are_the_classifier_rows():
    """reid2's predictor sizes the classifier from these state-dict entries (no training set at inference)."""
    state = tiny_model(num_classes=7).state_dict()
    entries = DSAReID.class_count_keys["MODEL.REID.NUM_CLASSES"]
    assert entries and all(state[k].shape[0] == 7 for k in entries)


def test_cache_tool_live_densepose_path_with_a_stand_in_predictor(datasets_root, tmp_path, monkeypatch, caplog):
    """The live path (DensePose config + DefaultPredictor + DensePoseResultExtractor) end to end, with stand-ins
    that return DensePose-format outputs: two boxes per image (the higher score, listed second, wins), one image
    with none; the IUV is pasted at the box's truncated xywh, the weights load through reid2's safe loader."""
    import detectron2.engine
    from detectron2.data import DatasetCatalog
    from detectron2.structures import Boxes, Instances

    from projects.DSA.tests.densepose_fakes import fake_densepose_live_modules
    from reid2.projects.dsa.data import load_person_iuv

    mods, Output = fake_densepose_live_modules()
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    dicts = DatasetCatalog.get("synthetic_market_train")
    empty_image = Path(dicts[0]["file_name"]).name
    seen = {}

    def chart(part, u, v, n=4):  # constant heat maps of one box: all foreground, all `part`, (u, v) everywhere
        coarse = torch.tensor([0.0, 1.0]).reshape(1, 2, 1, 1).expand(1, 2, n, n)
        fine = torch.zeros(1, 25, n, n)
        fine[:, part] = 5.0
        uu, vv = torch.zeros(1, 25, n, n), torch.zeros(1, 25, n, n)
        uu[:, part], vv[:, part] = u, v
        return coarse, fine, uu, vv

    class StandInPredictor:
        def __init__(self, cfg):
            seen["cfg"], seen["predictor"] = cfg, self
            self.model = torch.nn.Linear(1, 1)
            self.calls = 0

        def __call__(self, bgr):
            self.calls += 1
            h, w = bgr.shape[:2]
            inst = Instances((h, w))
            if self.calls == 1:  # the first image: nobody found
                inst.pred_boxes, inst.scores = Boxes(torch.zeros(0, 4)), torch.zeros(0)
                inst.pred_densepose = Output(*(t[:0] for t in chart(1, 0, 0)))
                return {"instances": inst}
            low, high = chart(7, 0.9, 0.1), chart(12, 0.25, 0.75)
            inst.pred_boxes = Boxes(torch.tensor([[0.0, 0.0, 60.0, 120.0], [3.7, 10.2, 40.5, 100.6]]))
            inst.scores = torch.tensor([0.6, 0.95])
            inst.pred_densepose = Output(*(torch.cat([a, b]) for a, b in zip(low, high)))
            return {"instances": inst}

    monkeypatch.setattr(detectron2.engine, "DefaultPredictor", StandInPredictor)
    config = tmp_path / "densepose_rcnn_R_50_FPN_s1x.yaml"
    config.write_text("MODEL:\n  ROI_DENSEPOSE_HEAD:\n    NUM_PATCHES: 24\n")
    weights = tmp_path / "model_final.pth"
    torch.save({"model": {"weight": torch.tensor([[7.0]]), "bias": torch.tensor([0.0])}}, weights)
    out = tmp_path / "cache"
    tool = _cache_tool()
    with caplog.at_level(logging.INFO):
        assert tool.main(["--dataset", "synthetic_market_train", "--output", str(out), "--device", "cpu",
                          "--densepose-config", str(config), "--weights", str(weights)]) == 0
    assert f"cached {len(dicts)} images; DensePose found nobody in 1" in caplog.text
    cfg = seen["cfg"]  # the DensePose YAML merged, run on the device asked for, weights loaded safely (not by D2)
    assert cfg.MODEL.ROI_DENSEPOSE_HEAD.NUM_PATCHES == 24 and cfg.MODEL.DEVICE == "cpu" and cfg.MODEL.WEIGHTS == ""
    assert float(seen["predictor"].model.weight) == 7.0
    assert load_person_iuv(dicts[0]["file_name"], (128, 64), str(out), "npz").empty, empty_image
    got = load_person_iuv(dicts[1]["file_name"], (128, 64), str(out), "npz")
    # box xyxy (3.7, 10.2, 40.5, 100.6) → xywh (3.7, 10.2, 36.8, 90.4) → int (3, 10, 36, 90): rows 10..99, cols 3..38
    expect = np.zeros((128, 64), np.uint8)
    expect[10:100, 3:39] = 12
    np.testing.assert_array_equal(got.labels, expect)
    np.testing.assert_allclose(got.u[expect > 0], 0.25, atol=1e-3)
    np.testing.assert_allclose(got.v[expect > 0], 0.75, atol=1e-3)
    assert np.all(got.u[expect == 0] == 0)
