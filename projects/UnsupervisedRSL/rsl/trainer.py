"""``RSLTrainer`` and ``RoundHook``: the unsupervised rounds of RSL / PUL as a Detectron2 hook.

A round's length is fixed (``RSL.ITERS_PER_ROUND``) or counted in epochs of the images it trains on
(``RSL.EPOCHS_PER_ROUND``: known only once the round's labels are), so each round starts where the previous one
ended. At the first step of a round the hook extracts the training set's features with the current model,
computes the round's labels (:mod:`rsl.labels`, from features and cameras only), re-initialises the classifier
and the optimizer state (and, for PUL, the whole model to the starting weights), and installs the labels in the
loader.
At the last step of a round it evaluates (``RSL.EVAL_EACH_ROUND``), appends the round's record to
``OUTPUT_DIR/rsl_rounds.json`` and saves ``model_round<r>.pth``.

The labels of the current round, its first and end iterations and the per-round records are the hook's
``state_dict``, so they are in every checkpoint: a run resumed inside a round continues with that round's labels
(not re-clustered from a different model) and a run resumed at a round boundary clusters with the checkpointed model.
"""
import json
import logging
import math
import os
import time

import numpy as np
import torch
from detectron2.engine import HookBase, hooks
from detectron2.engine.defaults import verify_results
from detectron2.utils import comm
from detectron2.utils.events import EventStorage

from reid2.data import get_reid_train_dicts
from reid2.engine import TRAINER_REGISTRY, AtomicCheckpointer, ReIDTrainer
from reid2.evaluation import flatten_results
from reid2.utils.modules import unwrap_model

from .data import RoundLoader, label_free_records
from .labels import RoundLabels, cluster_quality, pul_labels, rsl_labels

__all__ = ["RSLTrainer", "RoundHook", "compute_round_labels", "max_iterations", "report_round_quality", "round_length"]

logger = logging.getLogger("reid2.rsl")


def compute_round_labels(cfg, feats, camids, round_index=0) -> RoundLabels:
    """The labels of one round from the training features and camera ids (nothing else)."""
    c = cfg.RSL
    seed = (cfg.SEED if cfg.SEED >= 0 else 0) + 1000 * round_index
    if c.METHOD == "rsl":
        return rsl_labels(feats, camids, c.NUM_CLUSTERS, camera_clusters=c.CAMERA_CLUSTERS, lam=c.LAMBDA,
                          temperature=c.TEMPERATURE, centers=c.CENTERS, select=c.SELECT, recluster=c.RECLUSTER,
                          normalize=c.KMEANS_NORMALIZE, seed=seed, n_init=c.KMEANS_N_INIT,
                          soft_centers_normalize=c.SOFT_CENTERS_NORMALIZE)
    if c.METHOD == "pul":
        return pul_labels(feats, c.NUM_CLUSTERS, lam=c.LAMBDA, normalize=c.KMEANS_NORMALIZE, seed=seed,
                          n_init=c.KMEANS_N_INIT)
    raise ValueError(f"RSL.METHOD must be 'rsl' or 'pul', got {c.METHOD!r}")


def report_round_quality(labels: RoundLabels, true_pids) -> dict:
    """Purity / NMI of the reliable labels and accuracy of the soft labels against true identities.

    Reporting only: the soft label of an image is right when its most probable cluster's majority
    identity (among the reliable images) is the image's identity.
    """
    if true_pids is None:
        return {}
    true = np.asarray(true_pids)
    rel = labels.reliable
    out = cluster_quality(labels.labels, true, rel)
    soft_rows = np.flatnonzero(labels.soft.any(1) & ~rel)
    if len(soft_rows) and rel.any():
        majority = {c: np.bincount(np.unique(true, return_inverse=True)[1][rel & (labels.labels == c)]).argmax()
                    for c in np.unique(labels.labels[rel])}
        ids = np.unique(true)
        hits = [c in majority and ids[majority[c]] == true[i]
                for i, c in zip(soft_rows, labels.soft[soft_rows].argmax(1))]
        out["soft_acc"] = float(np.mean(hits))
    return out


def round_length(cfg, num_used: int) -> int:
    """Iterations of a round that trains on ``num_used`` images: ``RSL.EPOCHS_PER_ROUND`` epochs of them at
    ``SOLVER.IMS_PER_BATCH`` (rounded up), or ``RSL.ITERS_PER_ROUND`` when EPOCHS_PER_ROUND is 0."""
    epochs, iters = int(cfg.RSL.EPOCHS_PER_ROUND), int(cfg.RSL.ITERS_PER_ROUND)
    if epochs < 0 or (epochs == 0 and iters < 1):
        raise ValueError(f"RSL.EPOCHS_PER_ROUND must be > 0 (epochs of the round's training images) or 0 with "
                         f"RSL.ITERS_PER_ROUND >= 1 (fixed iterations); got {epochs} and {iters}")
    if epochs == 0:
        return iters
    return max(1, math.ceil(epochs * num_used / cfg.SOLVER.IMS_PER_BATCH))


