"""Synthetic Market-1501: 64×128 JPEG crops with Market's folders and file names, and their DensePose IUV maps.

Layout (as the real ``Market-1501-v15.09.15``)::

    bounding_box_train/  detector-style crops of the training identities
    bounding_box_test/   detector-style crops of the test identities, distractors ``0000_*`` and junk ``-1_*``
    query/               one hand-drawn-style crop per test identity and camera (the real query rule)
    gt_bbox/             hand-drawn-style crops per test identity and camera, the query among them (multi-query)
    densepose_iuv/<folder>/<stem>_IUV.png   legacy DensePose IUV PNG per crop (B, G, R = I, 255·U, 255·V)

Names are ``PPPP_cCsS_FFFFFF_NN.jpg``: identity (``-1`` for junk), 1-based camera, sequence, frame (≡ 1 mod 25,
as Market's 25-frame sampling), box index in the frame. Train and test identities are disjoint, spread over
1..1501; every test identity is seen by ≥ 2 cameras, so each query has a cross-camera match in the gallery.
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import cv2
import numpy as np

from .files import write_once
from .person import paste_layer, random_appearance, random_pose, render_person
from .scene import apply_camera, draw_object, encode_iuv_png, encode_jpeg, random_camera_style, street_background

__all__ = ["MARKET_FOLDER", "MARKET_SPLITS", "CROP_SIZE", "generate_market"]

MARKET_FOLDER = "Market-1501-v15.09.15"
MARKET_SPLITS = ("bounding_box_train", "bounding_box_test", "query", "gt_bbox")
IUV_FOLDER = "densepose_iuv"
CROP_SIZE = (64, 128)  # (W, H)
MAX_PID = 1501
_STREAM = 10  # keeps Market's random streams apart from CUHK-SYSU's for the same seed
_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Crop:
    folders: Tuple[str, ...]  # a query crop is also written to gt_bbox, as in Market
    name: str
    kind: str  # "person", "distractor" or "junk"
    pid: int
    camera: int  # 0-based
    hand_drawn: bool


class _Namer:
    """Unique Market names: a tracklet (camera, sequence, frames every 25) per identity and camera."""

    def __init__(self, rng):
        self.rng, self.used = rng, set()

    def tracklet(self, pid, camera, count):
        seq = int(self.rng.integers(1, 7))
        frames = 25 * (int(self.rng.integers(0, 6000)) + np.cumsum(self.rng.integers(1, 12, count))) + 1
        return [self.name(pid, camera, seq, int(f)) for f in frames]

    def name(self, pid, camera, seq, frame):
        box = int(self.rng.integers(0, 4))
        pid_text = "-1" if pid < 0 else f"{pid:04d}"
        while f"{pid_text}_c{camera + 1}s{seq}_{frame:06d}_{box:02d}.jpg" in self.used:
            box += 1
        name = f"{pid_text}_c{camera + 1}s{seq}_{frame:06d}_{box:02d}.jpg"
        self.used.add(name)
        return name


def _cameras_of(rng, num_cameras):
    count = int(rng.integers(2, min(4, num_cameras) + 1))
    return sorted(int(c) for c in rng.choice(num_cameras, count, replace=False))


def _plan(rng, train_pids, test_pids, num_cameras, num_distractors, num_junk):
    """Every crop to write, in a fixed order."""
    namer, crops = _Namer(rng), []
    for pid in train_pids:
        for cam in _cameras_of(rng, num_cameras):
            for name in namer.tracklet(pid, cam, int(rng.integers(2, 5))):
                crops.append(_Crop(("bounding_box_train",), name, "person", pid, cam, False))
    for pid in test_pids:
        for cam in _cameras_of(rng, num_cameras):
            for name in namer.tracklet(pid, cam, int(rng.integers(1, 4))):
                crops.append(_Crop(("bounding_box_test",), name, "person", pid, cam, False))
            hand_drawn = namer.tracklet(pid, cam, int(rng.integers(2, 4)))
            crops.append(_Crop(("query", "gt_bbox"), hand_drawn[0], "person", pid, cam, True))
            crops.extend(_Crop(("gt_bbox",), n, "person", pid, cam, True) for n in hand_drawn[1:])
    for kind, pid, count in (("distractor", 0, num_distractors), ("junk", -1, num_junk)):
        for _ in range(count):
            cam = int(rng.integers(num_cameras))
            name = namer.name(pid, cam, int(rng.integers(1, 7)), 25 * int(rng.integers(0, 6000)) + 1)
            crops.append(_Crop(("bounding_box_test",), name, kind, pid, cam, False))
    return crops


def _add_occluder(rng, rgb, iuv, style, size):
    """A person or an object partly covering the crop's centre person (drawn over it)."""
    h, w = rgb.shape[:2]
    if rng.random() < 0.4:
        other = render_person(random_appearance(rng), random_pose(rng, style.yaw), size * rng.uniform(0.9, 1.05))
        side = rng.choice([-1, 1])
        paste_layer(other, rgb, iuv, (w / 2 + side * w * rng.uniform(0.45, 0.7), h * rng.uniform(0.93, 1.0)))
    else:
        kind = ("pole", "box", "car", "tree")[rng.integers(4)]
        draw_object(rng, rgb, iuv, kind, w * rng.uniform(0.0, 1.0), h * rng.uniform(0.97, 1.05),
                    size * rng.uniform(0.3, 1.1))


