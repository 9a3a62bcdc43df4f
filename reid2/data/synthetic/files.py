"""Writing a generated dataset: atomically (temp dir, then rename), once (a marker with the parameters), and
byte-reproducibly (MATLAB files with a fixed header)."""
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["GENERATOR_VERSION", "MARKER", "write_once", "save_mat", "struct_array", "cell_column", "smallest_uint"]

GENERATOR_VERSION = 1
MARKER = "SYNTHETIC.json"
_MAT_HEADER_BYTES = 116
_logger = logging.getLogger(__name__)


def _marker_content(dataset: str, params: dict) -> dict:
    return {"generator": "reid2.data.synthetic", "version": GENERATOR_VERSION, "dataset": dataset,
            "params": json.loads(json.dumps(params))}  # tuples → lists, as read back


def _read_marker(folder: Path):
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def write_once(target: Path, dataset: str, params: dict, writer: Callable[[Path], None]) -> Path:
    """Run ``writer(tmp_dir)`` and move its output to ``target`` unless ``target`` already holds the same data.

    The data is written to a temporary sibling and renamed into place with the marker inside, so ``target``
    exists only complete: an interrupted run leaves no marker and is redone next time.
    """
    target = Path(target)
    wanted = _marker_content(dataset, params)
    if _read_marker(target) == wanted:
        _logger.info("%s already holds synthetic %s data with these parameters", target, dataset)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        writer(tmp)
        (tmp / MARKER).write_text(json.dumps(wanted, indent=1, sort_keys=True) + "\n")
        if _read_marker(target) == wanted:  # another process finished the same data meanwhile
            shutil.rmtree(tmp)
            return target
        if target.exists():
            _logger.info("replacing %s (different parameters or incomplete)", target)
            shutil.rmtree(target)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def save_mat(path: Path, variables: dict) -> None:
    """``scipy.io.savemat`` (compressed, like the original files) with a fixed header instead of the time."""
    from scipy.io import savemat

    buffer = io.BytesIO()
    savemat(buffer, variables, do_compression=True)
    data = bytearray(buffer.getvalue())
    header = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created by: reid2.data.synthetic"
    data[:_MAT_HEADER_BYTES] = header.ljust(_MAT_HEADER_BYTES, b" ")
    Path(path).write_bytes(bytes(data))


def struct_array(records, fields) -> np.ndarray:
    """A 1×n MATLAB struct array with ``fields`` in this order (loaders unpack fields by position)."""
    array = np.zeros((1, len(records)), dtype=[(f, "O") for f in fields])
    for i, record in enumerate(records):
        for f in fields:
            array[0, i][f] = record[f]
    return array


def cell_column(items) -> np.ndarray:
    """An n×1 MATLAB cell array."""
    cell = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        cell[i, 0] = item
    return cell


def smallest_uint(values) -> np.ndarray:
    """A 1×n row in MATLAB's smallest unsigned type, as the CUHK-SYSU files store integers (uint8 if < 256)."""
    values = np.asarray(values).reshape(1, -1)
    if values.min() < 0:
        raise ValueError(f"negative value in {values.tolist()}: CUHK-SYSU stores unsigned integers")
    for dtype in (np.uint8, np.uint16, np.uint32):
        if values.max() <= np.iinfo(dtype).max:
            return values.astype(dtype)
    raise ValueError(f"value too large for uint32: {values.max()}")
