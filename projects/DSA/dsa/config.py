"""``MODEL.DSA``: the keys of DSA-reID (added to every reid2 config once ``dsa`` is imported)."""
from detectron2.config import CfgNode as CN

from reid2.config import register_config_adder


@register_config_adder
def add_dsa_config(cfg: CN) -> None:
    _C = cfg
    _C.MODEL.DSA = CN()
    # "dsa": DSAG-Stream on DSAP images (the paper) | "csa": on cropped part images (Table 4) |
    # "none": the MF-Stream alone (the two-branch baseline; no IUV needed at all).
    _C.MODEL.DSA.MODE = "dsa"
    _C.MODEL.DSA.DSAP_SIZE = 32  # S
    # Fill of DSAP cells no body pixel reaches: "image" (that image's mean) | "dataset" (mean over the
    # training images, computed once when the loader is built).
    _C.MODEL.DSA.FILL = "image"
    # Several body pixels on one DSAP cell: "copy" (the last one in raster order; the paper: "we simply copy
    # the pixel value") | "mean" (their average: smoother, less aliased DSAP images).
    _C.MODEL.DSA.COLLISION = "copy"
    # Where the DensePose results are: "" = <dataset folder>/densepose_iuv (the synthetic data's layout);
    # for IUV_FORMAT "dump" the path of the apply_net.py dump file.
    _C.MODEL.DSA.IUV_ROOT = ""
    # "legacy_png" (<root>/<folder>/<stem>_IUV.png) | "d2_png" (<root>/<folder>/<stem>.png) |
    # "npz" (<root>/<folder>/<stem>.npz, tools/cache_densepose.py) | "dump" (one apply_net.py dump file).
    _C.MODEL.DSA.IUV_FORMAT = "legacy_png"
    # Horizontal flip of the DSAG input. "" = the DSAP images are always built from the unflipped image
    # (flip only augments the MF-Stream); a DensePose UV_symmetry_transforms.mat path = flip image and IUV
    # together (labels swapped, U/V remapped) whenever the MF image is flipped.
    _C.MODEL.DSA.UV_SYMMETRY_FILE = ""
    # Fusion of the two streams: "add" (z = f + d, the paper) | "concat_fc" (Table 5 ablation).
    _C.MODEL.DSA.FUSION = "add"
    # Branches of both streams' heads (Table 3): "both" (the paper's DSA-reID) | "global" ("DSA-Global(Single)":
    # only the global branch, its losses, f_G / z_G) | "local" ("DSA-Local(Single)": only the 8 part branches).
    _C.MODEL.DSA.BRANCHES = "both"
    # Test-time features (Table 3): "mf" = [f_G, f_L], the MF-Stream alone ("DSA-reID (Only MF-Stream)", the
    # paper's deployed model: no DensePose at test time) | "fused" = [z_G, z_L] ("DSA (Two streams fused)") |
    # "fused_global" = z_G / "fused_local" = z_L ("DSA-Global/Local(Joint)"). The fused ones need DensePose
    # results for the test images too (same IUV_ROOT / IUV_FORMAT as training; DSATrainer's test loader adds them).
    _C.MODEL.DSA.TEST_FEATURE = "mf"

    _C.MODEL.DSA.DSAG = CN()
    # Channels of conv1, conv2, conv3_x, conv4_x of every MB-N branch (Table 1: 32, 64, 64, 128).
    _C.MODEL.DSA.DSAG.CHANNELS = [32, 64, 64, 128]
    _C.MODEL.DSA.DSAG.GLOBAL_CHANNELS = 2048  # conv5_g → d_G
    _C.MODEL.DSA.DSAG.PART_CHANNELS = 256  # conv5_l per part → d_L,i

    _C.MODEL.DSA.MF = CN()
    # MF head: global branch = ResNet conv5_x-like (Bottleneck blocks) with GLOBAL_CHANNELS outputs;
    # each of the 8 local branches has 1/8 of its channels (2048 → 256, the paper).
    _C.MODEL.DSA.MF.GLOBAL_CHANNELS = 2048
    _C.MODEL.DSA.MF.NUM_BLOCKS = 3
    _C.MODEL.DSA.MF.NUM_PARTS = 8

    # Classifier of each ID loss: FC(feat → hidden) → BN → ReLU → FC(hidden → ids) (the paper's two FCs).
    _C.MODEL.DSA.CLS_HIDDEN = 512
    # Loss weights (§4.2): ID on f_G and on each f_L,i; triplet and ID on z_G and on z_L.
    _C.MODEL.DSA.LOSS = CN()
    _C.MODEL.DSA.LOSS.MF_ID_WEIGHT = 0.5
    # How the 8 part ID losses of the MF-Stream are combined before MF_ID_WEIGHT: "sum" (the paper, §3.2.4 and
    # §4.2: "the ID loss for ... each part-aware feature vector f_L,i", every MF ID loss "weighed by 0.5"; no
    # 1/8 is mentioned; the parts then make about 60 % of the starting loss) | "mean" (the parts together weigh
    # as much as the global ID loss).
    _C.MODEL.DSA.LOSS.MF_PART_REDUCTION = "sum"
    _C.MODEL.DSA.LOSS.FUSED_TRIPLET_WEIGHT = 1.5
    _C.MODEL.DSA.LOSS.FUSED_ID_WEIGHT = 1.0
    # Label smoothing ε and triplet margin come from MODEL.LOSSES.CE.EPSILON / MODEL.LOSSES.TRIPLET.MARGIN.
