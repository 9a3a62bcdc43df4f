"""File helpers every layer uses: clear errors for missing files, images read as RGB, atomic writes."""
import os
from typing import Callable, List

from PIL import Image

__all__ = ["IMAGE_EXTENSIONS", "atomic_write", "check_box_inside", "list_images", "read_image", "read_image_rgb",
           "require_dir", "require_file"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def require_file(path, what="file"):
    """``path`` as str; ``FileNotFoundError`` naming it (and what it should be) when it is not a file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def require_dir(path, what="folder"):
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def read_image_rgb(path) -> Image.Image:
    """The image at ``path`` as RGB; errors name the file (missing, unreadable or truncated)."""
    require_file(path, "image file")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except OSError as e:
        raise OSError(f"cannot read image {os.fspath(path)}: {e}") from e


def check_box_inside(box, width, height, where) -> tuple:
    """``box`` (x1, y1, x2, y2) as floats; ``ValueError`` naming ``where`` when it is empty or leaves the
    ``width`` x ``height`` image (PIL would pad the crop with black pixels)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"{where}: box {list(box)} is empty (expected x1 y1 x2 y2 with x2 > x1, y2 > y1)")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise ValueError(f"{where}: box {list(box)} lies outside the {width}x{height} image (expected "
                         f"0 <= x1 < x2 <= {width}, 0 <= y1 < y2 <= {height})")
    return x1, y1, x2, y2


def read_image(path, box=None) -> Image.Image:
    """An RGB PIL image, cropped to the xyxy ``box`` when given (an empty box, or one reaching outside the
    image, is an error naming the file)."""
    img = read_image_rgb(path)
    if box is not None:
        x1, y1, x2, y2 = check_box_inside(box, img.width, img.height, os.fspath(path))
        img = img.crop((int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2))))
    return img


def list_images(folder, recursive=True) -> List[str]:
    """Sorted image files under ``folder`` (by extension); error when the folder is missing or has none."""
    require_dir(folder, "image folder")
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files += [os.path.join(root, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
        if not recursive:
            break
    if not files:
        raise FileNotFoundError(f"no image ({', '.join(IMAGE_EXTENSIONS)}) found in folder {folder}")
    return sorted(files)


def atomic_write(path, write_fn: Callable, mode: str = "wb", **open_kwargs) -> None:
    """``write_fn(f)`` into ``path.tmp.<pid>`` (opened with ``mode`` and ``open_kwargs``, e.g. ``newline=""``),
    fsync, then rename over ``path``: readers never see a partial file. The temporary file is removed when
    writing fails."""
    path = os.fspath(path)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, mode, **open_kwargs) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
