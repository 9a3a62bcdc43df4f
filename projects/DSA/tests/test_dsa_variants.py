"""DSA-reID (projects/DSA): Table 3's variants — single-branch models, the fused test features and their
evaluation path, and every shipped config building and training one step on the synthetic data."""
from pathlib import Path

import numpy as np
import pytest
import torch

from reid2.modeling.backbones import TinyBackbone
from reid2.projects.dsa.modeling import DSAReID
from tests.helpers import REPO

CONFIGS = sorted(p.name for p in (REPO / "projects/DSA/configs").glob("*.yaml"))


def tiny_model(mode="dsa", branches="both", test_feature="mf", fusion="add"):
    torch.manual_seed(0)
    return DSAReID(trunk=TinyBackbone(width=8, out_stride=16), num_classes=4, mode=mode, fusion=fusion,
                   dsag_channels=(2, 4, 4, 8), dsag_global=64, dsag_part=8, mf_global=64, mf_blocks=1,
                   cls_hidden=16, branches=branches, test_feature=test_feature)


def batch(b=8, s=16):
    g = torch.Generator().manual_seed(0)
    return {"images": torch.randn(b, 3, 64, 32, generator=g), "targets": torch.arange(b) // 2,
            "dsap": torch.randn(b, 24, 3, s, s, generator=g)}


@pytest.mark.parametrize("fusion", ["add", "concat_fc"])
def test_test_features_mf_fused_global_local(fusion):
    """TEST_FEATURE picks [f_G, f_L] | [z_G, z_L] | z_G | z_L; z recomputed here from the two streams."""
    b = batch()
    models = {t: tiny_model(test_feature=t, fusion=fusion).eval() for t in ("mf", "fused", "fused_global",
                                                                             "fused_local")}
    m = models["mf"]
    with torch.no_grad():
        f_g, f_l = m.mf(b["images"])
        d_g, d_l = m.dsag(b["dsap"])
        if fusion == "add":
            z_g, z_l = f_g + d_g, f_l + d_l
        else:
            z_g = m.fuse_g(torch.cat([f_g, d_g], 1))
            z_l = m.fuse_l(torch.cat([f_l, d_l], 1))
        expect = {"mf": torch.cat([f_g, f_l], 1), "fused": torch.cat([z_g, z_l], 1), "fused_global": z_g,
                  "fused_local": z_l}
        for name, model in models.items():  # same seed: identical weights
            torch.testing.assert_close(model(b), expect[name])
        assert models["fused"](b).shape == (8, 128) and models["fused_global"](b).shape == (8, 64)
        torch.testing.assert_close(m({"images": b["images"]}), expect["mf"])  # mf needs no DSAP
    with pytest.raises(KeyError, match=r"MODEL.DSA.TEST_FEATURE='fused'.*dsap"):
        models["fused"]({"images": b["images"]})
    with pytest.raises(ValueError, match="only TEST_FEATURE 'mf'"):
        models["fused"].export_inference_model()


def test_test_feature_and_branch_errors_name_the_key():
    with pytest.raises(ValueError, match="MODEL.DSA.TEST_FEATURE 'fused'.*'none'"):
        tiny_model(mode="none", test_feature="fused")
    with pytest.raises(ValueError, match="MODEL.DSA.TEST_FEATURE"):
        tiny_model(test_feature="z")
    with pytest.raises(ValueError, match="MODEL.DSA.BRANCHES"):
        tiny_model(branches="middle")
    with pytest.raises(ValueError, match="'fused_local' needs the local branch"):
        tiny_model(branches="global", test_feature="fused_local")


@pytest.mark.parametrize("branches", ["global", "local"])
def test_single_branch_models(branches):
    """Global(Single) / Local(Single): only that branch in both streams, only its losses and features."""
    model = tiny_model(branches=branches).train()
    kept, gone = ("global", "local") if branches == "global" else ("local", "global")
    losses = model(batch())
    names = {"global": {"loss_mf_id_global", "loss_fused_id_global", "loss_fused_triplet_global"},
             "local": {"loss_mf_id_parts", "loss_fused_id_local", "loss_fused_triplet_local"}}
    assert set(losses) == names[kept]
    sum(losses.values()).backward()
    params = dict(model.named_parameters())
    other = {"global": ("mf.global_branch.", "dsag.conv5_g.", "cls_f_g.", "cls_z_g."),
             "local": ("mf.local_branches.", "dsag.conv5_l.", "cls_f_l.", "cls_z_l.")}
    assert not any(k.startswith(other[gone]) for k in params)
    for prefix in other[kept]:
        assert any(k.startswith(prefix) for k in params), prefix
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for k, p in params.items() if "conv1" in k)
    model.eval()
    with torch.no_grad():
        feats = model({"images": batch()["images"]})
        f_g, f_l = model.mf(batch()["images"])
    assert (f_l if branches == "global" else f_g) is None
    torch.testing.assert_close(feats, f_g if branches == "global" else f_l)
    assert feats.shape == (8, 64)
    exported = model.export_inference_model()
    torch.testing.assert_close(exported({"images": batch()["images"]}), feats)
    fused = tiny_model(branches=branches, test_feature="fused").eval()
    with torch.no_grad():
        d = fused.dsag(batch()["dsap"])
        f = fused.mf(batch()["images"])
        i = 0 if branches == "global" else 1
        torch.testing.assert_close(fused(batch()), f[i] + d[i])


