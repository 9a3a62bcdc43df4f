"""reid2.utils.files: atomic writes leave no temporary file behind."""
import pytest

from reid2.utils.files import atomic_write


def test_atomic_write_failure_removes_the_temp_file_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise OSError("simulated write error")

    with pytest.raises(OSError, match="simulated"):
        atomic_write(path, fail)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"] and path.read_bytes() == b"old"
    atomic_write(path, lambda f: f.write(b"new"))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pth"] and path.read_bytes() == b"new"
