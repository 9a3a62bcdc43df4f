"""A loss far above its running level stops training with a message naming the term and the iteration."""
import types

import pytest
from detectron2.utils.events import EventStorage

from reid2.engine.hooks import DivergenceStop, TrainingDiverged
from tests.helpers import run_tool


def _run(hook, steps):
    """Feed ``steps`` (dicts of losses per iteration) to the hook through a real EventStorage."""
    with EventStorage(0) as storage:
        hook.trainer = types.SimpleNamespace(storage=storage, iter=0)
        for it, losses in enumerate(steps):
            storage.iter = hook.trainer.iter = it
            storage.put_scalars(**losses)
            hook.after_step()


def test_stops_on_the_term_that_explodes():
    hook = DivergenceStop(factor=10, warmup=2, momentum=0.5)
    steps = [{"total_loss": 2.0, "loss_cls": 1.0, "loss_box": 1.0}] * 4
    steps.append({"total_loss": 16.0, "loss_cls": 1.0, "loss_box": 15.0})  # box level 1.0: 15 > 10 x 1.0
    with pytest.raises(TrainingDiverged, match=r"iteration 4: loss_box = 15 is more than 10 x its running level 1"):
        _run(hook, steps)


def test_tolerates_a_small_term_growing_and_the_warmup():
    # iteration 1 is 50x iteration 0 but within the warm-up (level 0.9 x 0.1 + 0.1 x 5 = 0.59 after it)
    steps = [{"total_loss": 0.1}, {"total_loss": 5.0}, {"total_loss": 5.8}]
    _run(DivergenceStop(factor=10, warmup=2), steps)
    with pytest.raises(TrainingDiverged, match="iteration 1: total_loss"):
        _run(DivergenceStop(factor=10, warmup=0), steps)
    # a near-zero term growing 100x stays below the floor (10% of the total loss's level, 0.5 here)
    steps = [{"total_loss": 5.0, "loss_small": 0.001}, {"total_loss": 5.0, "loss_small": 0.1},
             {"total_loss": 5.0, "loss_small": 4.9}]
    _run(DivergenceStop(factor=10), steps)
    with pytest.raises(ValueError, match="DIVERGENCE_FACTOR"):
        DivergenceStop(factor=1)


def test_huge_learning_rate_stops_reid_tiny(datasets_root, tmp_path):
    """Without the check the loss reaches ~1e13 and the run trains to the end, saves and evaluates."""
    res = run_tool(["tools/train_net.py", "--config-file", "configs/synthetic/reid_tiny.yaml", "SOLVER.BASE_LR", "1e6",
                    "SOLVER.MAX_ITER", "40", "SOLVER.IMS_PER_BATCH", "16", "MODEL.REID_BACKBONE.WIDTH", "8",
                    "OUTPUT_DIR", str(tmp_path)], env_extra={"REID2_DATASETS": str(datasets_root)})
    assert res.returncode != 0
    log = res.stderr + res.stdout
    assert "TrainingDiverged: training diverged at iteration" in log and "SOLVER.DIVERGENCE_FACTOR" in log
    assert "loss" in log.split("training diverged at iteration")[1].split("\n")[0]
    assert not (tmp_path / "model_final.pth").exists()