def _render_crop(rng, crop: _Crop, appearance, style):
    """(BGR uint8 image, IUV uint8) of one crop at CROP_SIZE."""
    out_w, out_h = CROP_SIZE
    w, h = max(int(round(out_w * style.resolution)), 8), max(int(round(out_h * style.resolution)), 16)
    rgb = street_background(rng, h, w, style.wall, style.ground, style.horizon, clutter=3)
    iuv = np.zeros((h, w, 3), np.uint8)
    if crop.kind == "person":
        if crop.hand_drawn:  # tight, centred boxes
            fill, dx, dy = rng.uniform(0.86, 0.95), rng.normal(0, 0.02), rng.normal(0, 0.01)
        else:  # detector boxes: looser, misaligned
            fill, dx, dy = rng.uniform(0.72, 0.93), rng.normal(0, 0.07), rng.normal(0, 0.03)
        size = fill * h / appearance.height
        if rng.random() < 0.15:  # someone behind
            other = render_person(random_appearance(rng), random_pose(rng, style.yaw), size * rng.uniform(0.8, 1))
            paste_layer(other, rgb, iuv, (w * rng.choice([0.0, 1.0]), h * rng.uniform(0.9, 1.0)))
        layer = render_person(appearance, random_pose(rng, style.yaw), size)
        paste_layer(layer, rgb, iuv, (w * (0.5 + dx), h * (1 - (1 - fill) / 2 + dy)))
        if rng.random() < 0.2:
            _add_occluder(rng, rgb, iuv, style, size)
    elif crop.kind == "junk":  # a body fragment: a box far too small or shifted
        size = h * rng.uniform(1.4, 2.6)
        layer = render_person(random_appearance(rng), random_pose(rng, style.yaw), size)
        paste_layer(layer, rgb, iuv, (w * rng.uniform(0.2, 0.8), h * rng.uniform(0.9, 2.4)))
    elif rng.random() < 0.5:  # distractor: background, sometimes with a small or cut-off person
        layer = render_person(random_appearance(rng), random_pose(rng, style.yaw), h * rng.uniform(0.3, 0.6))
        paste_layer(layer, rgb, iuv, (w * rng.uniform(-0.2, 1.2), h * rng.uniform(0.6, 1.0)))
    if (w, h) != (out_w, out_h):  # low-resolution camera: upsampled like a resized detection
        rgb = cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        iuv = cv2.resize(iuv, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
    return apply_camera(rng, rgb, style), iuv


def _check(num_train_ids, num_test_ids, num_cameras, num_distractors, num_junk):
    if num_train_ids < 2 or num_test_ids < 2:
        raise ValueError(f"need ≥ 2 train and ≥ 2 test identities, got {num_train_ids} and {num_test_ids}")
    if num_train_ids + num_test_ids > MAX_PID:
        raise ValueError(f"Market names hold identities 1..{MAX_PID}, got {num_train_ids + num_test_ids}")
    if not 2 <= num_cameras <= 9:
        raise ValueError(f"num_cameras must be in 2..9 (one digit in 'cCsS'), got {num_cameras}")
    if num_distractors < 0 or num_junk < 0:
        raise ValueError(f"num_distractors and num_junk must be ≥ 0, got {num_distractors} and {num_junk}")


def generate_market(root, num_train_ids=48, num_test_ids=32, num_cameras=6, seed=0, num_distractors=40,
                    num_junk=20, with_iuv=True) -> Path:
    """Write synthetic Market-1501 to ``root/Market-1501-v15.09.15`` (skipped when already there); its path."""
    _check(num_train_ids, num_test_ids, num_cameras, num_distractors, num_junk)
    params = dict(num_train_ids=num_train_ids, num_test_ids=num_test_ids, num_cameras=num_cameras, seed=seed,
                  num_distractors=num_distractors, num_junk=num_junk, with_iuv=with_iuv)

    def write(out: Path):
        rng = np.random.default_rng([seed, _STREAM])
        pids = rng.choice(np.arange(1, MAX_PID + 1), num_train_ids + num_test_ids, replace=False)
        train_pids, test_pids = sorted(pids[:num_train_ids].tolist()), sorted(pids[num_train_ids:].tolist())
        styles = [random_camera_style(rng, c) for c in range(num_cameras)]
        crops = _plan(rng, train_pids, test_pids, num_cameras, num_distractors, num_junk)
        for folder in MARKET_SPLITS:
            (out / folder).mkdir(parents=True)
            if with_iuv:
                (out / IUV_FOLDER / folder).mkdir(parents=True)
        appearances = {pid: random_appearance(np.random.default_rng([seed, _STREAM, 1, pid]))
                       for pid in train_pids + test_pids}
        for index, crop in enumerate(crops):
            crop_rng = np.random.default_rng([seed, _STREAM, 2, index])
            bgr, iuv = _render_crop(crop_rng, crop, appearances.get(crop.pid), styles[crop.camera])
            jpeg, png = encode_jpeg(bgr), encode_iuv_png(iuv) if with_iuv else None
            for folder in crop.folders:
                (out / folder / crop.name).write_bytes(jpeg)
                if with_iuv:
                    (out / IUV_FOLDER / folder / (Path(crop.name).stem + "_IUV.png")).write_bytes(png)
        _logger.info("synthetic Market-1501: %d crops, %d train / %d test identities, %d cameras",
                     len(crops), num_train_ids, num_test_ids, num_cameras)

    return write_once(Path(root) / MARKET_FOLDER, "market", params, write)
