"""The trainer base every reid2 trainer builds on, and the config set-up of the entry points.

``ReID2Trainer`` is Detectron2's ``DefaultTrainer`` with what reid2 needs on top: CPU-safe DDP,
atomic checkpoints, SGD/Adam and the extra LR schedules, best-checkpoint tracking, and a
``test()`` that prints a table and writes ``metrics.json``.
"""
import logging
import weakref

import torch
from detectron2.engine import DefaultTrainer, SimpleTrainer, TrainerBase, default_setup, hooks
from detectron2.solver import build_lr_scheduler as d2_build_lr_scheduler
from detectron2.solver import build_optimizer as d2_build_optimizer
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.solver.lr_scheduler import LRMultiplier, WarmupParamScheduler
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from fvcore.common.param_scheduler import (
    LinearParamScheduler,
    MultiStepParamScheduler,
)

from reid2.evaluation import add_split_averages, build_evaluator, format_results_table, write_metrics_json
from reid2.modeling.backbones.weights import WHERE_TO_GET_WEIGHTS
from reid2.utils.modules import unwrap_model
from reid2.utils.rng import get_rng_states, preserved_rng, set_rng_states

from .amp import ReID2AMPTrainer
from .checkpoint import RANDOM_WEIGHTS, AtomicCheckpointer
from .hooks import DivergenceStop, ExportInferenceWeights, SolverLRToModules, modules_taking_solver_lr
from .launch import create_ddp_model
from .schedulers import InverseDecayParamScheduler

__all__ = ["ReID2Trainer", "check_pretrained", "setup_cfg", "resolve_device"]


def resolve_device(cfg):
    """Resolve ``MODEL.DEVICE`` in place: ``"auto"`` (reid2's default) → CUDA when available, else CPU; an
    explicit value is kept, and ``cuda`` without CUDA is an error naming the key. ``REID2.DEVICE`` (older
    spelling) other than ``""``/``"auto"`` sets it, unless MODEL.DEVICE names another device (an error)."""
    device, legacy = str(cfg.MODEL.DEVICE), str(cfg.REID2.DEVICE)
    if legacy not in ("", "auto"):
        if device not in ("auto", legacy):
            raise ValueError(f"MODEL.DEVICE {device!r} and REID2.DEVICE {legacy!r} disagree: set MODEL.DEVICE only")
        device = legacy
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"MODEL.DEVICE {device!r}, but CUDA is not available here (torch.cuda.is_available() is "
                         "False): set MODEL.DEVICE cpu, or MODEL.DEVICE auto to use CUDA only when present")
    frozen = cfg.is_frozen()
    cfg.defrost()
    cfg.MODEL.DEVICE = device
    if frozen:
        cfg.freeze()
    return cfg


def check_pretrained(cfg, model) -> None:
    """``MODEL.REQUIRE_PRETRAINED``: stop before training when the backbone would start from random weights."""
    if not cfg.MODEL.REQUIRE_PRETRAINED or cfg.MODEL.WEIGHTS not in ("", RANDOM_WEIGHTS):
        return  # MODEL.WEIGHTS is loaded by the checkpointer, which checks that it fills the backbone
    from .predictor import model_task

    allow = "MODEL.REQUIRE_PRETRAINED False"
    if model_task(model) == "person_search":
        if getattr(getattr(model, "backbone", None), "pretrained_from", None):
            return  # a backbone that loads its own ImageNet file (MODEL.REID_BACKBONE.PRETRAINED), e.g. MobileNetV2 C4
        raise ValueError(
            f"MODEL.WEIGHTS is {cfg.MODEL.WEIGHTS!r}, but this config (MODEL.REQUIRE_PRETRAINED True) trains from "
            "ImageNet weights. Expected an ImageNet initialisation of the C4 backbone + res5 head: Detectron2's "
            "detectron2://ImageNetPretrained/MSRA/R-50.pkl (or a local copy of it), or a torchvision ResNet .pth "
            "converted with: python tools/convert_weights.py --arch resnet50 --target person_search "
            "resnet50-0676ba61.pth r50_c4.pth (then MODEL.WEIGHTS r50_c4.pth); for build_mobilenet_c4_backbone, "
            "a local ImageNet MobileNetV2 file in MODEL.REID_BACKBONE.PRETRAINED (reid2.modeling.backbones."
            f"shipped_mobilenetv2_weights() names the one the set-up installs). To train from random weights on "
            f"purpose, set {allow}.")
    if not cfg.MODEL.REID_BACKBONE.PRETRAINED:
        raise ValueError(
            "MODEL.REID_BACKBONE.PRETRAINED is empty, but this config (MODEL.REQUIRE_PRETRAINED True) trains from "
            f"ImageNet weights. Expected a local ImageNet file for {cfg.MODEL.BACKBONE.NAME} (depth "
            f"{cfg.MODEL.REID_BACKBONE.DEPTH} for ResNets): a torchvision .pth converted with python "
            "tools/convert_weights.py --target reid IN.pth OUT.pth, or a Detectron2 ImageNet .pkl; "
            f"{WHERE_TO_GET_WEIGHTS} To train from random weights on purpose, set {allow}.")


