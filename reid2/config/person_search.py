"""Person-search keys: the OIM loss (MODEL.OIM), the model around it (MODEL.PERSON_SEARCH) and its
evaluation (TEST.PERSON_SEARCH). Defaults follow the PyTorch OIM ports (notes/person_search.md §1.5, §2);
``configs/oim_r50.yaml`` sets the original paper's values.
"""
from detectron2.config import CfgNode as CN


def add_person_search_config(cfg: CN) -> None:
    _C = cfg
    _C.MODEL.OIM = CN()
    # Rows of the look-up table = labelled training identities; 0 = the training set's metadata
    # ``num_pids`` (CUHK-SYSU 5532, PRW 483), else 1 + the largest person_id of its dicts.
    _C.MODEL.OIM.NUM_PIDS = 0
    # Circular queue of unlabelled-person features (5000 CUHK-SYSU, 500 PRW in the ports).
    _C.MODEL.OIM.QUEUE_SIZE = 5000
    # Dimension of the L2-normalised identity embedding (Linear from the res5 pooled feature).
    _C.MODEL.OIM.FEAT_DIM = 256
    # Logit scale 1/τ: 30 in NAE/SeqNet/COAT, 10 in the original Caffe OIM (τ = 0.1), AlignPS and psd2.
    _C.MODEL.OIM.SCALAR = 30.0
    # LUT row ← MOMENTUM·row + (1 − MOMENTUM)·x for every labelled feature.
    _C.MODEL.OIM.MOMENTUM = 0.5
    # Re-normalise LUT rows after each update (PyTorch ports); False = the original Caffe layer.
    _C.MODEL.OIM.NORMALIZE_LUT = True
    # λ_oim: weight of the OIM loss in the total loss (0.1 in the paper's KD_reid runs).
    _C.MODEL.OIM.LOSS_WEIGHT = 1.0
    # Never update the LUT (KD_reid: the teacher's LUT is copied in and frozen; the queue still moves).
    # The teacher LUT itself comes from MODEL.KD.REID.LUT_SOURCE.
    _C.MODEL.OIM.FIXED_LUT = False

    _C.MODEL.PERSON_SEARCH = CN()
    # Identity branch on/off: False gives the plain Faster R-CNN detector of the same layout
    # (the KD_det teacher, configs/det_r50.yaml): no embedding head, no OIM loss, no reid_feats.
    _C.MODEL.PERSON_SEARCH.REID_ON = True
    # Normalisation between the embedding's Linear and its L2 normalisation: "" (original OIM) or "BN"
    # (NAE/SeqNet; lets randomly initialised models, e.g. the tiny CPU one, escape identical embeddings).
    _C.MODEL.PERSON_SEARCH.EMBEDDING_NORM = ""
    # Per-RoI head after pooling: "resnet" = the res5 stage of MODEL.RESNETS.DEPTH (BasicBlocks for
    # 18/34, bottlenecks otherwise), "mobilenet_v2" = MobileNetV2's features.14-18 (with the trunk
    # build_mobilenet_c4_backbone; weights and norm from MODEL.REID_BACKBONE.PRETRAINED / NORM),
    # "tiny" = one BasicBlock for the tiny CPU backbone.
    _C.MODEL.PERSON_SEARCH.RES5_HEAD = "resnet"
    # Where the ResNet is cut for RoI pooling: "C4" = after all of res4, res5 per RoI (Detectron2, SeqNet, NAE,
    # COAT); "conv4_3" = after res4c, res4d-f + res5 per RoI (the original OIM Caffe model; ResNet-34/50/101).
    # Same parameters either way; checkpoints of one split load into the other (res4 blocks are renamed).
    _C.MODEL.PERSON_SEARCH.SPLIT = "C4"
    # Norm of the per-RoI ResNet blocks ("" = MODEL.RESNETS.NORM): "BN" uses RoI-batch statistics in training
    # as the original OIM's head (its trunk BNs are frozen). Needs weights with BN statistics (a torchvision
    # conversion): the MSRA .pkl folds them into the affine.
    _C.MODEL.PERSON_SEARCH.HEAD_NORM = ""
    # Tiny C4 backbone (build_tiny_c4_backbone): channels of its first stage (×2, ×4 later; stride 16)
    # and its normalisation ("BN" | "GN" | "SyncBN"; FrozenBN does not train from random init).
    _C.MODEL.PERSON_SEARCH.TINY_WIDTH = 16
    _C.MODEL.PERSON_SEARCH.TINY_NORM = "BN"

    _C.TEST.PERSON_SEARCH = CN()
    # Detections with a score below this are dropped before search and detection evaluation
    # (0.5 in the original OIM eval for both; SeqNet/NAE use 0.01 for detection only).
    _C.TEST.PERSON_SEARCH.DET_THRESH = 0.5
    # Score threshold of the detection evaluation alone: < 0 = DET_THRESH (the original OIM eval);
    # 0.01 = SeqNet/NAE/COAT's detection AP / recall. Search always uses DET_THRESH. (Boxes scored below
    # MODEL.ROI_HEADS.SCORE_THRESH_TEST never reach the evaluator.)
    _C.TEST.PERSON_SEARCH.DETECTION_EVAL_THRESH = -1.0
    # Protocol gallery size: 0 = the test set's default (metadata gallery_size: CUHK-SYSU 100,
    # PRW all frames); -1 = the full set; CUHK-SYSU also 50/500/1000/2000/4000.
    _C.TEST.PERSON_SEARCH.GALLERY_SIZE = 0
    # Images per batch of the test loader and of the query embedding pass.
    _C.TEST.PERSON_SEARCH.IMS_PER_BATCH = 2
