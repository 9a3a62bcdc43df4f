"""--resume after a SIGKILL ends bit-identical to the uninterrupted run (fixed SEED, 0 workers): same batches,
same augmentation / dropout draws, same optimizer, OIM lookup table, queue and pointer."""
import pytest
import torch

from tests.helpers import REPO, assert_same_checkpoint, kill_and_resume, run_tool

REID = ["tools/train_net.py", "--config-file", "configs/synthetic/reid_tiny.yaml", "SOLVER.MAX_ITER", "10",
        "SOLVER.IMS_PER_BATCH", "16", "SOLVER.CHECKPOINT_PERIOD", "3", "SOLVER.WARMUP_ITERS", "2",
        "SOLVER.STEPS", "(7,)", "TEST.EVAL_PERIOD", "4", "REID2.LOG_PERIOD", "1", "MODEL.REID_BACKBONE.WIDTH", "8"]
PS = ["SOLVER.MAX_ITER", "6", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.WARMUP_ITERS",
      "2", "DATASETS.TEST", "()", "MODEL.PERSON_SEARCH.TINY_WIDTH", "8", "REID2.LOG_PERIOD", "1"]


def _env(datasets_root):
    return {"REID2_DATASETS": str(datasets_root), "OMP_NUM_THREADS": "1"}


def test_reid_killed_and_resumed_is_bit_identical(datasets_root, tmp_path):
    env = _env(datasets_root)
    res = run_tool([*REID, "OUTPUT_DIR", str(tmp_path / "full")], env_extra=env)
    assert res.returncode == 0, res.stderr[-3000:]
    res = kill_and_resume(REID, tmp_path / "killed", "model_0000005", env)
    assert "Starting training from iteration 6" in res.stderr + res.stdout
    assert_same_checkpoint(tmp_path / "full" / "model_final.pth", tmp_path / "killed" / "model_final.pth")


def _cfg(config, *opts):
    from reid2.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / config))
    cfg.merge_from_list([str(x) for x in opts])
    return cfg


def _names(batch):
    return batch["file_names"] if isinstance(batch, dict) else [d["file_name"] for d in batch]


@pytest.mark.parametrize("kind", ["reid", "person_search"])
def test_batches_resume_with_workers(datasets_root, kind):
    """With 2 DataLoader workers a loader started at batch 3 yields the batches 3.. of an uninterrupted one."""
    from reid2.data.build import build_reid_train_loader
    from reid2.data.person_search_mapper import build_person_search_train_loader

    if kind == "reid":
        cfg, build = _cfg("configs/synthetic/reid_tiny.yaml", "SOLVER.IMS_PER_BATCH", 16), build_reid_train_loader
    else:
        cfg = _cfg("configs/synthetic/oim_tiny.yaml", "SOLVER.IMS_PER_BATCH", 2)
        build = build_person_search_train_loader
    cfg.DATALOADER.NUM_WORKERS = 2

    def batches(start, n):
        import numpy as np

        np.random.seed(0)  # the person-search sampler's seed comes from NumPy, as in Detectron2
        loader = build(cfg)
        loader.batch_sampler.start_at(start)
        it = iter(loader)
        return [_names(next(it)) for _ in range(n)]

    full = batches(0, 6)
    assert len({tuple(b) for b in full}) == 6
    assert batches(3, 3) == full[3:]


def test_person_search_and_kd_killed_and_resumed_are_bit_identical(datasets_root, tmp_path):
    env = _env(datasets_root)
    oim = ["tools/train_net.py", "--config-file", "configs/synthetic/oim_tiny.yaml", *PS]
    res = run_tool([*oim, "OUTPUT_DIR", str(tmp_path / "oim_full")], env_extra=env)
    assert res.returncode == 0, res.stderr[-3000:]
    kill_and_resume(oim, tmp_path / "oim_killed", "model_0000003", env)
    full = tmp_path / "oim_full" / "model_final.pth"
    assert_same_checkpoint(full, tmp_path / "oim_killed" / "model_final.pth")
    model = torch.load(full, weights_only=False)["model"]
    assert any("lut" in k for k in model) and any("queue" in k for k in model)  # compared above

    kd = ["tools/train_net.py", "--config-file", "configs/synthetic/kd_oim_tiny.yaml", *PS,
          "MODEL.KD.REID.LUT_SOURCE", str(full)]
    res = run_tool([*kd, "OUTPUT_DIR", str(tmp_path / "kd_full")], env_extra=env)
    assert res.returncode == 0, res.stderr[-3000:]
    kill_and_resume(kd, tmp_path / "kd_killed", "model_0000001", env)
    assert_same_checkpoint(tmp_path / "kd_full" / "model_final.pth", tmp_path / "kd_killed" / "model_final.pth")
