"""A downstream package extends reid2 through registries only, and runs via tools/train_net.py."""
import json
import textwrap

import cv2
import numpy as np

from tests.helpers import run_tool

EXT_MODULE = '''
"""A user's package: its own config key, dataset, backbone, loss and meta-architecture."""
import glob
import os

import torch
from torch import nn
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY, Backbone, ShapeSpec
from detectron2.config import CfgNode as CN
from reid2.config import register_config_adder
from reid2.modeling import REID_LOSS_REGISTRY, ReIDBaseline

ROOT = os.environ["MY_TOY_ROOT"]


@register_config_adder
def add_my_config(cfg):
    cfg.MY_EXT = CN({"NORM_WEIGHT": 0.01})


def _load(split):
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, split, "*.png"))):
        pid, cam, _ = os.path.basename(path).split("_")
        out.append({"file_name": path, "pid": int(pid), "camid": int(cam), "split": split,
                    "image_id": os.path.basename(path)})
    return out


DatasetCatalog.register("my_toy_train", lambda: _load("train"))
MetadataCatalog.get("my_toy_train").set(num_classes=4, evaluator_type="reid")
DatasetCatalog.register("my_toy_test", lambda: _load("query") + _load("gallery"))
MetadataCatalog.get("my_toy_test").set(evaluator_type="reid")


class MyBackbone(Backbone):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.BatchNorm2d(8), nn.ReLU())

    def forward(self, x):
        return {"mine": self.body(x)}

    def output_shape(self):
        return {"mine": ShapeSpec(channels=8, stride=4)}


@BACKBONE_REGISTRY.register()
def build_my_backbone(cfg, input_shape):
    return MyBackbone()


@REID_LOSS_REGISTRY.register()
class MyFeatureNormLoss(nn.Module):
    def __init__(self, cfg, num_classes, feat_dim):
        super().__init__()
        self.weight = cfg.MY_EXT.NORM_WEIGHT  # the package's own key

    def forward(self, out):
        return {"loss_my_norm": self.weight * out["pool_feat"].pow(2).sum(1).mean()}


@META_ARCH_REGISTRY.register()
class MyReIDNet(ReIDBaseline):
    """Same as the baseline; registered under the user's own name."""
'''

CONFIG = """
MY_EXT:
  NORM_WEIGHT: 0.0
MODEL:
  META_ARCHITECTURE: "MyReIDNet"
  REQUIRE_PRETRAINED: False  # a toy backbone with no ImageNet weights, on purpose
  BACKBONE:
    NAME: "build_my_backbone"
  LOSSES:
    NAMES: ["CrossEntropyLoss", "MyFeatureNormLoss"]
REID2:
  TRAINER: "ReIDTrainer"
  IMPORTS: ["my_reid_ext"]  # imported before this file is merged: MY_EXT above is the package's key
INPUT:
  REID:
    SIZE_TRAIN: [32, 16]
    SIZE_TEST: [32, 16]
    PADDING: 0
DATALOADER:
  NUM_WORKERS: 0
  NUM_INSTANCES: 2
SOLVER:
  IMS_PER_BATCH: 8
  BASE_LR: 0.01
  MAX_ITER: 6
  STEPS: (100,)
  WARMUP_ITERS: 0
  CHECKPOINT_PERIOD: 3
TEST:
  EVAL_PERIOD: 0
  IMS_PER_BATCH: 8
DATASETS:
  TRAIN: ("my_toy_train",)
  TEST: ("my_toy_test",)
"""


def _write_toy_images(root):
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 255, size=(4, 3))
    for split, cams in (("train", (0, 1)), ("query", (0,)), ("gallery", (1,))):
        (root / split).mkdir(parents=True)
        for pid in range(4):
            for cam in cams:
                for k in range(2):
                    img = np.full((32, 16, 3), colours[pid], np.uint8)
                    img = np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)
                    cv2.imwrite(str(root / split / f"{pid}_{cam}_{k}.png"), img)


def test_downstream_module_registers_and_trains(tmp_path):
    toy = tmp_path / "toy"
    _write_toy_images(toy)
    pkg = tmp_path / "ext"
    pkg.mkdir()
    (pkg / "my_reid_ext.py").write_text(textwrap.dedent(EXT_MODULE))
    cfg = tmp_path / "my.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "out"
    env = {"MY_TOY_ROOT": str(toy), "PYTHONPATH": str(pkg)}
    res = run_tool(["tools/train_net.py", "--config-file", str(cfg), "--import", "my_reid_ext",
                    "OUTPUT_DIR", str(out)], env_extra=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "model_final.pth").is_file()
    log = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    norms = [entry["loss_my_norm"] for entry in log if "loss_my_norm" in entry]
    assert norms and all(v == 0.0 for v in norms)  # MY_EXT.NORM_WEIGHT 0.0 from the YAML reached the loss

    # No --import: the YAML's REID2.IMPORTS alone brings the package (and its config key) in before the merge.
    res = run_tool(["tools/train_net.py", "--config-file", str(cfg), "--eval-only",
                    "MODEL.WEIGHTS", str(out / "model_final.pth"), "OUTPUT_DIR", str(out)],
                   env_extra=env)
    assert res.returncode == 0, res.stderr[-3000:]
    last = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()][-1]
    assert last["evaluation"] and 0.0 <= last["reid/mAP"] <= 100.0


def test_unknown_import_is_a_clear_error(tmp_path):
    res = run_tool(["tools/train_net.py", "--config-file", "configs/synthetic/reid_tiny.yaml",
                    "--import", "no_such_module_xyz", "OUTPUT_DIR", str(tmp_path)])
    assert res.returncode != 0 and "no_such_module_xyz" in res.stderr
