"""The configs of Munjal et al.'s Tables 1-3 rows (and Fig. 1's lambda_oim variants) build as a user trains them
and run one training step: random init (MODEL.REQUIRE_PRETRAINED False), 160-px images, 32 RoIs; a random
5532 x 256 (PRW: 483 x 256) .npy stands for the teacher LUT, as a QEEPS LUT would, and a random detector for the
KD_det teacher."""
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from reid2.config import get_cfg
from tests.helpers import REPO, image_input

# config -> (lambda_oim, KD_reid on, KD_det on, ResNet depth)
PAPER_ROWS = {
    "oim_r50_lambda03.yaml": (0.3, False, False, 50),
    "kd_det_oim_lambda03.yaml": (0.3, False, True, 50),
    "kd_oim_teacher_oim18.yaml": (0.1, True, False, 50),
    "kd_oim_teacher_qeeps50.yaml": (0.1, True, False, 50),
    "det_r18.yaml": (None, False, False, 18),
    "oim_r18_lambda06.yaml": (0.6, False, False, 18),
    "kd_det_oim_r18_lambda06.yaml": (0.6, False, True, 18),
    "kd_det_reid_oim_r18.yaml": (0.1, True, True, 18),
    "kd_oim_r18_teacher_oim18.yaml": (0.1, True, False, 18),
    "kd_oim_r18_teacher_qeeps50.yaml": (0.1, True, False, 18),
    "prw/kd_oim_r50.yaml": (0.1, True, False, 50),
    "prw/kd_det_oim_r50.yaml": (1.0, False, True, 50),
}


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Random detector checkpoints of each KD_det teacher config, made once."""
    folder, made = tmp_path_factory.mktemp("teachers"), {}

    def get(config):
        if config not in made:
            cfg = get_cfg()
            cfg.merge_from_file(str(REPO / config))
            cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
            torch.manual_seed(5)
            checkpointer = DetectionCheckpointer(build_model(cfg), save_dir=str(folder))
            name = config.replace("/", "_").replace(".yaml", "")
            checkpointer.save(name)
            made[config] = str(folder / f"{name}.pth")
        return made[config]

    return get


@pytest.mark.parametrize("name", sorted(PAPER_ROWS))
def test_paper_row_config_builds_and_trains_a_step(name, teachers, tmp_path):
    weight, kd_reid, kd_det, depth = PAPER_ROWS[name]
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs" / name))
    num_pids = cfg.MODEL.OIM.NUM_PIDS or 5532  # PRW configs say 483; CUHK-SYSU's comes from the dataset
    # Random init on purpose: the paper configs require ImageNet weights (MODEL.REQUIRE_PRETRAINED True).
    opts = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.REQUIRE_PRETRAINED", False,
            "MODEL.OIM.NUM_PIDS", num_pids, "DATASETS.TRAIN", "()",
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32]
    lut = None
    if cfg.MODEL.KD.REID.LUT_SOURCE:
        lut = np.random.default_rng(0).normal(size=(num_pids, 256)).astype(np.float32) * 2.0
        np.save(tmp_path / "teacher_lut.npy", lut)
        opts += ["MODEL.KD.REID.LUT_SOURCE", str(tmp_path / "teacher_lut.npy")]
    if cfg.MODEL.KD.TEACHER_CONFIG:
        opts += ["MODEL.KD.TEACHER_WEIGHTS", teachers(cfg.MODEL.KD.TEACHER_CONFIG)]
    cfg.merge_from_list(opts)
    assert cfg.MODEL.RESNETS.DEPTH == depth
    assert cfg.MODEL.PERSON_SEARCH.REID_ON == (weight is not None)
    if weight is not None:
        assert cfg.MODEL.OIM.LOSS_WEIGHT == weight
    assert bool(cfg.MODEL.KD.REID.LUT_SOURCE) == kd_reid
    if kd_det:  # the KD paper's KD_det: Eq. 1's per-image sum, unweighted soft loss, no T^2
        kd = cfg.MODEL.KD
        assert kd.HINT.ENABLED and kd.RPN.ENABLED and kd.RCN.ENABLED
        assert (kd.HINT.REDUCTION, kd.BG_WEIGHT, kd.SOFT_T2_SCALING) == ("sum_per_image", 1.0, False)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    inputs = [image_input(160, 224, boxes=((20, 20, 80, 150), (120, 30, 170, 150)), pids=(7, -1), seed=s)
              for s in (1, 2)]
    with EventStorage():
        losses = model(inputs)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    assert ("loss_oim" in losses) == (weight is not None)
    assert ({"loss_hint", "loss_rpn_bounded", "loss_box_bounded"} <= set(losses)) == kd_det
    sum(losses.values()).backward()
    if kd_reid:  # the teacher table, rows L2-normalised, frozen
        oim = model.roi_heads.oim_loss
        assert oim.fixed_lut
        expected = torch.from_numpy(lut / np.linalg.norm(lut, axis=1, keepdims=True))
        assert torch.allclose(oim.lut, expected, atol=1e-6)