def setup_cfg(args, freeze=True):
    """Build the config of an entry point: ``--import`` modules and the file's ``REID2.IMPORTS`` first, then
    defaults + file + overrides, device, logging, seed."""
    from reid2.config import load_config

    cfg = load_config(args.config_file, args.opts, getattr(args, "imports", ()))
    resolve_device(cfg)
    if freeze:
        cfg.freeze()
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="reid2")
    return cfg


class ReID2Trainer(DefaultTrainer):
    """Detectron2's DefaultTrainer, CPU-distributed-safe, with reid2's optimisers and outputs."""

    checkpointer_cls = AtomicCheckpointer

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        logger = logging.getLogger("detectron2")
        if not logger.isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        if cfg.MODEL.CHANNELS_LAST:
            model = model.to(memory_format=torch.channels_last)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False,
                                 find_unused_parameters=cfg.REID2.FIND_UNUSED_PARAMETERS)
        if cfg.SOLVER.AMP.ENABLED:  # fp16 + grad scaler on CUDA, bf16 elsewhere (SOLVER.AMP.DTYPE)
            self._trainer = ReID2AMPTrainer(model, data_loader, optimizer, cfg.SOLVER.AMP.DTYPE)
        else:
            self._trainer = SimpleTrainer(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = self.checkpointer_cls(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def resume_or_load(self, resume=True):
        """``--resume`` from OUTPUT_DIR's last checkpoint (which must fit the model exactly), else initialise from
        MODEL.WEIGHTS (a full checkpoint, or an ImageNet file that fills the backbone completely; see
        :mod:`reid2.engine.checkpoint`), after checking ``MODEL.REQUIRE_PRETRAINED``."""
        resuming = resume and self.checkpointer.has_checkpoint()
        if not resuming:
            check_pretrained(self.cfg, unwrap_model(self.model))
        self.checkpointer.weights_role = "checkpoint" if resuming else "init"
        try:
            super().resume_or_load(resume)
        finally:
            self.checkpointer.weights_role = "checkpoint"

    # ---- checkpointed state ----------------------------------------------------------------
    def state_dict(self):
        """Iteration, hooks (LR scheduler) and, unlike Detectron2 v0.6's ``DefaultTrainer``, the optimizer:
        without it ``--resume`` would restart SGD momentum / Adam moments from zero."""
        ret = super().state_dict()
        ret["_trainer"] = self._trainer.state_dict()
        ret.update(self._run_state())
        return ret

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if "_trainer" in state_dict:  # checkpoints written before the optimizer was saved
            self._trainer.load_state_dict(state_dict["_trainer"])
        else:
            logging.getLogger(__name__).warning("checkpoint has no optimizer state: it restarts from zero")
        self._restore_run_state(state_dict)

    def _run_state(self):
        """What makes ``--resume`` continue the same run: the batches consumed (one per iteration) and the
        global random generators, as they are after this iteration."""
        return {"data_position": self.iter + 1, "rng": get_rng_states()}

    def _restore_run_state(self, state_dict):
        """Start the loader at the checkpointed batch (a new iterator, then the RNG states: creating a
        DataLoader iterator draws a seed from torch's generator)."""
        log = logging.getLogger(__name__)
        position = state_dict.get("data_position")
        loader = self._trainer.data_loader
        sampler = getattr(loader, "batch_sampler", None)
        if position is not None and hasattr(sampler, "start_at"):
            sampler.start_at(position)
            self._trainer._data_loader_iter = iter(loader)
            log.info("data loading continues at batch %d", position)
        elif not hasattr(loader, "iteration"):  # loaders that index their batches by iteration need nothing
            log.warning("the checkpoint or the data loader (%s) has no batch position: the resumed run does not "
                        "see the batches the interrupted run would have seen", type(loader).__name__)
        if "rng" in state_dict:
            set_rng_states(state_dict["rng"])
        else:
            log.warning("the checkpoint has no random generator states: the resumed run draws other numbers")

    # ---- optimisation -------------------------------------------------------------------
    @classmethod
    def build_optimizer(cls, cfg, model):
        optimizer = cls._build_optimizer(cfg, model)
        if cfg.SOLVER.FUSED_OPTIMIZER:  # the same groups and hyper-parameters, one fused update kernel
            optimizer = type(optimizer)([dict(g, fused=True, foreach=None) for g in optimizer.param_groups],
                                        **{**optimizer.defaults, "fused": True, "foreach": None})
        return optimizer

    @classmethod
    def _build_optimizer(cls, cfg, model):
        name = cfg.SOLVER.OPTIMIZER
        if name == "SGD":
            return d2_build_optimizer(cfg, model)
        if name == "Adam":
            params = get_default_optimizer_params(
                model,
                base_lr=cfg.SOLVER.BASE_LR,
                weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
                bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
                weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
            )
            adam = maybe_add_gradient_clipping(cfg, torch.optim.Adam)
            return adam(params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
        raise ValueError(f"SOLVER.OPTIMIZER must be 'SGD' or 'Adam', got {name!r}")

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        name = cfg.SOLVER.LR_SCHEDULER_NAME
        max_iter = cfg.SOLVER.MAX_ITER
        if name in ("WarmupMultiStepLR", "WarmupCosineLR"):
            return d2_build_lr_scheduler(cfg, optimizer)
        if name == "InverseDecayLR":
            sched = InverseDecayParamScheduler(cfg.SOLVER.INV_GAMMA, cfg.SOLVER.INV_POWER, max_iter)
        elif name == "LinearDecayLR":
            sched = LinearParamScheduler(1.0, 0.0)
        elif name == "MultiStepLR":  # no warm-up
            sched = MultiStepParamScheduler(
                values=[cfg.SOLVER.GAMMA**k for k in range(len(cfg.SOLVER.STEPS) + 1)],
                milestones=list(cfg.SOLVER.STEPS), num_updates=max_iter)
        else:
            raise ValueError(
                f"SOLVER.LR_SCHEDULER_NAME {name!r} unknown; expected one of WarmupMultiStepLR, "
                "WarmupCosineLR, InverseDecayLR, LinearDecayLR, MultiStepLR")
        if cfg.SOLVER.WARMUP_ITERS > 0:
            sched = WarmupParamScheduler(sched, cfg.SOLVER.WARMUP_FACTOR,
                                         min(cfg.SOLVER.WARMUP_ITERS / max_iter, 1.0),
                                         cfg.SOLVER.WARMUP_METHOD)
        return LRMultiplier(optimizer, multiplier=sched, max_iter=max_iter)

    # ---- hooks --------------------------------------------------------------------------
    def build_hooks(self):
        hook_list = super().build_hooks()
        for i, h in enumerate(hook_list):  # Detectron2 hard-codes a logging period of 20
            if isinstance(h, hooks.PeriodicWriter):  # same writers (no second event file), our period
                hook_list[i] = hooks.PeriodicWriter(h._writers, period=self.cfg.REID2.LOG_PERIOD)
        self._add_divergence_stop(hook_list)
        if modules_taking_solver_lr(self.model):
            hook_list.insert(0, SolverLRToModules())
        if getattr(unwrap_model(self.model), "training_only_modules", ()):
            hook_list.insert(-1, ExportInferenceWeights())  # before the writer, after the final checkpoint
        metric = self.cfg.REID2.BEST_METRIC
        if metric and comm.is_main_process() and self.cfg.TEST.EVAL_PERIOD > 0:
            hook_list.insert(-1, hooks.BestCheckpointer(
                self.cfg.TEST.EVAL_PERIOD, self.checkpointer, metric, mode="max"))
        return hook_list

    def _add_divergence_stop(self, hook_list):
        """``DivergenceStop`` just before the periodic checkpointer (a diverged step is never saved)."""
        if self.cfg.SOLVER.DIVERGENCE_FACTOR > 0:
            at = next((i for i, h in enumerate(hook_list) if isinstance(h, hooks.PeriodicCheckpointer)),
                      len(hook_list))
            hook_list.insert(at, DivergenceStop(self.cfg.SOLVER.DIVERGENCE_FACTOR, self.cfg.SOLVER.DIVERGENCE_WARMUP))

    # ---- evaluation ---------------------------------------------------------------------
    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None, model=None):
        """The evaluator the test set declares in its metadata (``reid2.evaluation.build_evaluator``)."""
        return build_evaluator(cfg, dataset_name, model=model)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        if evaluators is None:
            evaluators = [cls.build_evaluator(cfg, name, model=model) for name in cfg.DATASETS.TEST]
        with preserved_rng():  # an evaluation inside training leaves the training's random streams alone
            results = super().test(cfg, model, evaluators)
        results = add_split_averages(results)
        if comm.is_main_process() and results:
            logging.getLogger("reid2").info("Evaluation results:\n%s", format_results_table(results))
            write_metrics_json(cfg.OUTPUT_DIR, results, iteration=_current_iteration())
        return results


def _current_iteration():
    """The event storage's iteration inside training (Detectron2's EvalHook logs its results at it: the
    iteration of a periodic evaluation, MAX_ITER for the final one), None for ``--eval-only``."""
    from detectron2.utils.events import _CURRENT_STORAGE_STACK

    return _CURRENT_STORAGE_STACK[-1].iter if _CURRENT_STORAGE_STACK else None
