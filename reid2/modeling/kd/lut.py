"""Import / export of a teacher's OIM look-up table (LUT) for KD_reid (Munjal et al. §4.2).

KD_reid copies the teacher's LUT (num_pids × D, one row per training identity) into the student's
OIM loss and freezes it. The table can come from the checkpoint of any common OIM codebase; the
id → row mapping of the teacher must equal the student's, which is checked through the row count.
"""
import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple, Optional, Tuple, Union

import numpy as np
import torch

from reid2.utils.serialization import UnsafeFileError, load_torch_file

__all__ = ["KNOWN_LUT_KEYS", "LutTable", "export_lut", "load_lut", "read_lut_table"]

logger = logging.getLogger(__name__)

# (state-dict key, codebase), searched in this order. A key also matches with any prefix ending
# in "." (DDP's "module.", psd2's meta-architecture path). COAT keeps one LUT per cascade stage:
# the 2nd stage is found first; pass key="roi_heads.reid_loss_3rd.lut" for the last one.
KNOWN_LUT_KEYS = (
    ("roi_heads.oim_loss.lut", "reid2"),
    ("roi_heads.reid_loss.lut", "SeqNet/NAE"),
    ("roi_heads.reid_loss_2nd.lut", "COAT"),
    ("roi_heads.reid_loss_3rd.lut", "COAT"),
    ("oim_loss.lb_layer.lookup_table", "psd2"),
)
_NPZ_DEFAULT_KEY = "lut"

LutSource = Union[str, Path, torch.Tensor, np.ndarray, Mapping]


def _load_checkpoint(path: Path) -> Mapping:
    """Tensors, arrays and plain containers only (``reid2.utils.serialization``): a LUT file never runs code."""
    try:
        checkpoint = load_torch_file(path)
    except (pickle.UnpicklingError, UnsafeFileError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"{path}: not a readable PyTorch checkpoint with tensors only ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); expected a .pth/.pt state dict, or a "
            f".npy/.npz LUT (see tools/export_lut.py)"
        ) from err
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{path}: expected a checkpoint dict (state dict or {{'model': state dict}}), "
                         f"got {type(checkpoint).__name__}")
    return checkpoint


def _state_dicts(checkpoint: Mapping):
    """The state dicts to search: ``checkpoint["model"]`` (Detectron2/SeqNet/COAT) then the top level."""
    model = checkpoint.get("model")
    return [model, checkpoint] if isinstance(model, Mapping) else [checkpoint]


def _find_in_checkpoint(checkpoint: Mapping, key: Optional[str], origin: str) -> Tuple[object, str]:
    states = _state_dicts(checkpoint)
    if key:
        for state in states:
            if key in state:
                return state[key], key
        raise ValueError(f"{origin}: key '{key}' not found; {_describe_candidates(states)}")
    for known, codebase in KNOWN_LUT_KEYS:
        for state in states:
            for name in state:
                if isinstance(name, str) and (name == known or name.endswith("." + known)):
                    logger.info("LUT from %s: key '%s' (%s convention)", origin, name, codebase)
                    return state[name], name
    raise ValueError(
        f"{origin}: no LUT under the known keys {[k for k, _ in KNOWN_LUT_KEYS]}; pass key=... "
        f"explicitly; {_describe_candidates(states)}"
    )


def _describe_candidates(states) -> str:
    names = [str(n) for s in states for n in s if "lut" in str(n).lower() or "lookup" in str(n).lower()]
    if names:
        return f"keys that look like a LUT: {names[:10]}"
    return f"the checkpoint has {sum(len(s) for s in states)} keys, none containing 'lut' or 'lookup'"


def _read_npz(path: Path, key: Optional[str]) -> Tuple[np.ndarray, str]:
    name = key or _NPZ_DEFAULT_KEY
    with np.load(path, allow_pickle=False) as archive:
        if name not in archive.files:
            raise ValueError(f"{path}: no array '{name}' in the .npz (arrays: {archive.files})")
        return archive[name], name


class LutTable(NamedTuple):
    """A raw LUT and where it came from (for error messages and export metadata)."""

    table: torch.Tensor  # float32, (num_pids, D), as stored
    source: str  # file path or a description of the in-memory object
    key: Optional[str]  # state-dict key or .npz array name; None for .npy / tensors

    def describe(self) -> str:
        return _describe(self.source, self.key)


def _describe(source: str, key: Optional[str]) -> str:
    return source if key is None else f"{source}, key '{key}'"


