"""tools/train_net.py end to end on the tiny synthetic Market data: train, resume, eval-only."""
import json
import math

from tests.helpers import run_tool

CFG = "configs/synthetic/reid_tiny.yaml"
SMALL = ["SOLVER.IMS_PER_BATCH", "16", "REID2.LOG_PERIOD", "5", "SOLVER.WARMUP_ITERS", "0",
         "SOLVER.CHECKPOINT_PERIOD", "10", "SOLVER.BASE_LR", "0.003"]


def _log(out):
    return [json.loads(line) for line in (out / "metrics.json").read_text().splitlines() if line.strip()]


def test_train_resume_and_eval_only(datasets_root, tmp_path):
    out = tmp_path / "run"
    env = {"REID2_DATASETS": str(datasets_root)}
    res = run_tool(["tools/train_net.py", "--config-file", CFG, "SOLVER.MAX_ITER", "40", *SMALL,
                    "OUTPUT_DIR", str(out)], env_extra=env)
    assert res.returncode == 0, res.stderr[-4000:]
    losses = [e["total_loss"] for e in _log(out) if "total_loss" in e]
    assert len(losses) >= 6 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses  # decreasing
    assert {"model_0000009.pth", "model_final.pth", "last_checkpoint"} <= {p.name for p in out.iterdir()}
    import torch

    saved = torch.load(out / "model_final.pth", weights_only=False)["trainer"]
    assert saved["iteration"] == 39
    assert saved["_trainer"]["optimizer"]["state"], "the optimizer state (momentum / moments) must be checkpointed"

    # --resume continues at iteration 40 and runs to the new MAX_ITER.
    res = run_tool(["tools/train_net.py", "--config-file", CFG, "--resume", "SOLVER.MAX_ITER", "50",
                    *SMALL, "OUTPUT_DIR", str(out)], env_extra=env)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "Starting training from iteration 40" in res.stderr + res.stdout
    iters = [e["iteration"] for e in _log(out) if "total_loss" in e]
    assert iters == sorted(iters) and iters[-1] == 49
    # the evaluation after training is stamped as Detectron2 logs it: at MAX_ITER
    assert [e["iteration"] for e in _log(out) if e.get("evaluation")][-1] == 50

    res = run_tool(["tools/train_net.py", "--config-file", CFG, "--eval-only", "MODEL.WEIGHTS",
                    str(out / "model_final.pth"), "OUTPUT_DIR", str(out)], env_extra=env)
    assert res.returncode == 0, res.stderr[-4000:]
    last = _log(out)[-1]
    assert last["evaluation"] is True and last["iteration"] is None  # --eval-only: no training iteration
    for key in ("reid/Rank-1", "reid/Rank-5", "reid/mAP", "reid/mINP"):
        assert 0.0 <= last[key] <= 100.0
    assert "Rank-1" in res.stderr + res.stdout  # the printed table
