"""``SLSR``: the keys of the three SLSR stages (added to every reid2 config once ``slsr`` is imported).

Stage 1 (``SLSR.CLUSTER``) clusters the training images on a classification CNN's features, stage 2
(``SLSR.GAN``) trains one DCGAN per cluster and writes the generated images, stage 3 (``SLSR.LOSS``,
``SLSR.NOISE_LAYER``, ``SLSR.MEAN_PIXEL_CENTERING``) trains the re-ID model on real + generated images with the
loss of Eq. 13.
"""
from detectron2.config import CfgNode as CN

from reid2.config import register_config_adder


@register_config_adder
def add_slsr_config(cfg: CN) -> None:
    _C = cfg
    _C.SLSR = CN()
    # Folder holding stage1/ and stage2/ ("" = OUTPUT_DIR). projects/SLSR/tools/train_net.py writes stage 3 to
    # <WORK_DIR>/stage3; with tools/train_net.py set WORK_DIR to the pipeline's folder.
    _C.SLSR.WORK_DIR = ""
    _C.SLSR.NUM_CLUSTERS = 3  # k of k-means (3 in the paper: Table 1-2)
    # Add the generated images to the training set (False: the plain / LSR baselines on real images only).
    _C.SLSR.USE_GENERATED = True
    # Hold out one image per identity as the validation set (identities with a single image keep it).
    _C.SLSR.HOLDOUT_VAL = True
    # Train for this many epochs over (real + generated) images; 0 = use SOLVER.MAX_ITER as given.
    _C.SLSR.EPOCHS = 0
    # §5.2 "zero-center by mean pixel": subtract the per-channel mean pixel of the stage-3 real training images
    # (after INPUT.REID.NORMALIZE, test-time resize) from every stage-3 input, real and generated, in training and
    # at test time (needs MODEL.META_ARCHITECTURE "SLSRReID"; the mean is stored in the checkpoint).
    _C.SLSR.MEAN_PIXEL_CENTERING = False

    _C.SLSR.LOSS = CN()
    # Label distribution of a generated image from cluster c: "slsr" = uniform over the k_c identities
    # present in c, 0 elsewhere (Eq. 9-13) | "lsro" = uniform over all K identities (Zheng et al.).
    _C.SLSR.LOSS.MODE = "slsr"
    # ε of LSR on the real images (Eq. 8; 0 = one-hot, i.e. λ = 0 in Eq. 13; 0.1 = the LSR baseline).
    _C.SLSR.LOSS.REAL_EPSILON = 0.0
    _C.SLSR.LOSS.WEIGHT = 1.0

    # §3.3 / §4.3: an extra linear "noise" layer that adapts the network outputs to the noisy GAN labels.
    _C.SLSR.NOISE_LAYER = CN({"ENABLED": True})
    # "feature": the paper's sizes (2048x1x1 for ResNet-50, 1024x1x1 for DenseNet-121): a D x D linear layer
    #   (with bias) on the pooled feature, in front of the classifier, initialised to the identity (needs
    #   MODEL.META_ARCHITECTURE "SLSRReID"); test features are taken before it.
    # "softmax": the earlier reading of "on top of the softmax layer": a K x K map on the softmax outputs
    #   (identity init, clamped and renormalised to a distribution), inside SLSRLoss.
    _C.SLSR.NOISE_LAYER.TYPE = "feature"
    # Which images go through it: "generated" (the noisy labels; real images bypass it) | "all".
    _C.SLSR.NOISE_LAYER.APPLY_TO = "generated"

    _C.SLSR.CLUSTER = CN()
    # Another SLSR run's folder (its OUTPUT_DIR / SLSR.WORK_DIR) whose complete stage1/ this run uses instead of
    # clustering its own features ("" = cluster here). The paper clusters ResNet-50 features for every model.
    _C.SLSR.CLUSTER.FROM_RUN = ""
    # A trained classification model (.pth) to take features from; "" = train one in stage 1.
    _C.SLSR.CLUSTER.WEIGHTS = ""
    # Stage-1 CNN: softmax training for CNN_EPOCHS at CNN_LR (paper §4.2: 40 epochs, lr 0.001, momentum 0.9).
    _C.SLSR.CLUSTER.CNN_EPOCHS = 40
    _C.SLSR.CLUSTER.CNN_LR = 0.001
    # Feature clustered: "before_bn" = the pooled last-conv feature (2048-d for ResNet-50) | "after_bn".
    _C.SLSR.CLUSTER.FEATURE = "before_bn"
    _C.SLSR.CLUSTER.N_INIT = 10  # k-means restarts (best inertia kept)
    _C.SLSR.CLUSTER.SEED = 0
    # An identity belongs to a cluster's label set when it has >= this many images there (1 = public code).
    _C.SLSR.CLUSTER.MIN_IMAGES_PER_ID = 1
    # Silhouette analysis (Table 1): k values and the number of images sampled for the score (0 = all).
    _C.SLSR.CLUSTER.SILHOUETTE_KS = [2, 3, 4, 5]
    _C.SLSR.CLUSTER.SILHOUETTE_SAMPLE = 10000
    _C.SLSR.CLUSTER.BATCH_SIZE = 64  # feature extraction

    _C.SLSR.GAN = CN()
    # Another SLSR run's folder whose complete stage2/ (GANs, generated images) this run uses; it must be the
    # run SLSR.CLUSTER.FROM_RUN names (the images belong to its clusters). "" = train the GANs here.
    _C.SLSR.GAN.FROM_RUN = ""
    # DCGAN of §4.1: z ~ U[-1, 1]^Z_DIM, G: linear → (S/16)² x 8·GF_DIM → four 5x5/2 deconvs → S x S x 3, tanh;
    # D: four 5x5/2 convs (BN after each) → linear → sigmoid. S = 128, GF_DIM = DF_DIM = 64 in the paper;
    # smaller values are CPU overrides.
    _C.SLSR.GAN.IMAGE_SIZE = 128
    _C.SLSR.GAN.Z_DIM = 100
    _C.SLSR.GAN.GF_DIM = 64
    _C.SLSR.GAN.DF_DIM = 64
    # D's activation: "relu" (the paper's text) | "leaky_relu" (slope 0.2, DCGAN and the public code).
    _C.SLSR.GAN.D_ACTIVATION = "relu"
    _C.SLSR.GAN.EPOCHS = 30
    _C.SLSR.GAN.BATCH_SIZE = 64
    _C.SLSR.GAN.LR = 0.0002
    _C.SLSR.GAN.BETA1 = 0.5
    # Generator updates per discriminator update (1 = Eq. 3 as written; the public code uses 2).
    _C.SLSR.GAN.G_STEPS = 1
    # Cap on the iterations per cluster (0 = none; tests and CPU runs).
    _C.SLSR.GAN.MAX_ITERS = 0
    # Start every cluster's GAN from one GAN trained on all images (the public code's schedule).
    _C.SLSR.GAN.INIT_FROM_ALL = False
    _C.SLSR.GAN.NUM_GENERATED = 12000  # total generated images
    # How they are split over clusters: "equal" (the paper does not say; the public code splits equally) |
    # "proportional" (to the cluster's image count).
    _C.SLSR.GAN.SPLIT = "equal"
    _C.SLSR.GAN.GRID_SIZE = 64  # images in each cluster's PNG sample grid
    _C.SLSR.GAN.SEED = 0
    _C.SLSR.GAN.NUM_WORKERS = 0