def max_iterations(cfg, num_images: int) -> int:
    """SOLVER.MAX_ITER of a run: exact for fixed rounds; for epoch-counted rounds the bound reached when every
    round trains on all ``num_images`` images (the run ends with its last round, usually earlier)."""
    return cfg.RSL.ROUNDS * round_length(cfg, num_images)


class RoundHook(HookBase):
    """Starts each round (labels, classifier, optimizer, PUL's reset) and closes it (eval, record, save)."""

    def __init__(self, cfg, loader: RoundLoader, true_pids=None, initial_state=None):
        self.cfg, self.loader = cfg, loader
        self.true_pids = true_pids  # for the logged purity / NMI only
        self.initial_state = initial_state  # PUL: the starting model, set by RSLTrainer.resume_or_load
        self.round = -1
        self.round_start = self.round_end = 0  # iterations [round_start, round_end) of the current round
        self.labels = None
        self.history = []

    # ---- checkpointed state -------------------------------------------------------------
    def state_dict(self):
        if self.labels is None:
            return {}
        lab = self.labels
        rows = np.flatnonzero(lab.soft.any(1))
        return {"round": self.round, "round_start": self.round_start, "round_end": self.round_end,
                "history": self.history, "num_classes": lab.num_classes,
                "labels": torch.as_tensor(lab.labels), "use": torch.as_tensor(lab.use),
                "soft_rows": torch.as_tensor(rows, dtype=torch.long), "soft": torch.as_tensor(lab.soft[rows]),
                "stats": dict(lab.stats)}

    def load_state_dict(self, sd):
        n, m = len(sd["labels"]), int(sd["num_classes"])
        if n != len(self.loader):
            raise ValueError(f"checkpointed round labels cover {n} images, the training set has {len(self.loader)}")
        soft = np.zeros((n, m), dtype=np.float32)
        soft[sd["soft_rows"].numpy()] = sd["soft"].numpy()
        self.labels = RoundLabels(sd["labels"].numpy().astype(np.int64), soft, sd["use"].numpy().astype(bool),
                                  m, dict(sd["stats"]))
        self.round, self.history = int(sd["round"]), list(sd["history"])
        if "round_end" in sd:
            self.round_start, self.round_end = int(sd["round_start"]), int(sd["round_end"])
        else:  # checkpoints of fixed-length rounds written before rounds stored their bounds
            self.round_start = self.round * self.cfg.RSL.ITERS_PER_ROUND
            self.round_end = self.round_start + self.cfg.RSL.ITERS_PER_ROUND
        self.loader.set_round(self.labels)
        logger.info("RSL: restored the labels of round %d from the checkpoint", self.round)

    # ---- rounds -------------------------------------------------------------------------
    def before_train(self):
        if self.cfg.RSL.FINETUNE_FROM == "initial" and self.initial_state is None:
            if self.trainer.start_iter > 0:
                raise RuntimeError("PUL resumed without its starting model: call RSLTrainer.resume_or_load()")
            model = unwrap_model(self.trainer.model)
            self.initial_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if self.labels is not None and self.round == self.cfg.RSL.ROUNDS - 1:
            self._end_training_at(self.round_end)  # resumed inside the last round

    def before_step(self):
        it = self.trainer.iter
        if self.labels is None or it >= self.round_end:
            if self.labels is not None and it != self.round_end:
                raise RuntimeError(f"RSL: iteration {it} is past the end ({self.round_end}) of round {self.round}")
            self.start_round(self.round + 1)
        self.loader.iteration = it

    def _end_training_at(self, end):
        """The run ends with the last round: lower the trainer's (and the final checkpoint's) max_iter."""
        self.trainer.max_iter = end
        for h in self.trainer._hooks:
            if isinstance(h, hooks.PeriodicCheckpointer):
                h.max_iter = end

    def start_round(self, r):
        start = time.perf_counter()
        model = unwrap_model(self.trainer.model)
        feats = self.loader.extract_features(model, self.cfg.RSL.FEATURE, self.cfg.RSL.FEATURE_BATCH)
        labels = compute_round_labels(self.cfg, feats, self.loader.cameras, r)
        if self.cfg.RSL.FINETUNE_FROM == "initial":
            model.load_state_dict(self.initial_state)
        elif self.cfg.RSL.FINETUNE_FROM != "previous":
            raise ValueError(f"RSL.FINETUNE_FROM must be 'previous' or 'initial', got {self.cfg.RSL.FINETUNE_FROM!r}")
        model.reset_classifier()
        self.trainer.optimizer.state.clear()  # momentum of the old classifier / previous round
        self.round, self.labels = r, labels
        self.round_start = self.trainer.iter
        self.round_end = self.round_start + round_length(self.cfg, int(labels.use.sum()))
        if r == self.cfg.RSL.ROUNDS - 1:
            self._end_training_at(self.round_end)
        self.loader.set_round(labels)
        record = {"round": r, "iteration": self.trainer.iter, "iterations": self.round_end - self.round_start,
                  **labels.stats,
                  **report_round_quality(labels, self.true_pids),
                  "label_seconds": round(time.perf_counter() - start, 2)}
        self.history.append(record)
        storage = self.trainer.storage
        for k, v in record.items():
            if k not in ("round", "iteration") and isinstance(v, (int, float)) and np.isfinite(v):
                storage.put_scalar(f"rsl/{k}", v, smoothing_hint=False)
        logger.info("RSL round %d (%s): %s", r, self.cfg.RSL.METHOD,
                    ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))

    def after_step(self):
        it = self.trainer.iter
        if it + 1 != self.round_end:
            return
        record = self.history[-1] if self.history and self.history[-1]["round"] == self.round else {}
        if self.cfg.RSL.EVAL_EACH_ROUND and self.cfg.DATASETS.TEST:
            results = self.trainer.test(self.cfg, self.trainer.model)
            self.trainer._last_eval_results = results
            flat = flatten_results(results)
            record.update({k: float(v) for k, v in flat.items()})
            for metric in ("Rank-1", "mAP"):  # of the first test set ("reid/<m>" when there is one)
                key = next((k for k in flat if k.endswith(f"reid/{metric}")), None)
                if key is not None:
                    record[metric] = float(flat[key])
                    self.trainer.storage.put_scalar(f"rsl/{metric}", float(flat[key]), smoothing_hint=False)
            logger.info("RSL round %d done: Rank-1 %.2f, mAP %.2f", self.round, record.get("Rank-1", float("nan")),
                        record.get("mAP", float("nan")))
            comm.synchronize()
        if comm.is_main_process():
            os.makedirs(self.cfg.OUTPUT_DIR, exist_ok=True)
            path = os.path.join(self.cfg.OUTPUT_DIR, "rsl_rounds.json")
            with open(path + ".tmp", "w") as f:
                json.dump(self.history, f, indent=1)
            os.replace(path + ".tmp", path)
            self.trainer.checkpointer.save(f"model_round{self.round:02d}")


