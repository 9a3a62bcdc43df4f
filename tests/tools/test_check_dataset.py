"""tools/check_dataset.py on the synthetic datasets: clean data exits 0; a copy with a truncated JPEG and a box
outside its image exits 1 naming both files."""
import shutil

import numpy as np
from scipy.io import loadmat, savemat

from tests.helpers import run_tool

NAMES = ["synthetic_market_test", "synthetic_cuhk_sysu_test"]


def test_help_documents_the_checks():
    res = run_tool(["tools/check_dataset.py", "--help"])
    assert res.returncode == 0
    for text in ("decoded once", "reaching outside the image", "integers >= -1", "camid", "exits 1"):
        assert text in res.stdout


def test_clean_synthetic_data_passes(datasets_root):
    res = run_tool(["tools/check_dataset.py", *NAMES], env_extra={"REID2_DATASETS": str(datasets_root)})
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {line.split()[0]: line.split() for line in res.stdout.splitlines() if line.startswith("synthetic_")}
    assert rows["synthetic_market_test"][-1] == "-" and rows["synthetic_cuhk_sysu_test"][-1] == "-"  # no errors
    assert "2 of 2 datasets clean" in res.stdout


def test_truncated_image_and_bad_box_fail_naming_the_files(datasets_root, tmp_path):
    root = tmp_path / "datasets"
    shutil.copytree(datasets_root, root)
    market = root / "synthetic" / "Market-1501-v15.09.15" / "query"
    cut = sorted(market.iterdir())[0]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    images_mat = root / "synthetic" / "CUHK-SYSU" / "annotation" / "Images.mat"
    mat = loadmat(images_mat)
    pool = {str(np.asarray(n).ravel()[0]) for n in loadmat(images_mat.with_name("pool.mat"))["pool"].ravel()}
    entry = next(e for e in mat["Img"].ravel() if str(np.asarray(e["imname"]).ravel()[0]) in pool)  # a test image
    scene = str(np.asarray(entry["imname"]).ravel()[0])
    entry["box"].ravel()[0][0] = np.array([[5000, 10, 30, 40]], dtype=np.int32)  # x far right of the image
    savemat(images_mat, {"Img": mat["Img"]})

    res = run_tool(["tools/check_dataset.py", *NAMES], env_extra={"REID2_DATASETS": str(root)})
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"cannot read image {cut}" in res.stdout
    assert f"{root}/synthetic/CUHK-SYSU/Image/SSM/{scene}: box [5000.0, 10.0, 5030.0, 50.0]" in res.stdout
    assert "errors in synthetic_market_test, synthetic_cuhk_sysu_test" in res.stdout
