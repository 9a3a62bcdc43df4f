"""The three SLSR stages in order, each skipped when complete (``DONE.json``) and resumed when not.

    stage 1  <work>/stage1   clustering CNN, features, k-means, silhouette table/plot, clusters.json
    stage 2  <work>/stage2   one DCGAN per cluster, generated images + manifest.json, sample grids
    stage 3  <work>/stage3   re-ID training with SLSR (Detectron2 run: checkpoints, metrics.json)

With ``SLSR.USE_GENERATED False`` (the plain and LSR baselines) stages 1-2 are not needed and skipped.
"""
import logging
import os
import shutil

from detectron2.utils.env import seed_all_rng

from reid2.evaluation import flatten_results

from .clustering import run_stage1
from .generation import run_stage2
from .paths import read_marker, stage_done, stage_paths, write_marker

__all__ = ["STAGES", "run_pipeline", "stage3_config", "run_stage3", "redo"]

logger = logging.getLogger("reid2.slsr")
STAGES = ("stage1", "stage2", "stage3")


def stage3_config(cfg):
    paths = stage_paths(cfg)
    c = cfg.clone()
    c.defrost()
    c.SLSR.WORK_DIR = paths.work
    c.OUTPUT_DIR = paths.stage3
    c.REID2.TRAINER = "SLSRTrainer"
    c.freeze()
    return c


def _stage3_settings(cfg3):
    keep = cfg3.clone()
    keep.defrost()
    keep.REID2.DEVICE = "auto"
    keep.MODEL.DEVICE = "cpu"  # the device does not change what stage 3 computes
    return {"config": keep.dump()}


def run_stage3(cfg, force=False):
    """Train (resuming from the last checkpoint) and evaluate; returns the flat results {"reid/mAP": ..}."""
    from .trainer import SLSRTrainer

    cfg3 = stage3_config(cfg)
    out = cfg3.OUTPUT_DIR
    settings = _stage3_settings(cfg3)
    if stage_done(out, settings, "stage3", force):
        return read_marker(out).get("results", {})
    if cfg3.SEED >= 0:  # the same initialisation whether or not stages 1-2 ran in this process
        seed_all_rng(cfg3.SEED + 3)
    trainer = SLSRTrainer(cfg3)
    trainer.resume_or_load(resume=True)
    trainer.train()
    results = getattr(trainer, "_last_eval_results", None) or SLSRTrainer.test(trainer.cfg, trainer.model)
    results = {k: float(v) for k, v in flatten_results(results).items()}
    write_marker(out, settings, results=results)
    return results


def redo(cfg, stage):
    """Delete ``stage``'s outputs and those of the stages after it."""
    if stage not in STAGES:
        raise ValueError(f"--redo takes one of {STAGES}, got {stage!r}")
    paths = stage_paths(cfg)
    for s in STAGES[STAGES.index(stage):]:
        folder = getattr(paths, s)
        if not paths.owns(s):
            logger.info("SLSR: %s is another run's (SLSR.*.FROM_RUN), not removed", folder)
            continue
        if os.path.isdir(folder):
            logger.info("SLSR: removing %s (--redo %s)", folder, stage)
            shutil.rmtree(folder)


def run_pipeline(cfg, stages=STAGES):
    """Run the selected stages in order; returns stage 3's results (or None)."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; expected {STAGES}")
    if cfg.SLSR.USE_GENERATED:
        if "stage1" in stages:
            run_stage1(cfg)
        if "stage2" in stages:
            run_stage2(cfg)
    else:
        logger.info("SLSR: SLSR.USE_GENERATED is False (baseline / LSR): stages 1-2 not needed")
    if "stage3" in stages:
        return run_stage3(cfg)
    return None