def read_lut_table(source: LutSource, key: Optional[str] = None) -> LutTable:
    """The raw table stored in ``source`` (float32, unnormalised) with its origin.

    ``source``: a checkpoint path (``.pth``/``.pt``/...), a ``.npy`` / ``.npz`` (array ``"lut"``),
    an already loaded checkpoint dict, or a tensor / array. Checks only that it is a finite 2-D table.
    """
    found = None
    if isinstance(source, (torch.Tensor, np.ndarray)):
        value, origin = source, f"the given {type(source).__name__}"
    elif isinstance(source, Mapping):
        origin = "the given checkpoint dict"
        value, found = _find_in_checkpoint(source, key, origin)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        origin = str(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"LUT source {path} does not exist (expected a checkpoint .pth or a .npy/.npz)")
        suffix = path.suffix.lower()
        if suffix == ".npy":
            value = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            value, found = _read_npz(path, key)
        else:
            value, found = _find_in_checkpoint(_load_checkpoint(path), key, origin)
    else:
        raise TypeError(f"LUT source must be a path, a checkpoint dict, a tensor or an array, "
                        f"got {type(source).__name__}")
    where = _describe(origin, found)
    try:
        table = torch.as_tensor(value).detach().to(device="cpu", dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{where}: the LUT is not a numeric array ({type(value).__name__})") from err
    if table.dim() != 2:
        raise ValueError(f"{where}: a LUT must be 2-D (num_pids × D), got shape {tuple(table.shape)}")
    if not torch.isfinite(table).all():
        bad = int((~torch.isfinite(table)).any(dim=1).sum())
        raise ValueError(f"{where}: the LUT has non-finite values (NaN/Inf) in {bad} rows")
    return LutTable(table.contiguous(), origin, found)


def _row_mismatch_cause(rows: int, num_pids: int, cols: int) -> str:
    if {rows, num_pids} == {482, 483}:
        return ("PRW: 482 rows is the SeqNet/NAE convention (LUT_SIZE 482) vs 483 ids in reid2's contiguous "
                "mapping of the PRW training ids; use a teacher trained with reid2's mapping")
    if cols == num_pids:
        return "the table looks transposed (D × num_pids); transpose it before loading"
    if abs(rows - num_pids) == 1:
        return ("off by one: the teacher's table may hold an extra background/unlabeled row or skip an id "
                "(e.g. 1-based pids)")
    return ("the teacher was trained on another dataset or split (CUHK-SYSU: 5532 training ids, PRW: 483), "
            "or the student's num_pids is wrong")


def load_lut(
    source: LutSource, num_pids: int, feat_dim: Optional[int] = None, key: Optional[str] = None
) -> torch.Tensor:
    """The teacher LUT for the student's OIM: float32 (num_pids × D), rows L2-normalised.

    Keys are searched in :data:`KNOWN_LUT_KEYS` order unless ``key`` is given. Rows are
    normalised because the student's OIM compares them with L2-normalised features by a dot
    product (the Caffe OIM leaves them unnormalised); all-zero rows (ids never seen by the
    teacher) stay zero. Row r must be the student's contiguous id r: only the count is checkable.
    """
    if num_pids < 1:
        raise ValueError(f"load_lut: num_pids must be >= 1, got {num_pids}")
    raw = read_lut_table(source, key)
    table, origin = raw.table, raw.describe()
    rows, dim = table.shape
    if rows != num_pids:
        raise ValueError(
            f"{origin}: LUT has {rows} rows (shape {rows}×{dim}) but the student has {num_pids} "
            f"training ids; "
            f"likely cause: {_row_mismatch_cause(rows, num_pids, dim)}"
        )
    if feat_dim is not None and dim != feat_dim:
        raise ValueError(
            f"{origin}: LUT feature dim is {dim} but the student's OIM embedding has {feat_dim} dims; "
            f"the teacher's embedding size must equal the student's"
        )
    norms = table.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, table / norms.clamp_min(torch.finfo(table.dtype).tiny), table)


def export_lut(
    checkpoint_path: Union[str, Path], out_path: Union[str, Path], key: Optional[str] = None
) -> LutTable:
    """Write the LUT of a checkpoint to ``.npy`` (the table) or ``.npz`` (``lut`` + metadata).

    The table is written as stored (float32, not normalised) so that the export is faithful;
    :func:`load_lut` normalises on import. The ``.npz`` adds ``num_pids``, ``feat_dim``, ``source``
    (the checkpoint path) and ``key``. Returns the exported table with its origin.
    """
    out = Path(out_path)
    suffix = out.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise ValueError(f"export_lut: output {out} must end in .npy or .npz")
    checkpoint_path = Path(checkpoint_path)
    if checkpoint_path.suffix.lower() in (".npy", ".npz"):
        raise ValueError(f"export_lut: {checkpoint_path} is already an exported LUT; pass a checkpoint")
    raw = read_lut_table(checkpoint_path, key)
    array = raw.table.numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(out, array)
    else:
        np.savez(out, lut=array, num_pids=np.int64(array.shape[0]), feat_dim=np.int64(array.shape[1]),
                 source=np.str_(raw.source), key=np.str_(raw.key))
    return raw
