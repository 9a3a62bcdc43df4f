"""Readers of DensePose results in the formats they are stored in, all returning an :class:`IUV`.

Formats (``shared/notes/densepose.md`` §1.3-1.4):

* ``legacy_png``: Detectron1 DensePose ``*_IUV.png``, written by OpenCV: file channels B, G, R = I, 255·U, 255·V.
* ``d2_png``: detectron2 DensePose's compressed chart result, PNG written by PIL: R, G, B = I, 255·U, 255·V.
* ``dump``: ``apply_net.py dump`` file (``torch.save`` of a list of per-image dicts); per image the box-relative
  ``labels`` [h, w] and ``uv`` [2, h, w] of each box, boxes truncated to ints; the highest-score box is used.
  Read on CPU and without the ``densepose`` package (its result class is mapped to a local stand-in).
* ``npz``: this project's cache (``labels`` uint8 [H, W], ``u``/``v`` float [H, W]).

U and V are clamped to [0, 1] on reading (DensePose does not clamp its regressions).
"""
import base64
import io
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch
from PIL import Image

from reid2.utils.serialization import UnsafeFileError, load_torch_file

__all__ = [
    "IUV", "IUV_FORMATS", "read_iuv", "read_legacy_iuv_png", "read_d2_iuv_png", "decode_d2_compressed",
    "read_npz_iuv", "save_npz_iuv", "load_densepose_dump", "iuv_from_dump_entry", "split_legacy_instances",
]

IUV_FORMATS = ("legacy_png", "d2_png", "npz", "dump")


@dataclass
class IUV:
    """Per-pixel DensePose semantics of one image: ``labels`` int [H, W] in 0..24 (0 = background),
    ``u``, ``v`` float32 [H, W] in [0, 1]."""

    labels: np.ndarray
    u: np.ndarray
    v: np.ndarray

    def __post_init__(self):
        self.labels = np.asarray(self.labels).astype(np.uint8, copy=False)
        self.u = np.clip(np.asarray(self.u, dtype=np.float32), 0.0, 1.0)
        self.v = np.clip(np.asarray(self.v, dtype=np.float32), 0.0, 1.0)
        if not (self.labels.shape == self.u.shape == self.v.shape) or self.labels.ndim != 2:
            raise ValueError(f"IUV arrays must be [H, W] of one shape, got labels {self.labels.shape}, "
                             f"u {self.u.shape}, v {self.v.shape}")
        if self.labels.size and int(self.labels.max()) > 24:
            raise ValueError(f"IUV labels must be in 0..24, got max {int(self.labels.max())}")

    @property
    def shape(self) -> Tuple[int, int]:
        return self.labels.shape

    @property
    def empty(self) -> bool:
        """True when DensePose found no body pixel (the DSAP images are then all fill)."""
        return not bool((self.labels > 0).any())

    @classmethod
    def zeros(cls, height: int, width: int) -> "IUV":
        z = np.zeros((height, width), np.float32)
        return cls(np.zeros((height, width), np.uint8), z, z)

    def resized(self, height: int, width: int) -> "IUV":
        """Nearest-neighbour resize (labels must not be interpolated; U, V follow their pixel)."""
        if self.shape == (height, width):
            return self
        size = (width, height)
        return IUV(cv2.resize(self.labels, size, interpolation=cv2.INTER_NEAREST),
                   cv2.resize(self.u, size, interpolation=cv2.INTER_NEAREST),
                   cv2.resize(self.v, size, interpolation=cv2.INTER_NEAREST))

    def crop(self, x0: int, y0: int, x1: int, y1: int) -> "IUV":
        return IUV(self.labels[y0:y1, x0:x1], self.u[y0:y1, x0:x1], self.v[y0:y1, x0:x1])


def _from_quantized(i, u255, v255) -> IUV:
    return IUV(i, u255.astype(np.float32) / 255.0, v255.astype(np.float32) / 255.0)


