"""Re-ID image transforms (torchvision), built from ``cfg.INPUT.REID``."""
import torchvision.transforms as T

NORMALIZATIONS = {
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    "tanh": ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),  # maps [0, 1] to [-1, 1]
    "none": ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
}


def build_reid_transforms(cfg, is_train: bool) -> T.Compose:
    """Resize → (random crop) → (pad + random crop) → flip → tensor → normalise → erasing."""
    c = cfg.INPUT.REID
    if c.NORMALIZE not in NORMALIZATIONS:
        raise ValueError(f"INPUT.REID.NORMALIZE must be one of {sorted(NORMALIZATIONS)}, got {c.NORMALIZE!r}")
    mean, std = NORMALIZATIONS[c.NORMALIZE]
    crop = tuple(c.CROP_SIZE) if min(c.CROP_SIZE) > 0 else None
    modes = {"bicubic": T.InterpolationMode.BICUBIC, "bilinear": T.InterpolationMode.BILINEAR}
    if c.INTERPOLATION not in modes:
        raise ValueError(f"INPUT.REID.INTERPOLATION must be one of {sorted(modes)}, got {c.INTERPOLATION!r}")
    interpolation = modes[c.INTERPOLATION]
    ops = []
    if is_train:
        ops.append(T.Resize(tuple(c.SIZE_TRAIN), interpolation=interpolation))
        if crop:
            ops.append(T.RandomCrop(crop))
        out_size = crop or tuple(c.SIZE_TRAIN)
        if c.PADDING > 0:
            ops += [T.Pad(c.PADDING), T.RandomCrop(out_size)]
        if c.FLIP_PROB > 0:
            ops.append(T.RandomHorizontalFlip(c.FLIP_PROB))
        ops += [T.ToTensor(), T.Normalize(mean, std)]
        if c.RANDOM_ERASING.ENABLED:
            ops.append(T.RandomErasing(p=c.RANDOM_ERASING.PROB, value="random"))
    else:
        ops.append(T.Resize(tuple(c.SIZE_TEST), interpolation=interpolation))
        if crop:
            ops.append(T.CenterCrop(crop))
        ops += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(ops)
