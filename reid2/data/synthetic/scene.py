"""Backgrounds, clutter, occluding objects and camera effects shared by the Market crops and the CUHK-SYSU scenes."""
from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

__all__ = ["CameraStyle", "random_camera_style", "street_background", "draw_object", "apply_camera",
           "encode_jpeg", "encode_iuv_png"]

WALL_COLOURS = np.array([[0.75, 0.72, 0.66], [0.55, 0.58, 0.62], [0.62, 0.48, 0.40], [0.35, 0.38, 0.36],
                         [0.82, 0.80, 0.78], [0.46, 0.52, 0.44]])
GROUND_COLOURS = np.array([[0.50, 0.50, 0.50], [0.40, 0.38, 0.36], [0.58, 0.54, 0.46], [0.30, 0.34, 0.30],
                           [0.62, 0.62, 0.64]])
OBJECT_COLOURS = np.array([[0.20, 0.22, 0.25], [0.70, 0.10, 0.10], [0.85, 0.85, 0.88], [0.15, 0.35, 0.60],
                           [0.35, 0.30, 0.15], [0.90, 0.70, 0.10], [0.25, 0.45, 0.20]])


@dataclass(frozen=True)
class CameraStyle:
    """What a camera changes: lighting, colour cast, sharpness, resolution, noise, typical viewpoint, scenery."""

    gain: float
    cast: Tuple[float, float, float]  # per-channel RGB multipliers
    blur: float  # Gaussian sigma in output pixels
    noise: float  # additive Gaussian noise sigma, in [0, 1] intensity units
    resolution: float  # rendering scale before resizing to the output size (< 1: low-resolution camera)
    yaw: float  # typical walking direction relative to the camera
    wall: Tuple[float, float, float]
    ground: Tuple[float, float, float]
    horizon: float  # ground/wall boundary as a fraction of the height


# Typical viewpoints, cycled over cameras: front, back, side (both directions), obliques.
_CAMERA_YAWS = (0.0, np.pi, np.pi / 2, -np.pi / 2, np.pi / 5, 4 * np.pi / 5, -np.pi / 4, 3 * np.pi / 4, 1.2)


def random_camera_style(rng: np.random.Generator, index: int) -> CameraStyle:
    """Camera ``index`` (0-based); its viewpoint comes from a fixed cycle, the rest is drawn from ``rng``."""
    return CameraStyle(
        gain=float(rng.uniform(0.8, 1.2)),
        cast=tuple(float(c) for c in np.clip(rng.normal(1.0, 0.06, 3), 0.85, 1.15)),
        blur=float(rng.uniform(0.0, 1.0)),
        noise=float(rng.uniform(0.005, 0.03)),
        resolution=float(rng.choice([1.0, 0.8, 0.6])),
        yaw=float(_CAMERA_YAWS[index % len(_CAMERA_YAWS)]),
        wall=tuple(float(c) for c in WALL_COLOURS[rng.integers(len(WALL_COLOURS))]),
        ground=tuple(float(c) for c in GROUND_COLOURS[rng.integers(len(GROUND_COLOURS))]),
        horizon=float(rng.uniform(0.45, 0.75)),
    )


def _smooth_noise(rng, height, width, cells, amplitude):
    """Low-frequency texture (mostly brightness, a little colour): a coarse random grid upsampled bicubically."""
    shape = (max(cells[0], 2), max(cells[1], 2))
    grid = rng.normal(0.0, amplitude, shape + (1,)) + rng.normal(0.0, amplitude / 4, shape + (3,))
    return cv2.resize(grid.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)


