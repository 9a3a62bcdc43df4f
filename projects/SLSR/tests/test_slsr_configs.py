"""Every SLSR config builds as a user trains it and runs one stage-3 step on the synthetic data (random init:
MODEL.REQUIRE_PRETRAINED False), with a hand-made stages 1-2 (label sets, three generated images); the SLSR-vs-LSRO
configs differ in the generated images' label only; the DenseNet runs take the ResNet-50 run's stages 1-2."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from reid2.config import get_cfg
from reid2.projects.slsr.data import slsr_train_dicts
from reid2.projects.slsr.modeling import SLSRReID
from reid2.projects.slsr.trainer import SLSRTrainer
from tests.helpers import REPO

CONFIGS = REPO / "projects" / "SLSR" / "configs"
PAPER = sorted(p.name for p in CONFIGS.glob("*.yaml") if not p.name.startswith("Base-") and "synthetic" not in p.name)
# dataset prefix -> (generated images, train set, hold-out)
DATASETS = {"market1501": (12000, "market1501_train", True),
            "cuhk03_detected": (18000, "cuhk03_classic_detected_split0_train", True),
            "dukemtmc": (12000, "dukemtmc_train", True),
            "viper": (8000, "viper_split0_train", False)}


def _load(name, *opts):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / name))
    cfg.merge_from_list([str(x) for x in opts])
    return cfg


def test_paper_config_set():
    expected = {f"{d}_{m}{b}.yaml" for d in DATASETS for m in ("r50", "densenet121") for b in ("", "_baseline")}
    assert expected | {"market1501_r50_lsr.yaml", "market1501_r50_lsro.yaml"} == set(PAPER)
    for name in PAPER:
        cfg = _load(name)
        prefix = next(d for d in DATASETS if name.startswith(d))
        gen, train, hold = DATASETS[prefix]
        assert cfg.DATASETS.TRAIN == (train,) and cfg.SLSR.HOLDOUT_VAL == hold
        assert cfg.MODEL.REQUIRE_PRETRAINED and cfg.MODEL.META_ARCHITECTURE == "SLSRReID"
        assert cfg.SLSR.MEAN_PIXEL_CENTERING and cfg.SLSR.GAN.SPLIT == "equal"
        if cfg.SLSR.USE_GENERATED:
            assert cfg.SLSR.GAN.NUM_GENERATED == gen
            assert (cfg.SLSR.NOISE_LAYER.ENABLED, cfg.SLSR.NOISE_LAYER.TYPE) == (True, "feature")
        dense = "densenet121" in name
        assert cfg.MODEL.BACKBONE.NAME == ("build_reid_densenet_backbone" if dense else "build_reid_resnet_backbone")
        if dense and cfg.SLSR.USE_GENERATED:  # §4.2: the ResNet-50 run's clusters (and its GAN images)
            r50 = _load(f"{prefix}_r50.yaml")
            assert cfg.SLSR.CLUSTER.FROM_RUN == cfg.SLSR.GAN.FROM_RUN == r50.OUTPUT_DIR
            assert cfg.SLSR.GAN.dump() == r50.SLSR.GAN.dump().replace("FROM_RUN: ''", f"FROM_RUN: {r50.OUTPUT_DIR}")
        else:
            assert cfg.SLSR.CLUSTER.FROM_RUN == cfg.SLSR.GAN.FROM_RUN == ""


def _flat(cfg, prefix=""):
    out = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_slsr_and_lsro_differ_in_the_label_only():
    slsr, lsro = _flat(_load("market1501_r50.yaml")), _flat(_load("market1501_r50_lsro.yaml"))
    diff = {k for k in slsr if slsr[k] != lsro[k]}
    assert diff == {"SLSR.LOSS.MODE", "OUTPUT_DIR"}
    assert (slsr["SLSR.LOSS.MODE"], lsro["SLSR.LOSS.MODE"]) == ("slsr", "lsro")


@pytest.fixture(scope="module")
def fake_stages(tmp_path_factory, datasets_root):
    """Stages 1-2 of a run on the synthetic Market data: three clusters' label sets and three generated images."""
    work = tmp_path_factory.mktemp("slsr_work")
    (work / "stage1").mkdir()
    sets = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    (work / "stage1" / "clusters.json").write_text(json.dumps(
        {"num_classes": 12, "clusters": [{"cluster": c, "classes": s} for c, s in enumerate(sets)]}))
    (work / "stage2" / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    entries = []
    for c in range(3):
        name = f"images/gan_{c}_000000.jpg"
        Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(work / "stage2" / name)
        entries.append({"file_name": name, "cluster": c})
    (work / "stage2" / "manifest.json").write_text(json.dumps({"images": entries}))
    return work


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER)
def test_paper_config_runs_one_stage3_step(name, fake_stages, tmp_path):
    cfg = _load(name)
    opts = ["MODEL.REQUIRE_PRETRAINED", False, "MODEL.DEVICE", "cpu", "DATASETS.TRAIN", '("synthetic_market_train",)',
            "DATASETS.TEST", "()", "SOLVER.MAX_ITER", 1, "SLSR.EPOCHS", 0, "SOLVER.IMS_PER_BATCH", 4,
            "DATALOADER.NUM_WORKERS", 0, "TEST.IMS_PER_BATCH", 16, "OUTPUT_DIR", tmp_path / "out"]
    opts += (["SLSR.CLUSTER.FROM_RUN", fake_stages, "SLSR.GAN.FROM_RUN", fake_stages] if cfg.SLSR.CLUSTER.FROM_RUN
             else ["SLSR.WORK_DIR", fake_stages])
    cfg.merge_from_list([str(x) for x in opts])
    cfg.freeze()
    torch.manual_seed(0)
    trainer = SLSRTrainer(cfg)
    model = trainer.model
    assert isinstance(model, SLSRReID)
    feat = 1024 if "densenet" in name else 2048
    assert model.feat_dim == feat and model.classifier.weight.shape == (12, feat)
    if cfg.SLSR.USE_GENERATED:  # the paper's 2048x1x1 / 1024x1x1 layer
        assert model.noise_layer.weight.shape == (feat, feat)
        assert sum(d["pid"] < 0 for d in slsr_train_dicts(cfg)[0]) == 3
    else:
        assert model.noise_layer is None
    assert model.pixel_mean.abs().sum() > 0  # SLSR.MEAN_PIXEL_CENTERING: computed from the training images
    trainer.train()
    loss = trainer.storage.history("total_loss").latest()
    assert math.isfinite(loss) and loss > 0
