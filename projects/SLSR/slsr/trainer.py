"""``SLSRTrainer`` (``REID2.TRAINER: SLSRTrainer``): stage 3, re-ID training on real + generated images.

Works from ``tools/train_net.py`` too once stages 1-2 exist under ``SLSR.WORK_DIR``. The model is the
registered ``ReIDBaseline`` with ``MODEL.LOSSES.NAMES: ["SLSRLoss"]``; after training the held-out
validation images' classification top-1 is logged and appended to ``metrics.json`` (``slsr_val/top1``).
"""
import logging
import math

import torch

from reid2.data import build_reid_test_loader, build_reid_train_loader
from reid2.engine import TRAINER_REGISTRY, ReIDTrainer
from reid2.evaluation import compute_features, write_metrics_json
from reid2.utils.modules import unwrap_model

from .data import mean_pixel, slsr_train_dicts

__all__ = ["SLSRTrainer", "validation_top1"]

logger = logging.getLogger("reid2.slsr")


def _check(cfg):
    if cfg.SLSR.USE_GENERATED and cfg.DATALOADER.SAMPLER_TRAIN != "RandomSampler":
        raise ValueError("SLSR with generated images needs DATALOADER.SAMPLER_TRAIN 'RandomSampler' (random batches, "
                         "as the paper); the identity sampler would treat each cluster as one identity")
    if "SLSRLoss" not in cfg.MODEL.LOSSES.NAMES and cfg.SLSR.USE_GENERATED:
        raise ValueError("SLSR.USE_GENERATED needs MODEL.LOSSES.NAMES to contain 'SLSRLoss' (generated images have "
                         "no identity for the other losses)")
    n = cfg.SLSR.NOISE_LAYER
    needs_model = [k for k, on in (("SLSR.NOISE_LAYER.TYPE feature", n.ENABLED and n.TYPE == "feature"),
                                   ("SLSR.MEAN_PIXEL_CENTERING", cfg.SLSR.MEAN_PIXEL_CENTERING)) if on]
    if needs_model and cfg.MODEL.META_ARCHITECTURE != "SLSRReID":
        raise ValueError(f"{' and '.join(needs_model)} need(s) MODEL.META_ARCHITECTURE 'SLSRReID', got "
                         f"{cfg.MODEL.META_ARCHITECTURE!r}")


def validation_top1(cfg, model, val_dicts):
    """Classification top-1 (%) of the held-out real images (test transforms)."""
    if not val_dicts:
        return None
    model, pids = unwrap_model(model), []

    def images():  # the loader's batches, keeping their pids
        for batch in build_reid_test_loader(cfg, None, dicts=val_dicts):
            pids.append(batch["targets"])
            yield batch["images"]

    logits = compute_features(model, images(), lambda x: model.head(model.pooled_features(x))["logits"])
    return 100.0 * int((logits.argmax(1) == torch.cat(pids).numpy()).sum()) / len(val_dicts)


@TRAINER_REGISTRY.register()
class SLSRTrainer(ReIDTrainer):
    def __init__(self, cfg):
        _check(cfg)
        train, val = slsr_train_dicts(cfg)
        if cfg.SLSR.EPOCHS > 0:
            cfg = cfg.clone()
            cfg.defrost()
            cfg.SOLVER.MAX_ITER = cfg.SLSR.EPOCHS * math.ceil(len(train) / cfg.SOLVER.IMS_PER_BATCH)
            cfg.freeze()
        logger.info("SLSR stage 3: %d training images (%d generated), %d held-out validation images, %d iterations",
                    len(train), sum(d["pid"] < 0 for d in train), len(val), cfg.SOLVER.MAX_ITER)
        super().__init__(cfg)
        if cfg.SLSR.MEAN_PIXEL_CENTERING:  # a checkpoint loaded later (resume) brings its own, the same value
            mean = mean_pixel(cfg, [d for d in train if d["pid"] >= 0])
            unwrap_model(self.model).pixel_mean.copy_(mean)
            logger.info("SLSR: mean pixel of the real training images (normalised) %s subtracted from every input",
                        [round(float(v), 4) for v in mean])

    @classmethod
    def build_train_loader(cls, cfg):
        return build_reid_train_loader(cfg, dicts=slsr_train_dicts(cfg)[0])

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        results = super().test(cfg, model, evaluators)
        top1 = validation_top1(cfg, model, slsr_train_dicts(cfg)[1]) if cfg.SLSR.HOLDOUT_VAL else None
        if top1 is not None:
            logger.info("SLSR validation (one held-out image per identity): top-1 %.2f", top1)
            write_metrics_json(cfg.OUTPUT_DIR, {"slsr_val": {"top1": top1}})
        return results