# ---- the evaluator path with fused features ---------------------------------------------------------------
def _cfg(config, *opts):
    import reid2.projects.dsa  # noqa: F401  (MODEL.DSA keys)
    from reid2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "projects/DSA/configs" / config))
    cfg.merge_from_list(list(opts))
    return cfg


def test_fused_test_features_through_the_trainers_evaluation(datasets_root, tmp_path):
    """DSATrainer.test with TEST_FEATURE fused: its loader adds each test image's DSAP images, and the metrics
    equal those of features computed here image by image (IUV file → warp → normalise → z)."""
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import build_model

    from reid2.data import build_reid_test_loader
    from reid2.evaluation import build_evaluator
    from reid2.projects.dsa.data import load_person_iuv
    from reid2.projects.dsa.dsap import warp_to_dsap
    from reid2.projects.dsa.trainer import DSATrainer
    from reid2.utils.files import read_image_rgb

    cfg = _cfg("synthetic_dsa_tiny.yaml", "MODEL.DSA.TEST_FEATURE", "fused", "TEST.IMS_PER_BATCH", "16",
               "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    name = cfg.DATASETS.TEST[0]
    loader = DSATrainer.build_test_loader(cfg, name)
    first = next(iter(loader))
    assert first["dsap"].shape == (16, 24, 3, 16, 16)
    with torch.no_grad():
        results = DSATrainer.test(cfg, model)  # one test set: Detectron2 returns its results unnested
        results = results.get(name, results)
        results = results.get("reid", results)

        mean, std = np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255
        evaluator = build_evaluator(cfg, name, model=model)
        evaluator.reset()
        for b in build_reid_test_loader(cfg, name):  # reid2's loader: no DSAP; built here per image
            dsaps = []
            for f in b["file_names"]:
                rgb = np.asarray(read_image_rgb(f))
                iuv = load_person_iuv(f, rgb.shape[:2])
                dsaps.append((warp_to_dsap(rgb, iuv.labels, iuv.u, iuv.v, size=16) - mean) / std)
            dsap = torch.from_numpy(np.stack(dsaps).transpose(0, 1, 4, 2, 3)).float()
            f_g, f_l = model.mf(b["images"])
            d_g, d_l = model.dsag(dsap)
            evaluator.process(b, torch.cat([f_g + d_g, f_l + d_l], 1))
        mine = evaluator.evaluate()
    mine = mine.get("reid", mine)
    assert len(DatasetCatalog.get(name)) > 16
    for k in ("mAP", "Rank-1"):
        assert results[k] == pytest.approx(mine[k], abs=1e-6), k
    mf_cfg = _cfg("synthetic_dsa_tiny.yaml")
    assert DSATrainer.build_test_loader(mf_cfg, name).collate_fn is not loader.collate_fn  # mf: reid2's loader


# ---- every shipped config ---------------------------------------------------------------------------------
SYNTHETIC = ["DATASETS.TRAIN", "('synthetic_market_train',)", "DATASETS.TEST", "('synthetic_market_test',)",
             "MODEL.DSA.IUV_FORMAT", "legacy_png", "MODEL.DSA.IUV_ROOT", "",
             "MODEL.REID_BACKBONE.PRETRAINED", "", "MODEL.REQUIRE_PRETRAINED", "False",  # random init, on purpose
             "MODEL.WEIGHTS", "",  # the CUHK03 → CUHK01 config's pre-trained run does not exist here
             "SOLVER.IMS_PER_BATCH", "8", "TEST.IMS_PER_BATCH", "8", "DATALOADER.NUM_WORKERS", "0",
             "MODEL.DEVICE", "cpu"]
NARROW = ["MODEL.REID_BACKBONE.DEPTH", "18", "MODEL.DSA.MF.GLOBAL_CHANNELS", "64", "MODEL.DSA.MF.NUM_BLOCKS", "1",
          "MODEL.DSA.DSAG.CHANNELS", "[2, 4, 4, 8]", "MODEL.DSA.DSAG.GLOBAL_CHANNELS", "64",
          "MODEL.DSA.DSAG.PART_CHANNELS", "8", "MODEL.DSA.CLS_HIDDEN", "16", "MODEL.DSA.DSAP_SIZE", "16",
          "INPUT.REID.SIZE_TRAIN", "[128, 64]", "INPUT.REID.SIZE_TEST", "[128, 64]"]


def test_configs_cover_the_papers_tables_with_consistent_schedules():
    from detectron2.data import DatasetCatalog

    import reid2  # noqa: F401  (datasets)

    expect = {  # config → (train set, MODE, BRANCHES, TEST_FEATURE, FUSION)
        "market1501_dsa.yaml": ("market1501_train", "dsa", "both", "mf", "add"),
        "market1501_dsa_fused.yaml": ("market1501_train", "dsa", "both", "fused", "add"),
        "market1501_baseline_two_branches.yaml": ("market1501_train", "none", "both", "mf", "add"),
        "market1501_dsa_global_single.yaml": ("market1501_train", "dsa", "global", "mf", "add"),
        "market1501_dsa_local_single.yaml": ("market1501_train", "dsa", "local", "mf", "add"),
        "market1501_csa.yaml": ("market1501_train", "csa", "both", "mf", "add"),
        "market1501_dsa_concat_fc.yaml": ("market1501_train", "dsa", "both", "mf", "concat_fc"),
        "cuhk03_labeled_dsa.yaml": ("cuhk03_labeled_train", "dsa", "both", "mf", "add"),
        "cuhk03_detected_dsa.yaml": ("cuhk03_detected_train", "dsa", "both", "mf", "add"),
        "cuhk01_dsa.yaml": ("cuhk01_split0_train", "dsa", "both", "mf", "add"),
        "cuhk01_dsa_cuhk03_pretrained.yaml": ("cuhk01_split0_train", "dsa", "both", "mf", "add"),
        "dukemtmc_dsa.yaml": ("dukemtmc_train", "dsa", "both", "mf", "add"),
    }
    assert set(expect) | {"synthetic_dsa_tiny.yaml"} == set(CONFIGS)
    images = {"market1501_train": 12936, "cuhk03_labeled_train": 7368, "cuhk03_detected_train": 7365,
              "cuhk01_split0_train": 485 * 4, "dukemtmc_train": 16522}
    for name, (train, mode, branches, test_feature, fusion) in expect.items():
        cfg = _cfg(name)
        d = cfg.MODEL.DSA
        assert (cfg.DATASETS.TRAIN[0], d.MODE, d.BRANCHES, d.TEST_FEATURE, d.FUSION) == \
            (train, mode, branches, test_feature, fusion), name
        assert cfg.DATASETS.TEST[0] in DatasetCatalog.list() and train in DatasetCatalog.list()
        assert (d.LOSS.MF_PART_REDUCTION, d.COLLISION, d.FILL, d.DSAP_SIZE) == ("sum", "copy", "dataset", 32)
        s = cfg.SOLVER
        epoch = images[train] // s.IMS_PER_BATCH  # iterations per epoch
        assert (s.WARMUP_ITERS, s.MAX_ITER) == (20 * epoch, 320 * epoch), name
        assert list(s.STEPS) == [40 * k * epoch for k in range(1, 8)], name
        assert (s.BASE_LR, s.WARMUP_FACTOR, s.GAMMA, s.IMS_PER_BATCH) == (0.0008, 0.01, 0.5, 64)
    assert _cfg("cuhk01_dsa_cuhk03_pretrained.yaml").MODEL.WEIGHTS == \
        str(Path(_cfg("cuhk03_labeled_dsa.yaml").OUTPUT_DIR) / "model_final.pth")


def _one_step(config, opts):
    from detectron2.modeling import build_model

    from reid2.projects.dsa.trainer import DSATrainer

    cfg = _cfg(config, *SYNTHETIC, *opts)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    b = next(iter(DSATrainer.build_train_loader(cfg)))
    assert ("dsap" in b) == (cfg.MODEL.DSA.MODE != "none")
    opt = DSATrainer.build_optimizer(cfg, model)
    losses = model(b)
    total = sum(losses.values())
    assert torch.isfinite(total)
    opt.zero_grad()
    total.backward()
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    model.eval()
    test_batch = next(iter(DSATrainer.build_test_loader(cfg, cfg.DATASETS.TEST[0])))
    assert ("dsap" in test_batch) == (cfg.MODEL.DSA.TEST_FEATURE != "mf")
    with torch.no_grad():
        feats = model(test_batch)
    return cfg, losses, feats


@pytest.mark.parametrize("config", CONFIGS)
def test_every_config_trains_one_step_narrowed(config, datasets_root):
    """Each config's switches, loaders and losses on the synthetic data, with narrow layers (fast)."""
    cfg, losses, feats = _one_step(config, NARROW)
    n = {"both": 6, "global": 3, "local": 3}[cfg.MODEL.DSA.BRANCHES]
    assert len(losses) == n
    dim = {"both": 128, "global": 64, "local": 64}[cfg.MODEL.DSA.BRANCHES]
    assert feats.shape == (8, 64 if cfg.MODEL.DSA.TEST_FEATURE in ("fused_global", "fused_local") else dim)


@pytest.mark.slow
@pytest.mark.parametrize("config", [c for c in CONFIGS if c != "synthetic_dsa_tiny.yaml"])
def test_every_config_trains_one_step_at_paper_scale(config, datasets_root):
    """Each paper config as is (ResNet-50 MF, DSAG 2048/256, S = 32, 256×128), random init, one Adam step."""
    cfg, _, feats = _one_step(config, [])
    assert cfg.MODEL.DSA.DSAP_SIZE == 32 and cfg.MODEL.REID_BACKBONE.DEPTH == 50
    assert feats.shape[0] == 8 and feats.shape[1] in (2048, 4096)