def street_background(rng: np.random.Generator, height: int, width: int, wall, ground, horizon: float,
                      clutter: int = 6) -> np.ndarray:
    """A wall/façade above a ground plane with windows, signs, stripes and texture; float RGB (h, w, 3)."""
    img = np.empty((height, width, 3), np.float32)
    split = int(round(horizon * height))
    if rng.random() < 0.4:  # scenery varies within a camera too
        wall = WALL_COLOURS[rng.integers(len(WALL_COLOURS))]
    jitter = rng.normal(0.0, 0.06, (2, 3))
    img[:split] = np.clip(np.asarray(wall) + jitter[0], 0, 1)
    img[split:] = np.clip(np.asarray(ground) + jitter[1], 0, 1)
    # ground: darker far away, paving lines
    rows = np.linspace(-0.08, 0.06, height - split, dtype=np.float32)[:, None, None]
    img[split:] += rows
    for _ in range(rng.integers(0, 3)):
        y = int(rng.integers(split, height))
        cv2.line(img, (0, y), (width - 1, y + int(rng.integers(-3, 4))),
                 tuple(float(c) for c in np.clip(np.asarray(ground) * 0.8, 0, 1)), 1)
    for _ in range(clutter):  # façade elements: windows, doors, signs, posters
        w = int(rng.integers(max(width // 12, 2), max(width // 3, 3)))
        h = int(rng.integers(max(height // 16, 2), max(split // 2, 3)))
        x, y = int(rng.integers(-w // 2, width)), int(rng.integers(-h // 2, max(split - h // 2, 1)))
        colour = OBJECT_COLOURS[rng.integers(len(OBJECT_COLOURS))] * rng.uniform(0.6, 1.1)
        cv2.rectangle(img, (x, y), (x + w, y + h), tuple(float(c) for c in np.clip(colour, 0, 1)), -1)
        if rng.random() < 0.5:  # window bars
            cv2.line(img, (x + w // 2, y), (x + w // 2, y + h), (0.15, 0.15, 0.15), 1)
    for _ in range(rng.integers(0, 3)):  # random blobs (litter, shadows, plants)
        centre = (int(rng.integers(0, width)), int(rng.integers(split, height)))
        axes = (int(rng.integers(2, max(width // 8, 3))), int(rng.integers(1, max(height // 20, 2))))
        colour = tuple(float(c) for c in np.clip(np.asarray(ground) * rng.uniform(0.5, 1.3), 0, 1))
        cv2.ellipse(img, centre, axes, 0, 0, 360, colour, -1)
    img += _smooth_noise(rng, height, width, (height // 16, width // 16), 0.04)
    return np.clip(img, 0, 1)


def draw_object(rng: np.random.Generator, rgb: np.ndarray, iuv, kind: str, foot_x: float, foot_y: float,
                size: float):
    """Draw an occluding object standing at (foot_x, foot_y), ``size`` pixels tall; its IUV pixels become 0."""
    mask = np.zeros(rgb.shape[:2], np.uint8)
    colour = tuple(float(c) for c in OBJECT_COLOURS[rng.integers(len(OBJECT_COLOURS))])
    x, y, s = int(round(foot_x)), int(round(foot_y)), max(size, 4.0)
    if kind == "pole":
        half = max(int(s * 0.04), 1)
        cv2.rectangle(mask, (x - half, int(y - s)), (x + half, y), 1, -1)
    elif kind == "car":
        w, h = int(s * 1.6), int(s * 0.45)
        cv2.rectangle(mask, (x - w // 2, y - h), (x + w // 2, y - h // 5), 1, -1)
        cv2.rectangle(mask, (x - w // 3, int(y - h * 1.6)), (x + w // 4, y - h), 1, -1)
    elif kind == "tree":
        cv2.rectangle(mask, (x - max(int(s * 0.05), 1), int(y - s * 0.6)), (x + max(int(s * 0.05), 1), y), 1, -1)
        cv2.circle(mask, (x, int(y - s * 0.75)), max(int(s * 0.28), 2), 1, -1)
    elif kind == "box":  # bench, bin, sign board
        w, h = int(s * rng.uniform(0.3, 0.9)), int(s * rng.uniform(0.25, 0.5))
        cv2.rectangle(mask, (x - w // 2, y - h), (x + w // 2, y), 1, -1)
    else:
        raise ValueError(f"unknown object kind {kind!r} (expected pole, car, tree or box)")
    region = mask.astype(bool)
    shade = np.asarray(colour, np.float32) * rng.uniform(0.7, 1.1)
    rgb[region] = np.clip(shade, 0, 1)
    if iuv is not None:
        iuv[region] = 0
    if kind == "car":  # wheels
        w, h = int(s * 1.6), int(s * 0.45)
        for wx in (x - w // 3, x + w // 3):
            cv2.circle(rgb, (wx, y - h // 5), max(h // 4, 1), (0.05, 0.05, 0.05), -1)
            if iuv is not None:
                cv2.circle(iuv, (wx, y - h // 5), max(h // 4, 1), (0, 0, 0), -1)
    return region


def apply_camera(rng: np.random.Generator, rgb: np.ndarray, style: CameraStyle, gain_jitter: float = 0.06):
    """Lighting, colour cast, blur and noise of ``style`` on float RGB; returns uint8 BGR (OpenCV order)."""
    gain = style.gain * (1.0 + rng.normal(0.0, gain_jitter))
    img = rgb * (gain * np.asarray(style.cast, np.float32))
    if style.blur > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), style.blur)
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(style.noise)
    return (np.clip(img, 0, 1)[..., ::-1] * 255 + 0.5).astype(np.uint8)


def encode_jpeg(bgr: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return buf.tobytes()


def encode_iuv_png(iuv: np.ndarray) -> bytes:
    """Legacy DensePose IUV PNG: channels (I, 255·U, 255·V) written by OpenCV, i.e. stored as B, G, R."""
    ok, buf = cv2.imencode(".png", iuv)
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    return buf.tobytes()
