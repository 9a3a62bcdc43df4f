"""The batch-contrastive paper configs (and their softmax baselines) build and train one step on the synthetic data."""
import pytest
import torch

from tests.helpers import REPO

PAPER_CONFIGS = ["market1501/bc_r50.yaml", "market1501/bc_softmax_r50.yaml", "dukemtmc/bc_r50.yaml",
                 "dukemtmc/bc_softmax_r50.yaml"]


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_bc_paper_config_trains_one_step_on_synthetic_data(name, datasets_root, tmp_path):
    from reid2.config import load_config
    from reid2.engine import ReIDTrainer, resolve_device
    from reid2.utils.modules import unwrap_model

    # Random init (PRETRAINED ""), the paper's everything else; small images and batch for the CPU.
    cfg = load_config(str(REPO / "configs" / name), [
        "DATASETS.TRAIN", "('synthetic_market_train',)", "DATASETS.TEST", "()", "INPUT.REID.SIZE_TRAIN", "[64, 32]",
        "SOLVER.IMS_PER_BATCH", "8", "SOLVER.MAX_ITER", "1", "DATALOADER.NUM_WORKERS", "0", "REID2.DEVICE", "cpu",
        "OUTPUT_DIR", str(tmp_path)])
    resolve_device(cfg)
    trainer = ReIDTrainer(cfg)
    losses = unwrap_model(trainer.model).losses
    bc = losses["BatchContrastiveLoss"] if "BatchContrastiveLoss" in losses else None
    assert (bc is not None) == ("softmax" not in name)
    trainer.train()
    assert (tmp_path / "model_final.pth").exists()
    if bc is not None:  # the paper's settings: Eq. 8 backward, centers stepped with the solver's lr (0.01)
        assert bc.gradient == "eq8" and bc.center_lr == "solver" and bc.solver_lr == pytest.approx(0.01)
        assert torch.count_nonzero(bc.center.centers.abs().sum(1)) > 0  # the classes of the batch moved
