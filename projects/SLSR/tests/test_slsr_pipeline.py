"""The SLSR pipeline end to end on the tiny synthetic Market data, with an interrupted stage 2 that resumes."""
import csv
import json

import pytest

import reid2.projects.slsr.generation as generation
from reid2.config import get_cfg
from reid2.engine import resolve_device
from reid2.projects.slsr.data import slsr_train_dicts
from reid2.projects.slsr.paths import StageMismatchError
from reid2.projects.slsr.pipeline import run_pipeline, stage3_config
from tests.helpers import REPO, run_tool

CFG = REPO / "projects" / "SLSR" / "configs" / "synthetic_tiny.yaml"
TINY = ["SOLVER.MAX_ITER", 12, "SOLVER.IMS_PER_BATCH", 16, "SOLVER.CHECKPOINT_PERIOD", 6,
        "SLSR.CLUSTER.CNN_EPOCHS", 2, "SLSR.CLUSTER.N_INIT", 1, "SLSR.GAN.IMAGE_SIZE", 16, "SLSR.GAN.GF_DIM", 8,
        "SLSR.GAN.DF_DIM", 8, "SLSR.GAN.MAX_ITERS", 3, "SLSR.GAN.BATCH_SIZE", 16, "SLSR.GAN.NUM_GENERATED", 30,
        "SLSR.GAN.GRID_SIZE", 4, "REID2.LOG_PERIOD", 4, "MODEL.REID_BACKBONE.WIDTH", 8]


def _cfg(out, *extra):
    cfg = get_cfg()
    cfg.merge_from_file(str(CFG))
    cfg.merge_from_list([str(x) for x in [*TINY, "OUTPUT_DIR", out, *extra]])
    resolve_device(cfg)
    cfg.freeze()
    return cfg


def test_pipeline_interrupted_and_resumed(datasets_root, tmp_path, monkeypatch):
    out = tmp_path / "slsr"
    cfg = _cfg(out)
    s1, s2 = out / "stage1", out / "stage2"

    # Interrupt stage 2 after cluster 1's GAN is trained but before it is marked finished.
    real_marker = generation.write_marker

    def crash(folder, settings, **info):
        if folder.endswith("gan_c1"):
            raise KeyboardInterrupt("simulated crash")
        return real_marker(folder, settings, **info)

    monkeypatch.setattr(generation, "write_marker", crash)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg)
    monkeypatch.undo()
    assert (s1 / "DONE.json").is_file() and (s1 / "cnn" / "model_final.pth").is_file()
    assert (s2 / "gan_c0" / "DONE.json").is_file()
    assert (s2 / "gan_c1" / "checkpoint.pth").is_file() and not (s2 / "gan_c1" / "DONE.json").exists()
    assert not (s2 / "DONE.json").exists() and not (s2 / "manifest.json").exists()
    assert not (out / "stage3").exists()

    # Stage 1 outputs: clusters, label sets, silhouette table for k = 2..5 and its plot.
    clusters = json.loads((s1 / "clusters.json").read_text())
    assert clusters["k"] == 3 and clusters["num_classes"] == 12 and clusters["num_images"] == 109
    assert sum(c["num_images"] for c in clusters["clusters"]) == 109
    with open(s1 / "assignments.csv") as f:
        rows = list(csv.DictReader(f))
    for c in clusters["clusters"]:
        ids = sorted({int(r["pid"]) for r in rows if int(r["cluster"]) == c["cluster"]})
        assert c["classes"] == ids
    with open(s1 / "silhouette.csv") as f:
        sil = list(csv.DictReader(f))
    assert [int(r["k"]) for r in sil] == [2, 3, 4, 5]
    assert all(-1 <= float(r["silhouette"]) <= 1 for r in sil)
    assert (s1 / "silhouette.png").stat().st_size > 1000

    stamp1 = (s1 / "features.npy").stat().st_mtime_ns
    stamp_gan0 = (s2 / "gan_c0" / "G.pth").stat().st_mtime_ns
    results = run_pipeline(cfg)
    assert (s1 / "features.npy").stat().st_mtime_ns == stamp1  # stage 1 skipped
    assert (s2 / "gan_c0" / "G.pth").stat().st_mtime_ns == stamp_gan0  # finished cluster not retrained
    assert json.loads((s2 / "gan_c1" / "DONE.json").read_text())["iterations"] == 3  # resumed, not restarted
    manifest = json.loads((s2 / "manifest.json").read_text())
    sizes = [c["num_images"] for c in clusters["clusters"]]
    assert manifest["counts"] == [10, 10, 10] and len(manifest["images"]) == 30  # SPLIT equal (the default)
    assert sum(sizes) == 109 and manifest["cluster_sizes"] == sizes
    for e in manifest["images"]:
        assert (s2 / e["file_name"]).is_file()
    assert [sum(e["cluster"] == c for e in manifest["images"]) for c in range(3)] == manifest["counts"]
    assert all((s2 / f"samples_cluster{c}.png").is_file() for c in range(3))

    assert 0 <= results["reid/mAP"] <= 100 and 0 <= results["reid/Rank-1"] <= 100
    assert (out / "stage3" / "DONE.json").is_file()
    metrics = [json.loads(x) for x in (out / "stage3" / "metrics.json").read_text().splitlines() if x.strip()]
    assert any("slsr_val/top1" in m for m in metrics)

    # Stage-3 data: real images minus one validation image per identity, plus the generated ones (pid < 0).
    train, val = slsr_train_dicts(stage3_config(cfg))
    assert len(val) == 12 and sum(d["pid"] < 0 for d in train) == 30 and len(train) == 109 - 12 + 30

    # Everything complete: a third run skips all stages and returns the stored results.
    again = run_pipeline(cfg)
    assert again == results
    # A finished stage is never silently reused with other settings.
    with pytest.raises(StageMismatchError, match="stage1"):
        run_pipeline(_cfg(out, "SLSR.NUM_CLUSTERS", 2))


