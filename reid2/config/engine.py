"""Keys that choose the trainer and control the run (device, seed, evaluation)."""
from detectron2.config import CfgNode as CN


def add_engine_config(cfg: CN) -> None:
    cfg.REID2 = CN()
    # Trainer class from reid2.engine.TRAINER_REGISTRY ("ReIDTrainer", "PersonSearchTrainer", ...).
    cfg.REID2.TRAINER = "ReIDTrainer"
    # The device is MODEL.DEVICE. reid2's default is "auto" (Detectron2's is "cuda"): CUDA when available, else the
    # CPU. An explicit value is honoured; "cuda" without CUDA is an error naming MODEL.DEVICE (setup_cfg).
    cfg.MODEL.DEVICE = "auto"
    # Older spelling of MODEL.DEVICE: "" (or "auto") = defer to MODEL.DEVICE; any other value is used as
    # MODEL.DEVICE, and an error if MODEL.DEVICE is set explicitly to something else.
    cfg.REID2.DEVICE = ""
    # Keep the checkpoint with the best value of this metric (e.g. "reid/mAP"); "" disables.
    cfg.REID2.BEST_METRIC = ""
    # Period (iterations) of the console / metrics.json / TensorBoard writers.
    cfg.REID2.LOG_PERIOD = 20
    # DDP's find_unused_parameters (set True for models with branches unused in some steps).
    cfg.REID2.FIND_UNUSED_PARAMETERS = False
    # Modules imported before the trainer is built: a downstream package's registrations.
    cfg.REID2.IMPORTS = []

    # Unreadable or truncated images are an error naming the file. True: skip them, counted, with a warning at the
    # 1st, 10th, 100th, ... giving the count and the first file; training replaces a skipped sample by a fixed
    # other one (the next readable image of its identity / aspect group: the same batches on --resume), evaluation
    # and the tools leave it out. A missing file stays an error.
    cfg.DATALOADER.SKIP_BAD_IMAGES = False
    # Mixed precision (SOLVER.AMP.ENABLED, Detectron2's key): autocast dtype "auto" (float16 + grad scaler on CUDA,
    # bfloat16 on the CPU) | "float16" | "bfloat16". The OIM table / queue / logits, the batch-contrastive centers
    # and the KD soft targets stay float32 either way.
    cfg.SOLVER.AMP.DTYPE = "auto"
    # Speed options (off: measured per device by bench/gpu_check.sh; CUDNN_BENCHMARK is Detectron2's own key).
    # CHANNELS_LAST: the model's 4-d weights in channels-last memory format (NHWC convolutions, tensor cores).
    cfg.MODEL.CHANNELS_LAST = False
    # FUSED_OPTIMIZER: SGD / Adam with fused=True (one kernel for the whole update instead of one per tensor group).
    cfg.SOLVER.FUSED_OPTIMIZER = False

    # Optimiser / schedules beyond Detectron2's SGD + warm-up multi-step.
    cfg.SOLVER.OPTIMIZER = "SGD"  # "SGD" | "Adam"
    # Divergence: training stops when a loss term exceeds DIVERGENCE_FACTOR x its running level (an exponential
    # average of its past values from the first one, floored at 10% of the total loss's level); the first
    # DIVERGENCE_WARMUP iterations are not checked. 0 disables the check (non-finite losses always stop, as in
    # Detectron2). A healthy run stays far below 100x; SOLVER.BASE_LR 1e6 on reid_tiny jumps ~1e8x at iteration 1.
    cfg.SOLVER.DIVERGENCE_FACTOR = 100.0
    cfg.SOLVER.DIVERGENCE_WARMUP = 0
    # InverseDecayLR: lr_i = BASE_LR * (1 + INV_GAMMA * i) ** (-INV_POWER)  (SLSR paper)
    cfg.SOLVER.INV_GAMMA = 0.1
    cfg.SOLVER.INV_POWER = 0.025
