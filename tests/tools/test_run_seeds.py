"""tools/run_seeds.py: seeds → OUTPUT_DIR/seed<k>, mean ± std of the final evaluations, resumable."""
import json
import statistics

import pytest

from tests.helpers import REPO, load_tool

CFG = str(REPO / "configs/synthetic/bc_tiny.yaml")


def _write_eval(seed_dir, iteration, **metrics):
    seed_dir.mkdir(parents=True, exist_ok=True)
    with open(seed_dir / "metrics.json", "a") as f:
        f.write(json.dumps({"iteration": iteration, "total_loss": 1.0}) + "\n")
        f.write(json.dumps({"evaluation": True, "iteration": iteration, **metrics}) + "\n")


def test_finished_seeds_are_read_not_trained_and_summarised(tmp_path, monkeypatch):
    tool = load_tool("run_seeds")
    trained = []
    monkeypatch.setattr(tool, "train_seed", lambda args, seed, seed_dir: (
        trained.append(seed), _write_eval(tmp_path / f"seed{seed}", 50, **{"reid/mAP": 30.0, "reid/Rank-1": 40.0})))
    _write_eval(tmp_path / "seed0", 20, **{"reid/mAP": 99.0, "reid/Rank-1": 99.0})  # a periodic evaluation only:
    _write_eval(tmp_path / "seed0", 50, **{"reid/mAP": 10.0, "reid/Rank-1": 20.0})  # ... then the final one
    _write_eval(tmp_path / "seed1", 20, **{"reid/mAP": 99.0, "reid/Rank-1": 99.0})  # interrupted before the end
    summary = tool.main(["--config-file", CFG, "--seeds", "0", "1", "--metric", "reid/mAP",
                         "SOLVER.MAX_ITER", "50", "OUTPUT_DIR", str(tmp_path)])
    assert trained == [1]
    assert summary == {"reid/mAP": {"mean": 20.0, "std": pytest.approx(statistics.stdev([10.0, 30.0])),
                                    "values": [10.0, 30.0]}}
    written = json.loads((tmp_path / "seeds_summary.json").read_text())
    assert written["seeds"] == [0, 1] and written["metrics"]["reid/mAP"]["mean"] == 20.0
    # every metric of the final evaluation by default
    assert set(tool.main(["--config-file", CFG, "--seeds", "0", "1", "--", "SOLVER.MAX_ITER", "50",
                          "OUTPUT_DIR", str(tmp_path)])) == {"reid/mAP", "reid/Rank-1"}
    assert trained == [1]


def test_unknown_metric_and_bad_arguments_fail_clearly(tmp_path):
    tool = load_tool("run_seeds")
    _write_eval(tmp_path / "seed0", 50, **{"reid/mAP": 10.0})
    with pytest.raises(SystemExit, match="reid/mAp.*available.*reid/mAP"):
        tool.main(["--config-file", CFG, "--seeds", "0", "--metric", "reid/mAp",
                   "SOLVER.MAX_ITER", "50", "OUTPUT_DIR", str(tmp_path)])
    with pytest.raises(SystemExit, match="repeats"):
        tool.main(["--config-file", CFG, "--seeds", "0", "0", "OUTPUT_DIR", str(tmp_path)])
    with pytest.raises(SystemExit, match="KEY VALUE"):
        tool.main(["--config-file", CFG, "--seeds", "0", "SOLVER.MAX_ITER"])


@pytest.mark.slow
def test_two_seeds_train_evaluate_and_resume(datasets_root, tmp_path, capsys):
    tool = load_tool("run_seeds")
    opts = ["SOLVER.MAX_ITER", "4", "SOLVER.STEPS", "(3,)", "SOLVER.WARMUP_ITERS", "0", "SOLVER.IMS_PER_BATCH", "8",
            "MODEL.LOSSES.BATCH_CONTRASTIVE.CENTER_LR", "solver", "OUTPUT_DIR", str(tmp_path)]
    summary = tool.main(["--config-file", CFG, "--seeds", "3", "5", "--metric", "reid/mAP", "reid/Rank-1", *opts])
    from reid2.evaluation import read_last_evaluation

    finals = [read_last_evaluation(str(tmp_path / f"seed{s}")) for s in (3, 5)]
    assert [f["iteration"] for f in finals] == [4, 4]
    assert finals[0]["reid/mAP"] != finals[1]["reid/mAP"]  # two seeds, two models
    for m in ("reid/mAP", "reid/Rank-1"):
        values = [f[m] for f in finals]
        assert summary[m]["values"] == values and summary[m]["mean"] == pytest.approx(sum(values) / 2)
        assert summary[m]["std"] == pytest.approx(statistics.stdev(values))
    capsys.readouterr()
    assert tool.main(["--config-file", CFG, "--seeds", "3", "5", "--metric", "reid/mAP", "reid/Rank-1", *opts]) \
        == summary
    assert capsys.readouterr().out.count("finished earlier") == 2