def test_half_written_stage_is_redone(datasets_root, tmp_path):
    """A stage whose marker is missing (a crash while writing it) is recomputed from scratch."""
    from reid2.projects.slsr.clustering import run_stage1

    out = tmp_path / "slsr"
    cfg = _cfg(out, "SLSR.CLUSTER.SILHOUETTE_KS", "[2]")
    run_stage1(cfg)
    s1 = out / "stage1"
    (s1 / "DONE.json").unlink()
    (s1 / "clusters.json").write_text("{truncated")
    run_stage1(cfg)
    assert json.loads((s1 / "clusters.json").read_text())["k"] == 3 and (s1 / "DONE.json").is_file()


@pytest.mark.slow
def test_tools_train_net_runs_stage3(datasets_root, tmp_path):
    """``tools/train_net.py`` trains stage 3 from the pipeline's stage 1-2 outputs (SLSR.WORK_DIR)."""
    work = tmp_path / "work"
    env = {"REID2_DATASETS": str(datasets_root), "OMP_NUM_THREADS": "1"}
    opts = [str(x) for x in TINY]
    res = run_tool(["projects/SLSR/tools/train_net.py", "--config-file", str(CFG), "--stages", "stage1,stage2",
                    *opts, "OUTPUT_DIR", str(work)], env_extra=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert not (work / "stage3").exists()
    res = run_tool(["tools/train_net.py", "--config-file", str(CFG), *opts, "SLSR.WORK_DIR", str(work),
                    "OUTPUT_DIR", str(tmp_path / "tools_run")], env_extra=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "30 generated" in res.stderr + res.stdout
    assert (tmp_path / "tools_run" / "model_final.pth").is_file()


@pytest.mark.slow
def test_pipeline_sigkilled_in_stage3_resumes_bit_identical(datasets_root, tmp_path):
    """projects/SLSR/tools/train_net.py killed (SIGKILL) inside stage 3 and run again with --resume: stages 1-2 are
    skipped and stage 3 ends with the uninterrupted pipeline's checkpoint, tensor by tensor."""
    from tests.helpers import assert_same_checkpoint, kill_and_resume

    env = {"REID2_DATASETS": str(datasets_root), "OMP_NUM_THREADS": "1"}
    args = ["projects/SLSR/tools/train_net.py", "--config-file", "projects/SLSR/configs/synthetic_tiny.yaml",
            *[str(x) for x in TINY],
            "SLSR.CLUSTER.SILHOUETTE_KS", "[2]", "DATASETS.TEST", "()"]
    res = run_tool([*args, "OUTPUT_DIR", str(tmp_path / "full")], env_extra=env)
    assert res.returncode == 0, res.stderr[-3000:]
    kill_and_resume(args, tmp_path / "killed", "stage3/model_0000005", env)
    assert_same_checkpoint(tmp_path / "full" / "stage3" / "model_final.pth",
                           tmp_path / "killed" / "stage3" / "model_final.pth")
