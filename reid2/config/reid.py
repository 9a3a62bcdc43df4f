"""Re-ID keys: input transforms, identity sampling, the ReIDBaseline model, and evaluation."""
from detectron2.config import CfgNode as CN

from .backbone import add_backbone_config


def add_reid_data_config(cfg: CN) -> None:
    _C = cfg
    _C.INPUT.REID = CN()
    # Resize to (H, W) before cropping; e.g. (288, 144) then CROP_SIZE (256, 128) as in SLSR.
    _C.INPUT.REID.SIZE_TRAIN = [256, 128]
    _C.INPUT.REID.SIZE_TEST = [256, 128]
    # Resize filter: "bicubic" (fast-reid / torchreid) or "bilinear" (torchvision's default; what plain
    # ImageNet-feature baselines use: VIPeR MobileNetV2 reference numbers are reproduced exactly with it).
    _C.INPUT.REID.INTERPOLATION = "bicubic"
    # Random crop (H, W) after the resize; [0, 0] = no crop. Test images are centre-cropped.
    _C.INPUT.REID.CROP_SIZE = [0, 0]
    # Zero-pad by this many pixels then random-crop back to the training size (0 disables).
    _C.INPUT.REID.PADDING = 10
    _C.INPUT.REID.FLIP_PROB = 0.5
    _C.INPUT.REID.RANDOM_ERASING = CN({"ENABLED": False})
    _C.INPUT.REID.RANDOM_ERASING.PROB = 0.5
    # "imagenet" (mean/std of ImageNet on [0,1] pixels) | "tanh" ([-1, 1]) | "none" ([0, 1]).
    _C.INPUT.REID.NORMALIZE = "imagenet"

    # P x K identity sampling: SOLVER.IMS_PER_BATCH = P * NUM_INSTANCES (over all processes).
    # SAMPLER_TRAIN: "IdentitySampler" (P x K) | "RandomSampler" (plain random batches).
    _C.DATALOADER.SAMPLER_TRAIN = "IdentitySampler"
    _C.DATALOADER.NUM_INSTANCES = 4
    # Spread each identity's K images over its cameras (round-robin) when possible.
    _C.DATALOADER.CAMERA_BALANCED = False
    _C.TEST.IMS_PER_BATCH = 64


def add_reid_model_config(cfg: CN) -> None:
    add_backbone_config(cfg)
    _C = cfg
    _C.MODEL.REID = CN()
    _C.MODEL.REID.NUM_CLASSES = 0  # 0 = take it from the training set's metadata
    _C.MODEL.REID.POOLING = "avg"  # "avg" | "max" | "gem"
    _C.MODEL.REID.GEM_P = 3.0
    _C.MODEL.REID.DROPOUT = 0.0  # dropout on the pooled feature (0.9 in the batch-contrastive paper)
    _C.MODEL.REID.EMBEDDING_DIM = 0  # optional linear reduction of the pooled feature (0 = none)
    _C.MODEL.REID.BN_NECK = True  # BN bottleneck before the classifier (BoT)
    # Feature returned at inference: "before_bn" (pooled) | "after_bn" (BN-neck output).
    _C.MODEL.REID.TEST_FEAT = "after_bn"
    # Losses by name from reid2.modeling.REID_LOSS_REGISTRY, each with its weight.
    _C.MODEL.LOSSES = CN()
    _C.MODEL.LOSSES.NAMES = ["CrossEntropyLoss"]
    _C.MODEL.LOSSES.CE = CN({"WEIGHT": 1.0, "EPSILON": 0.0})  # label smoothing epsilon
    _C.MODEL.LOSSES.TRIPLET = CN({"WEIGHT": 1.0, "MARGIN": 0.3, "SOFT_MARGIN": False})
    _C.MODEL.LOSSES.CENTER = CN({"WEIGHT": 0.0005, "ALPHA": 0.5})  # alpha: center update rate
    # Batch-contrastive (Zhang & Xu): lambda * (L_b + L_c) on L2-normalised pool5 features, on the global batch
    # (gathered from every process). TAU: margin on squared distances (the paper gives none).
    # CENTER_LR: "solver" = the centers' step eta is the optimizer's current learning rate (Algorithm 1: one eta for
    # centers and weights, so it follows the schedule) | "constant" = CENTER_ALPHA at every step.
    # GRADIENT: "autograd" = exact derivative of Eq. 3 | "eq8" = the paper's Eq. 8 (omits two terms of it).
    _C.MODEL.LOSSES.BATCH_CONTRASTIVE = CN({"WEIGHT": 1.0, "TAU": 0.5, "CENTER_LR": "solver", "CENTER_ALPHA": 0.5,
                                            "GRADIENT": "autograd"})

    _C.TEST.REID = CN()
    _C.TEST.REID.METRIC = "euclidean"  # "euclidean" | "cosine"
    _C.TEST.REID.NORMALIZE_FEATS = True  # L2-normalise features before the distance
    _C.TEST.REID.FLIP_FEATS = False  # average the features of the image and its mirror
    _C.TEST.REID.RERANK = CN({"ENABLED": False, "K1": 20, "K2": 6, "LAMBDA": 0.3})
    _C.TEST.REID.MAX_RANK = 50
    # "" = the protocol the test set declares in its metadata (Market/Duke/MSMT/CUHK03-NP and VIPeR/CUHK01 splits:
    # "market", per-query same-pid-same-cam removal; CUHK03 classic: "cuhk03_classic", single-gallery-shot).
    # A value that disagrees with the dataset's is used with a warning naming both.
    _C.TEST.REID.PROTOCOL = ""
    # Multi-query test sets (metadata multi_query=True, e.g. market1501_multiquery_test): the query images of
    # one (pid, camera) are pooled into one query, "avg" (Zheng et al.'s official multi-query score) or "max".
    _C.TEST.REID.MULTI_QUERY_POOLING = "avg"