def _check_file(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")


def read_legacy_iuv_png(path: str) -> IUV:
    """Detectron1 DensePose ``*_IUV.png`` (OpenCV-written: B = I, G = 255·U, R = 255·V)."""
    _check_file(path, "legacy DensePose IUV PNG")
    arr = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"{path}: not a 3-channel IUV PNG (got {None if arr is None else arr.shape})")
    return _from_quantized(arr[..., 0], arr[..., 1], arr[..., 2])  # cv2 order is B, G, R


def _decode_rgb_png(data: bytes, where: str) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"{where}: not a 3-channel IUV PNG (got shape {arr.shape})")
    return arr


def read_d2_iuv_png(path: str) -> IUV:
    """detectron2 DensePose compressed result PNG (PIL-written HWC: R = I, G = 255·U, B = 255·V)."""
    _check_file(path, "detectron2 DensePose IUV PNG")
    with open(path, "rb") as f:
        arr = _decode_rgb_png(f.read(), path)
    return _from_quantized(arr[..., 0], arr[..., 1], arr[..., 2])


def decode_d2_compressed(data: str) -> IUV:
    """The ``data`` field of ``DensePoseChartResultCompressed`` (base64 of the PNG above)."""
    arr = _decode_rgb_png(base64.decodebytes(data.encode()), "compressed result")
    return _from_quantized(arr[..., 0], arr[..., 1], arr[..., 2])


def read_npz_iuv(path: str) -> IUV:
    """This project's cache: ``labels`` [H, W] (0..24), ``u``, ``v`` [H, W]."""
    _check_file(path, "IUV .npz file")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ("labels", "u", "v") if k not in z.files]
        if missing:
            raise KeyError(f"{path}: missing arrays {missing} (has {z.files}); expected labels, u, v")
        return IUV(z["labels"], z["u"], z["v"])


