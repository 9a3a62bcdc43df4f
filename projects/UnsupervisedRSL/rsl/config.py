"""``RSL``: the keys of the unsupervised rounds (added to every reid2 config once ``rsl`` is imported)."""
from detectron2.config import CfgNode as CN

from reid2.config import register_config_adder


@register_config_adder
def add_rsl_config(cfg: CN) -> None:
    _C = cfg
    _C.RSL = CN()
    # "rsl": reliable + soft labels (Sun & Jung) | "pul": PUL's clustering and fine-tuning (Fan et al.).
    _C.RSL.METHOD = "rsl"
    _C.RSL.ROUNDS = 5  # R
    # Length of a round. EPOCHS_PER_ROUND > 0: that many epochs of the round's re-training set (the images
    # with `use`: PUL's selected images; every image for RSL, whose unselected images carry soft labels),
    # i.e. ceil(EPOCHS_PER_ROUND * #used / SOLVER.IMS_PER_BATCH) iterations, computed when the round starts
    # (PUL's code: NUM_EPOCH = 20 over the selected images). SOLVER.MAX_ITER is then only an upper bound
    # (every image used in every round) and training ends with the last round. 0: a fixed ITERS_PER_ROUND
    # iterations per round, whatever the round selects; SOLVER.MAX_ITER = ROUNDS * ITERS_PER_ROUND.
    _C.RSL.EPOCHS_PER_ROUND = 0
    _C.RSL.ITERS_PER_ROUND = 1000
    _C.RSL.NUM_CLUSTERS = 750  # M (750 Market-1501, 700 DukeMTMC-reID); the classifier's size
    # M_k of the per-camera k-means (Eq. 3): a count (>= 1) or a fraction (< 1) of the camera's images.
    # The paper's M_k is the number of identities seen by camera k, a ground-truth count an unsupervised
    # method cannot know; a fraction of the camera's image count is the label-free substitute used here
    # (0.25 = one cluster per 4 images of the camera; the value is reid2's, not the paper's).
    _C.RSL.CAMERA_CLUSTERS = 0.25
    _C.RSL.LAMBDA = 0.85  # reliability threshold on the cosine similarity (fixed, as in PUL's code)
    _C.RSL.TEMPERATURE = 0.02  # t of the soft labels softmax(s / t)
    # Centers of the per-camera clusters and of the re-clustering: "centroid" (k-means means, Eq. 3-6)
    # | "nearest" (the member image nearest the centroid, as PUL's code). PUL always uses "nearest".
    _C.RSL.CENTERS = "centroid"
    # Eq. 7, S' = C F': the re-clustering centers C L2-normalised (True: S' is a cosine, as every other
    # similarity of the method) or as they are (False: the paper normalises only F'; with centroids of
    # unit features |c| < 1, so a tight cluster's center wins over a looser one at the same angle).
    _C.RSL.SOFT_CENTERS_NORMALIZE = True
    # Reliable when the cosine to the image's "own" camera-cluster center exceeds LAMBDA | to "any" center.
    _C.RSL.SELECT = "own"
    # What is re-clustered into M: "images" (the reliable images' features, Eq. 6) | "camera_centers".
    _C.RSL.RECLUSTER = "images"
    # k-means on L2-normalised features (True; RSL) or on the raw pooled features (False; PUL's code).
    # The paper: "k-means clustering and l2-normalization of features to compute similarity", which
    # also reads as raw k-means with cosines only for S; both use cosines for S and the soft labels.
    _C.RSL.KMEANS_NORMALIZE = True
    _C.RSL.KMEANS_N_INIT = 1
    # Loss weights: cross-entropy on reliable labels, soft cross-entropy on soft labels (per-image mean).
    _C.RSL.RELIABLE_WEIGHT = 1.0
    _C.RSL.SOFT_WEIGHT = 1.0
    # Each round starts from the "previous" round's model (RSL: the paper "updates" the model; it does
    # not say) | the "initial" model (PUL's code fine-tunes the starting model every iteration).
    _C.RSL.FINETUNE_FROM = "previous"
    # Feature clustered: "before_bn" (pooled, the paper's avg_pool) | "after_bn" (BN-neck output).
    _C.RSL.FEATURE = "before_bn"
    _C.RSL.EVAL_EACH_ROUND = True  # rank-1 / mAP on DATASETS.TEST at the end of every round
    _C.RSL.FEATURE_BATCH = 128  # batch size of the round's feature extraction
    # The paper's augmentation instead of INPUT.REID's pad/crop/flip: random shifts up to SHIFT of the
    # size (0.2 = 45 px at 224 x 224, PUL's width/height_shift_range) and rotations within ±ROTATION°,
    # no flip. Images are resized to INPUT.REID.SIZE_TRAIN (224 x 224 in the paper).
    _C.RSL.AUG = CN()
    _C.RSL.AUG.ENABLED = True
    _C.RSL.AUG.SHIFT = 0.2
    _C.RSL.AUG.ROTATION = 20.0
