"""Re-ID transforms built from INPUT.REID: sizes, crops, interpolation, normalisation, clear errors."""
import numpy as np
import pytest
import torch
from PIL import Image

from reid2.config import get_cfg
from reid2.data.transforms import build_reid_transforms


def _image(seed=0, size=(64, 160)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8))


def test_test_transform_resizes_with_the_configured_filter_and_normalises():
    cfg = get_cfg()
    img = _image()
    out = {}
    for mode, pil in (("bicubic", Image.BICUBIC), ("bilinear", Image.BILINEAR)):
        cfg.INPUT.REID.INTERPOLATION = mode
        out[mode] = build_reid_transforms(cfg, is_train=False)(img)
        expected = np.asarray(img.resize((128, 256), pil), dtype=np.float32) / 255.0
        mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
        expected = torch.from_numpy(((expected - mean) / std).transpose(2, 0, 1)).float()
        assert out[mode].shape == (3, 256, 128)
        assert torch.allclose(out[mode], expected, atol=0.03)  # PIL vs torchvision antialiasing rounding
    assert not torch.allclose(out["bicubic"], out["bilinear"])


def test_train_transform_crops_to_the_crop_size_and_tanh_range():
    cfg = get_cfg()
    cfg.merge_from_list(["INPUT.REID.SIZE_TRAIN", [288, 144], "INPUT.REID.CROP_SIZE", [256, 128],
                         "INPUT.REID.NORMALIZE", "tanh", "INPUT.REID.RANDOM_ERASING.ENABLED", False])
    out = build_reid_transforms(cfg, is_train=True)(_image(1))
    assert out.shape == (3, 256, 128) and out.min() >= -1.0 and out.max() <= 1.0


def test_bad_values_name_the_key():
    cfg = get_cfg()
    cfg.INPUT.REID.INTERPOLATION = "nearest-ish"
    with pytest.raises(ValueError, match="INPUT.REID.INTERPOLATION"):
        build_reid_transforms(cfg, is_train=False)
    cfg = get_cfg()
    cfg.INPUT.REID.NORMALIZE = "zscore"
    with pytest.raises(ValueError, match="INPUT.REID.NORMALIZE"):
        build_reid_transforms(cfg, is_train=True)