@TRAINER_REGISTRY.register()
class RSLTrainer(ReIDTrainer):
    """Re-ID trainer whose training labels come from the rounds of RSL / PUL (``REID2.TRAINER: RSLTrainer``)."""

    def __init__(self, cfg):
        cfg = cfg.clone()
        cfg.defrost()
        cfg.SOLVER.MAX_ITER = max_iterations(cfg, len(get_reid_train_dicts(cfg.DATASETS.TRAIN)))
        cfg.freeze()
        super().__init__(cfg)

    def train(self):
        """``DefaultTrainer.train`` with a loop that ends where the round hook says the last round ends
        (``self.max_iter``, lowered when that round starts: epoch-counted rounds end before the upper bound)."""
        logging.getLogger("detectron2.engine.train_loop").info("Starting training from iteration %d", self.start_iter)
        self.iter = self.start_iter
        with EventStorage(self.start_iter) as self.storage:
            try:
                self.before_train()
                while self.iter < self.max_iter:
                    self.before_step()
                    self.run_step()
                    self.after_step()
                    self.iter += 1
            except Exception:
                logger.exception("Exception during training:")
                raise
            finally:
                self.after_train()
        if len(self.cfg.TEST.EXPECTED_RESULTS) and comm.is_main_process():
            assert hasattr(self, "_last_eval_results"), "No evaluation results obtained during training!"
            verify_results(self.cfg, self._last_eval_results)
            return self._last_eval_results

    @classmethod
    def build_train_loader(cls, cfg):
        return RoundLoader(cfg, label_free_records(get_reid_train_dicts(cfg.DATASETS.TRAIN)))

    @staticmethod
    def true_pids_for_reporting(cfg):
        """The training identities, read only to log purity / NMI (None when the set has none)."""
        pids = [d.get("pid", -1) for d in get_reid_train_dicts(cfg.DATASETS.TRAIN)]
        return None if len(set(pids)) <= 1 else np.asarray(pids)

    def build_hooks(self):
        hook_list = super().build_hooks()
        if self.cfg.RSL.EVAL_EACH_ROUND:  # the round hook evaluates; no second evaluation at the end
            hook_list = [h for h in hook_list if not isinstance(h, hooks.EvalHook)]
        self.round_hook = RoundHook(self.cfg, self._trainer.data_loader, self.true_pids_for_reporting(self.cfg))
        at = next(i for i, h in enumerate(hook_list) if isinstance(h, hooks.LRScheduler)) + 1
        hook_list.insert(at, self.round_hook)  # after the LR step, before the periodic checkpointer
        return hook_list

    def resume_or_load(self, resume=True):
        if self.cfg.RSL.FINETUNE_FROM == "initial":  # PUL: keep the starting model for every round
            model = unwrap_model(self.model)
            checkpointer = AtomicCheckpointer(model)
            checkpointer.weights_role = "init"  # the starting model: the same checks as MODEL.WEIGHTS at start
            checkpointer.load(self.cfg.MODEL.WEIGHTS)  # "" / "random": the model's own initialisation
            self.round_hook.initial_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        super().resume_or_load(resume)
