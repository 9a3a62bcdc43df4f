"""The leaf helpers every layer and project shares: atomic writes, numpy L2 normalisation, the DDP unwrap."""
import numpy as np
import pytest
import torch

from reid2.utils.arrays import l2_normalize
from reid2.utils.files import atomic_write
from reid2.utils.modules import unwrap_model


def test_atomic_write_replaces_whole_files_and_passes_open_arguments(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("old")
    atomic_write(path, lambda f: f.write("a,b\r\n"), mode="w", newline="")
    assert path.read_bytes() == b"a,b\r\n"  # newline="" keeps the csv module's terminator as written
    assert [p.name for p in tmp_path.iterdir()] == ["rows.csv"]


def test_atomic_write_failure_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "x.npz"
    atomic_write(path, lambda f: np.savez(f, a=np.arange(3)))

    def fail(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, fail)
    with np.load(path) as z:
        np.testing.assert_array_equal(z["a"], [0, 1, 2])
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_l2_normalize_rows_dtype_and_zero_rows():
    x = [[3.0, 4.0], [0.0, 0.0]]
    out = l2_normalize(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    out64 = l2_normalize(x, axis=1, dtype=np.float64)
    assert out64.dtype == np.float64 and out64[0, 0] == 0.6
    np.testing.assert_allclose(l2_normalize([[3.0, 0.0], [4.0, 0.0]], axis=0), [[0.6, 0.0], [0.8, 0.0]])


def test_unwrap_model_removes_every_data_parallel_layer():
    net = torch.nn.Linear(2, 2)
    assert unwrap_model(net) is net
    assert unwrap_model(torch.nn.DataParallel(torch.nn.DataParallel(net))) is net
