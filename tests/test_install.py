"""The installation: versions, the Detectron2 compiled-op stub, collect_env."""
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO


def test_version_single_source():
    import reid2

    setup_py = (REPO / "setup.py").read_text()
    assert "get_version()" in setup_py and re.fullmatch(r"\d+\.\d+\.\d+", reid2.__version__)
    out = subprocess.run([sys.executable, "setup.py", "--version"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()[-1]
    assert out == reid2.__version__


def test_compiled_op_stub_names_the_op():
    from detectron2 import _C

    import reid2  # noqa: F401

    if not getattr(_C, "REID2_STUB", False):
        pytest.skip("an official Detectron2 build with compiled ops is installed")
    with pytest.raises(RuntimeError, match="box_iou_rotated"):
        import torch
        from detectron2.layers.rotated_boxes import pairwise_iou_rotated

        pairwise_iou_rotated(torch.zeros(1, 5), torch.zeros(1, 5))


def test_collect_env_reports_versions_and_ops():
    out = subprocess.run([sys.executable, "-m", "reid2.collect_env"], capture_output=True, text=True,
                         check=True).stdout
    for key in ("torch", "torchvision", "detectron2", "detectron2 compiled ops", "reid2"):
        assert key in out
    assert "not importable" not in out


def test_pure_python_detectron2_parts_work():
    """What reid2 uses from Detectron2 runs without compiled ops (torchvision's nms/roi_align)."""
    import torch
    from detectron2.layers import ROIAlign, batched_nms

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float)
    keep = batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.zeros(3, dtype=torch.long), 0.5)
    assert keep.tolist() == [0, 2]
    out = ROIAlign((2, 2), 1.0, 0, aligned=True)(torch.ones(1, 1, 8, 8), torch.tensor([[0, 0, 0, 4, 4.0]]))
    assert torch.allclose(out, torch.ones(1, 1, 2, 2))