def save_npz_iuv(path: str, iuv: IUV) -> None:
    """Write atomically (so an interrupted cache run leaves no half file); U, V as float16 (~1e-3 steps)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez_compressed(tmp, labels=iuv.labels, u=iuv.u.astype(np.float16), v=iuv.v.astype(np.float16))
    os.replace(tmp, path)


# ---- apply_net.py dump -----------------------------------------------------------------------------------
class _ChartResult:
    """Stand-in for DensePose's chart result classes (``DensePoseChartResult``, ``...WithConfidences``,
    ``...Quantized``, ``...Compressed``; dataclasses of tensors): unpickling only restores the attribute
    dict, so no constructor is needed."""


_CHART_RESULT_MODULE = "densepose.structures.chart_result"
_DUMP_STAND_INS = {f"{_CHART_RESULT_MODULE}.DensePoseChartResult{suffix}": _ChartResult
                   for suffix in ("", "WithConfidences", "Quantized", "Compressed")}


def load_densepose_dump(path: str, trust: bool = False) -> List[dict]:
    """The list of per-image dicts of an ``apply_net.py dump`` file, on CPU, without ``densepose``.

    Read with reid2's restricted unpickler (tensors, arrays, containers and the chart-result stand-ins only);
    anything else is refused unless ``trust=True`` or ``REID2_TRUST_PICKLE=1``."""
    _check_file(path, "apply_net.py dump file")
    try:
        data = load_torch_file(path, trust=trust, extra_globals=_DUMP_STAND_INS)
    except UnsafeFileError:
        raise
    except Exception as e:
        raise ValueError(f"{path}: cannot read as an apply_net.py dump (torch.save file): {e}") from e
    if not isinstance(data, list) or (data and not isinstance(data[0], dict)):
        raise ValueError(f"{path}: an apply_net.py dump is a list of per-image dicts, got {type(data).__name__}")
    return data


def iuv_from_dump_entry(entry: dict, image_hw: Optional[Tuple[int, int]] = None) -> IUV:
    """Full-image IUV from the highest-score box of one dump entry (empty when there is no box).

    The box-relative arrays are pasted at the box's truncated integer corner, as DensePose made them.
    ``image_hw`` defaults to the extent of the pasted box.
    """
    for key in ("scores", "pred_boxes_XYXY", "pred_densepose"):
        if key not in entry:
            raise KeyError(f"dump entry {entry.get('file_name', '?')!r} lacks {key!r}")
    scores = torch.as_tensor(entry["scores"]).reshape(-1)
    results = entry["pred_densepose"]
    if len(results) == 0 or scores.numel() == 0:
        if image_hw is None:
            raise ValueError(f"dump entry {entry.get('file_name', '?')!r} has no box and no image size was given")
        return IUV.zeros(*image_hw)
    best = int(scores.argmax())
    box = torch.as_tensor(entry["pred_boxes_XYXY"])[best].float()
    x, y = int(box[0].long()), int(box[1].long())  # make_int_box truncates x, y, w, h
    res = results[best]
    labels = torch.as_tensor(res.labels).cpu().numpy()
    uv = torch.as_tensor(res.uv).cpu().float().numpy()
    h, w = labels.shape
    H, W = image_hw if image_hw is not None else (y + h, x + w)
    out_l = np.zeros((H, W), np.uint8)
    out_u = np.zeros((H, W), np.float32)
    out_v = np.zeros((H, W), np.float32)
    ys, xs = slice(max(y, 0), min(y + h, H)), slice(max(x, 0), min(x + w, W))
    src = (slice(ys.start - y, ys.stop - y), slice(xs.start - x, xs.stop - x))
    out_l[ys, xs] = labels[src]
    out_u[ys, xs] = uv[0][src]
    out_v[ys, xs] = uv[1][src]
    return IUV(out_l, out_u, out_v)


_DUMP_CACHE: Dict[str, Dict[str, dict]] = {}


def _dump_index(path: str) -> Dict[str, dict]:
    """Dump entries by file base name (loaded once per process)."""
    if path not in _DUMP_CACHE:
        _DUMP_CACHE[path] = {os.path.basename(str(e.get("file_name", ""))): e for e in load_densepose_dump(path)}
    return _DUMP_CACHE[path]


def read_iuv(path: str, fmt: str, image_file: Optional[str] = None, image_hw=None) -> IUV:
    """Read ``path`` in format ``fmt`` (one of :data:`IUV_FORMATS`); for ``dump`` the entry of ``image_file``."""
    if fmt == "legacy_png":
        return read_legacy_iuv_png(path)
    if fmt == "d2_png":
        return read_d2_iuv_png(path)
    if fmt == "npz":
        return read_npz_iuv(path)
    if fmt == "dump":
        name = os.path.basename(image_file or "")
        index = _dump_index(path)
        if name not in index:
            raise KeyError(f"{path}: no dump entry for image {name!r}")
        return iuv_from_dump_entry(index[name], image_hw)
    raise ValueError(f"MODEL.DSA.IUV_FORMAT must be one of {IUV_FORMATS}, got {fmt!r}")


def split_legacy_instances(iuv: IUV, inds: np.ndarray, margin: int = 0) -> List[Tuple[Tuple[int, int, int, int], IUV]]:
    """Per person of a legacy full-scene result: ``[(box_xyxy, IUV cropped to the box)]``.

    ``inds`` is the ``*_INDS.png`` instance index per pixel (0 = none); the crop keeps only that instance's
    pixels (another person overlapping the box becomes background). Boxes are exclusive at x1, y1.
    """
    if inds.shape != iuv.shape:
        raise ValueError(f"INDS shape {inds.shape} differs from the IUV shape {iuv.shape}")
    out = []
    H, W = inds.shape
    for k in np.unique(inds):
        if k == 0:
            continue
        mask = inds == k
        ys, xs = np.nonzero(mask)
        x0, y0 = max(int(xs.min()) - margin, 0), max(int(ys.min()) - margin, 0)
        x1, y1 = min(int(xs.max()) + 1 + margin, W), min(int(ys.max()) + 1 + margin, H)
        m = mask[y0:y1, x0:x1]
        crop = iuv.crop(x0, y0, x1, y1)
        out.append(((x0, y0, x1, y1), IUV(np.where(m, crop.labels, 0), np.where(m, crop.u, 0), np.where(m, crop.v, 0))))
    return out
