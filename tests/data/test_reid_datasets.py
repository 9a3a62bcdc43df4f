"""Re-ID dataset loaders on tiny fake datasets in the exact real layouts, on the real metadata in ../shared/data,
and through Detectron2's DatasetCatalog."""
import os
import re
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from scipy.io import savemat

from reid2.data.datasets import builtin
from reid2.data.datasets.base import (
    check_exists,
    combine_train_sets,
    register_reid_dataset,
    relabel,
    seeded_id_split,
)
from reid2.data.datasets.cuhk01 import CUHK01_LAYOUT, load_cuhk01
from reid2.data.datasets.cuhk03 import (
    CUHK03_LAYOUT,
    cuhk03_classic_records,
    cuhk03_classic_split,
    load_cuhk03,
    load_cuhk03_classic,
    read_cuhk03_testsets,
    write_cuhk03_images,
)
from reid2.data.datasets.dukemtmc import DUKEMTMC_LAYOUT, load_dukemtmc
from reid2.data.datasets.market1501 import MARKET1501_LAYOUT, load_market1501
from reid2.data.datasets.msmt17 import MSMT17_LAYOUT, load_msmt17
from reid2.data.datasets.viper import VIPER_LAYOUT, load_viper
from reid2.data.synthetic.files import cell_column
from tests.helpers import REPO

SHARED_DATA = REPO.parent / "shared" / "data"
BLANK = np.zeros((8, 4, 3), np.uint8)


def write_images(folder, names):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name.endswith((".jpg", ".png", ".bmp")):
            assert cv2.imwrite(str(folder / name), BLANK)
        else:
            (folder / name).write_bytes(b"")


def touch_all(folder, names):
    """Empty files: enough for loaders that only list folders (fast for tens of thousands of names)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).touch()


def shared(*parts):
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} (real data in ../shared/data) is absent")
    return path


def by_split(dicts):
    return {s: [d for d in dicts if d["split"] == s] for s in ("train", "query", "gallery")}


# ------------------------------------------------------------------------------------------- Market / Duke
MARKET_TRAIN = ["0010_c1s1_000151_01.jpg", "0002_c2s1_000301_01.jpg", "0002_c1s1_000451_03.jpg",
                "0007_c6s4_001877_00.jpg", "1488_c1s6_023021_00.jpg.jpg", "Thumbs.db"]
MARKET_QUERY = ["0001_c1s1_001051_00.jpg", "0001_c2s1_000301_00.jpg", "0003_c3s1_000551_00.jpg",
                "-1_c1s1_000001_00.jpg"]
MARKET_GALLERY = ["0001_c1s1_001101_01.jpg", "0001_c4s6_000810_02.jpg", "0003_c5s1_001426_00.jpg",
                  "0000_c1s1_000151_01.jpg", "0000_c6s3_094992_01.jpg.jpg", "-1_c1s1_000401_03.jpg",
                  "-1_c2s1_000126_05.jpg"]
MARKET_GT_BBOX = ["0001_c1s1_001051_00.jpg", "0001_c1s1_001076_00.jpg", "0001_c2s1_000301_00.jpg",
                  "0001_c5s1_001426_00.jpg", "0003_c3s1_000576_00.jpg", "0002_c1s1_000451_00.jpg"]


def make_market(root):
    write_images(root / "bounding_box_train", MARKET_TRAIN)
    write_images(root / "query", MARKET_QUERY)
    write_images(root / "bounding_box_test", MARKET_GALLERY)
    write_images(root / "gt_bbox", MARKET_GT_BBOX)
    return root


def test_market_train_relabels_sorted_pids_and_skips_non_jpg(tmp_path):
    root = make_market(tmp_path / "Market-1501-v15.09.15")
    train = load_market1501(str(root), "train")
    assert len(train) == 5  # Thumbs.db skipped
    pairs = sorted((d["orig_pid"], d["pid"]) for d in train)
    assert pairs == [(2, 0), (2, 0), (7, 1), (10, 2), (1488, 3)]
    d = next(d for d in train if d["image_id"] == "0007_c6s4_001877_00")
    assert d == {"file_name": str(root / "bounding_box_train" / "0007_c6s4_001877_00.jpg"), "pid": 1,
                 "camid": 5, "split": "train", "image_id": "0007_c6s4_001877_00", "orig_pid": 7}
    assert all(os.path.isabs(d["file_name"]) and os.path.isfile(d["file_name"]) for d in train)


def test_market_test_drops_junk_keeps_distractors_and_original_pids(tmp_path):
    root = make_market(tmp_path / "Market-1501-v15.09.15")
    test = load_market1501(str(root), "test")
    parts = by_split(test)
    assert [d["split"] for d in test] == ["query"] * 3 + ["gallery"] * 5  # queries first
    assert sorted((d["pid"], d["camid"]) for d in parts["query"]) == [(1, 0), (1, 1), (3, 2)]
    assert sorted((d["pid"], d["camid"]) for d in parts["gallery"]) == [(0, 0), (0, 5), (1, 0), (1, 3), (3, 4)]
    assert all("orig_pid" not in d for d in test)


def test_market_multiquery_uses_gt_bbox_of_query_pid_camera_pairs(tmp_path):
    root = make_market(tmp_path / "Market-1501-v15.09.15")
    parts = by_split(load_market1501(str(root), "multiquery_test"))
    # (1, c1) x2 and (1, c2) and (3, c3) are query views; (1, c5) and the train id 2 are not
    assert sorted(d["image_id"] for d in parts["query"]) == [
        "0001_c1s1_001051_00", "0001_c1s1_001076_00", "0001_c2s1_000301_00", "0003_c3s1_000576_00"]
    assert all(Path(d["file_name"]).parent.name == "gt_bbox" for d in parts["query"])
    assert len(parts["gallery"]) == 5


def test_market_errors_name_the_path_and_the_layout(tmp_path):
    root = make_market(tmp_path / "Market-1501-v15.09.15")
    write_images(root / "query", ["0001_c7s1_001051_00.jpg"])  # camera 7 does not exist
    with pytest.raises(ValueError, match=re.escape(str(root / "query" / "0001_c7s1_001051_00.jpg"))) as err:
        load_market1501(str(root), "test")
    assert "0002_c1s1_000451_03.jpg" in str(err.value)  # the expected pattern, by example
    (root / "query" / "0001_c7s1_001051_00.jpg").unlink()
    shutil.rmtree(root / "gt_bbox")
    with pytest.raises(FileNotFoundError) as err:
        load_market1501(str(root), "multiquery_test")
    assert str(root / "gt_bbox") in str(err.value) and MARKET1501_LAYOUT in str(err.value)
    with pytest.raises(FileNotFoundError, match="Expected dataset structure for Market-1501"):
        load_market1501(str(tmp_path / "nowhere"), "train")
    with pytest.raises(ValueError, match="split must be one of"):
        load_market1501(str(root), "val")


def test_dukemtmc_names_and_cameras(tmp_path):
    root = tmp_path / "DukeMTMC-reID"
    write_images(root / "bounding_box_train", ["0005_c2_f0046182.jpg", "0001_c8_f0000001.jpg"])
    write_images(root / "query", ["0003_c1_f0100000.jpg"])
    write_images(root / "bounding_box_test", ["0003_c5_f0100001.jpg", "7140_c4_f0200001.jpg"])
    train = load_dukemtmc(str(root), "train")
    assert sorted((d["orig_pid"], d["pid"], d["camid"]) for d in train) == [(1, 0, 7), (5, 1, 1)]
    test = load_dukemtmc(str(root), "test")
    assert [(d["split"], d["pid"], d["camid"]) for d in test] == [
        ("query", 3, 0), ("gallery", 3, 4), ("gallery", 7140, 3)]
    write_images(root / "query", ["0003_c1s1_000551_00.jpg"])  # a Market name
    with pytest.raises(ValueError, match="0001_c2_f0046182.jpg"):
        load_dukemtmc(str(root), "test")


def test_readme_shows_the_same_layouts_as_the_errors():
    readme = (REPO / "datasets" / "README.md").read_text()
    for layout in (MARKET1501_LAYOUT, DUKEMTMC_LAYOUT, CUHK03_LAYOUT, CUHK01_LAYOUT, VIPER_LAYOUT, MSMT17_LAYOUT):
        assert f"```\n{layout}\n```" in readme
    section = readme.split("## Person search datasets", 1)[-1]
    for name in ("cuhk_sysu_train", "cuhk_sysu_test", "prw_train", "prw_test", "prw_mini_test", "TestG100"):
        assert name in section, f"datasets/README.md person-search section lacks {name}"


def test_check_exists_names_the_first_missing_path(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        check_exists([str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c")], "X", "X/\n  b/")
    assert str(tmp_path / "b") in str(err.value) and str(tmp_path / "c") not in str(err.value)
    assert str(err.value).endswith("X/\n  b/")


# ------------------------------------------------------------------------------------------ base helpers
def test_relabel_and_combine_train_sets_offset_ids():
    a = [{"pid": 9, "split": "train"}, {"pid": 3, "split": "train"}, {"pid": 9, "split": "train"}]
    b = [{"pid": 0, "split": "train"}, {"pid": 5, "split": "train"}]
    relabelled, mapping = relabel(a)
    assert mapping == {3: 0, 9: 1}
    assert [(d["pid"], d["orig_pid"]) for d in relabelled] == [(1, 9), (0, 3), (1, 9)]
    assert a[0] == {"pid": 9, "split": "train"}  # inputs untouched
    combined = combine_train_sets([relabelled, b], names=["a", "b"])
    assert [(d["pid"], d["orig_pid"], d["dataset"]) for d in combined] == [
        (1, 9, "a"), (0, 3, "a"), (1, 9, "a"), (2, 0, "b"), (3, 5, "b")]
    assert [d["dataset"] for d in combine_train_sets([b, b])] == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="2 training sets"):
        combine_train_sets([a, b], names=["a"])


def test_seeded_id_split_is_reproducible_and_disjoint():
    ids = list(range(100, 140))
    train, test = seeded_id_split(ids, 20, seed=0, split_index=3)
    assert (train, test) == seeded_id_split(reversed(ids), 20, seed=0, split_index=3)
    assert len(train) == len(test) == 20 and not set(train) & set(test) and set(train) | set(test) == set(ids)
    assert train != seeded_id_split(ids, 20, seed=0, split_index=4)[0]
    assert train != seeded_id_split(ids, 20, seed=1, split_index=3)[0]
    with pytest.raises(ValueError, match="cannot split 40 identities"):
        seeded_id_split(ids, 40, 0, 0)


# ----------------------------------------------------------------------------------------- VIPeR / CUHK01
def make_viper(root, num_pairs):
    ids = [3 * i + 1 for i in range(num_pairs)]
    write_images(root / "cam_a", [f"{i:03d}_0.bmp" for i in ids])
    write_images(root / "cam_b", [f"{i:03d}_90.bmp" for i in ids])
    return ids


def check_two_camera_split(train, test, num_ids):
    parts = by_split(test)
    train_ids, test_ids = {d["orig_pid"] for d in train}, {d["pid"] for d in test}
    assert len(train_ids) == num_ids // 2 and len(test_ids) == num_ids - num_ids // 2
    assert not train_ids & test_ids
    assert sorted({d["pid"] for d in train}) == list(range(num_ids // 2))
    assert {d["camid"] for d in parts["query"]} == {0} and {d["camid"] for d in parts["gallery"]} == {1}
    assert {d["pid"] for d in parts["query"]} == {d["pid"] for d in parts["gallery"]} == test_ids
    return parts


def test_viper_splits(tmp_path):
    root = tmp_path / "VIPeR"
    ids = make_viper(root, 7)
    train = load_viper(str(root), 2, "train")
    test = load_viper(str(root), 2, "test")
    parts = check_two_camera_split(train, test, 7)
    assert len(train) == 6 and len(parts["query"]) == len(parts["gallery"]) == 4
    assert {Path(d["file_name"]).parent.name for d in parts["query"]} == {"cam_a"}
    assert set(ids) == {d["orig_pid"] for d in train} | {d["pid"] for d in test}
    assert load_viper(str(root), 2, "train") == train
    (root / "cam_b" / "001_90.bmp").unlink()
    with pytest.raises(ValueError, match=r"\[1\] \(of 1\) have an image in only one"):
        load_viper(str(root), 0, "train")
    write_images(root / "cam_b", ["1_90.bmp"])
    with pytest.raises(ValueError, match="000_45.bmp"):
        load_viper(str(root), 0, "train")


def test_viper_real_58_pairs():
    root = shared("VIPeR")
    splits = []
    for i in range(10):
        train, test = load_viper(str(root), i, "train"), load_viper(str(root), i, "test")
        parts = check_two_camera_split(train, test, 58)
        assert len(train) == 58 and len(parts["query"]) == len(parts["gallery"]) == 29
        splits.append(tuple(sorted(d["orig_pid"] for d in train if d["camid"] == 0)))
    assert len(set(splits)) == 10  # ten different splits
    q = by_split(load_viper(str(root), 0, "test"))["query"][0]
    assert re.fullmatch(r"\d{3}_\d+", q["image_id"]) and q["pid"] == int(q["image_id"][:3])


def test_cuhk01_cameras_and_splits(tmp_path):
    root = tmp_path / "cuhk01"
    write_images(root / "campus", [f"{pid:04d}{k:03d}.png" for pid in range(1, 8) for k in range(1, 5)])
    train = load_cuhk01(str(root), 0, "train")
    test = load_cuhk01(str(root), 0, "test")
    parts = check_two_camera_split(train, test, 7)
    assert len(train) == 12 and len(parts["query"]) == len(parts["gallery"]) == 8
    cams = {d["image_id"][-3:]: d["camid"] for d in train}
    assert cams == {"001": 0, "002": 0, "003": 1, "004": 1}
    write_images(root / "campus", ["0001005.png"])
    with pytest.raises(ValueError, match="0001005.png"):
        load_cuhk01(str(root), 0, "train")
    with pytest.raises(FileNotFoundError, match=re.escape(CUHK01_LAYOUT)):
        load_cuhk01(str(tmp_path / "missing"), 0, "train")


# ---------------------------------------------------------------------------------------------- CUHK03

def column(values, dtype):
    return np.asarray(values, dtype=dtype).reshape(-1, 1)


def write_new_protocol(path, names, train_idx, query_idx, gallery_idx):
    """The exact structure of cuhk03_new_protocol_config_*.mat (N x 1 arrays, 1-based indices)."""
    pairs = [tuple(int(x) for x in n[:-4].split("_")) for n in names]
    offsets = {1: 0, 2: 843, 3: 1283, 4: 1360, 5: 1418}  # ids of the camera pairs before
    savemat(path, {"filelist": cell_column(names),
                   "labels": column([offsets[pair] + pid for pair, pid, _, _ in pairs], np.uint16),
                   "camId": column([view for _, _, view, _ in pairs], np.uint8),
                   "train_idx": column(train_idx, np.uint16), "query_idx": column(query_idx, np.uint16),
                   "gallery_idx": column(gallery_idx, np.uint16)})


def mat_structure(path):
    from scipy.io import loadmat

    mat = loadmat(path)
    return {k: (v.dtype, v.shape[1], type(v.ravel()[0]).__name__) for k, v in mat.items() if not k.startswith("__")}


CUHK03_NAMES = ["1_001_1_01.png", "1_001_2_06.png", "1_002_1_01.png", "1_002_2_07.png", "2_001_1_02.png",
                "2_001_2_06.png", "2_001_2_07.png", "5_049_1_05.png", "5_049_2_10.png"]


def test_cuhk03_new_protocol_synthetic_mat(tmp_path):
    root = tmp_path / "cuhk03"
    root.mkdir()
    write_new_protocol(root / "cuhk03_new_protocol_config_labeled.mat", CUHK03_NAMES, [8, 9, 3, 4],
                       [1, 5], [2, 6, 7])
    write_images(root / "images_labeled", CUHK03_NAMES)
    train = load_cuhk03(str(root), "labeled", "train")
    assert [(d["image_id"], d["orig_pid"], d["pid"], d["camid"]) for d in train] == [
        ("5_049_1_05", 1467, 1, 0), ("5_049_2_10", 1467, 1, 1), ("1_002_1_01", 2, 0, 0), ("1_002_2_07", 2, 0, 1)]
    test = load_cuhk03(str(root), "labeled", "test")
    assert [(d["split"], d["pid"], d["camid"]) for d in test] == [
        ("query", 1, 0), ("query", 844, 0), ("gallery", 1, 1), ("gallery", 844, 1), ("gallery", 844, 1)]
    (root / "images_labeled" / "2_001_2_07.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks 1 image\(s\) listed in .*labeled\.mat \(e\.g\. 2_001_2_07"):
        load_cuhk03(str(root), "labeled", "test")
    write_new_protocol(root / "cuhk03_new_protocol_config_labeled.mat", CUHK03_NAMES, [0, 1], [2], [3])
    with pytest.raises(ValueError, match=r"train_idx must hold 1-based rows of filelist \(1\.\.9\), found 0\.\.1"):
        load_cuhk03(str(root), "labeled", "train")
    savemat(root / "cuhk03_new_protocol_config_labeled.mat", {"labels": column([1], np.uint16)})
    with pytest.raises(ValueError, match=r"lacks \['camId', 'filelist', 'query_idx'"):
        load_cuhk03(str(root), "labeled", "train")
    with pytest.raises(ValueError, match="image_type must be one of"):
        load_cuhk03(str(root), "manual", "train")


@pytest.mark.parametrize("image_type, num_train, num_gallery", [("labeled", 7368, 5328), ("detected", 7365, 5332)])
def test_cuhk03_new_protocol_real_mat(tmp_path, image_type, num_train, num_gallery):
    mat = shared("cuhk03_np_meta", f"cuhk03_new_protocol_config_{image_type}.mat")
    root = tmp_path / "cuhk03"
    root.mkdir()
    (root / mat.name).symlink_to(mat)
    write_new_protocol(tmp_path / "synthetic.mat", CUHK03_NAMES, [1], [2], [3])
    assert mat_structure(tmp_path / "synthetic.mat") == mat_structure(mat)  # the test writer is faithful
    from scipy.io import loadmat
    touch_all(root / f"images_{image_type}", [str(n[0]) for n in loadmat(mat)["filelist"].ravel()])
    train = load_cuhk03(str(root), image_type, "train")
    parts = by_split(load_cuhk03(str(root), image_type, "test"))
    assert len(train) == num_train and {d["pid"] for d in train} == set(range(767))
    assert len(parts["query"]) == 1400 and len(parts["gallery"]) == num_gallery
    test_ids = {d["pid"] for d in parts["query"]}
    assert len(test_ids) == 700 and {d["pid"] for d in parts["gallery"]} == test_ids
    assert not test_ids & {d["orig_pid"] for d in train}
    assert {d["camid"] for d in train + parts["query"] + parts["gallery"]} == {0, 1}
    assert all(d["camid"] == int(d["image_id"].split("_")[2]) - 1 for d in parts["query"])


class FakeV73Mat(dict):
    """h5py-like access to cuhk-03.mat: ``mat[name]`` / ``mat[ref]`` give arrays stored transposed, as HDF5
    stores MATLAB arrays; references are keys of this dict."""

    def store(self, array):
        ref = f"#refs#/{len(self)}"
        self[ref] = array
        return ref


def fill_cuhk03_mat(mat, pairs, testsets):
    """``pairs``: per camera pair, per identity, 10 images (None = empty cell). Same structure as the release."""
    pair_refs = []
    for identities in pairs:
        refs = np.empty((10, len(identities)), dtype=object)  # MATLAB (num_pids, 10), stored transposed
        for pid, images in enumerate(identities):
            for k, image in enumerate(images):
                refs[k, pid] = mat.store(np.zeros(2, np.uint64) if image is None else image.T)
        pair_refs.append(mat.store(refs))
    return pair_refs, [mat.store(np.asarray(t, np.float64).T) for t in testsets]


def cuhk03_content():
    rng = np.random.default_rng(0)
    image = lambda: rng.integers(0, 255, (6, 4, 3), dtype=np.uint8)
    pairs = [[[image() for _ in range(10)], [image()] * 5 + [None] * 3 + [image()] * 2],  # pair 1: ids 1, 2
             [[image() for _ in range(10)] for _ in range(3)]]  # pair 2: ids 1..3
    testsets = [[[1, 2], [2, 3]], [[2, 1], [2, 2]]]
    return pairs, testsets


def test_cuhk03_image_extraction_and_classic_splits_from_the_mat_structure(tmp_path):
    mat = FakeV73Mat()
    pairs, testsets = cuhk03_content()
    pair_refs, testset_refs = fill_cuhk03_mat(mat, pairs, testsets)
    mat["labeled"], mat["testsets"] = np.array([pair_refs], dtype=object), np.array([testset_refs], dtype=object)
    out = tmp_path / "images_labeled"
    out.mkdir()
    assert write_cuhk03_images(mat, "labeled", str(out)) == 47
    assert not (out / "1_002_2_06.png").exists() and (out / "1_002_2_09.png").exists()
    bgr = cv2.imread(str(out / "2_003_2_07.png"))
    np.testing.assert_array_equal(bgr[..., ::-1], pairs[1][2][6])
    assert [t.tolist() for t in read_cuhk03_testsets(mat)] == testsets

    records = cuhk03_classic_records(str(out))
    train = cuhk03_classic_split(records, read_cuhk03_testsets(mat), 0, "train")
    # global ids: pair 1 has 2 ids, so (2, pid) → 2 + pid
    assert sorted({(d["orig_pid"], d["pid"]) for d in train}) == [(1, 0), (3, 1), (4, 2)]
    assert len(train) == 30
    test = cuhk03_classic_split(records, read_cuhk03_testsets(mat), 0, "test")
    parts = by_split(test)
    assert [d["file_name"] for d in parts["query"]] == [d["file_name"] for d in parts["gallery"]]
    assert len(parts["query"]) == 17 and {d["pid"] for d in parts["query"]} == {2, 5}
    assert all(d["camid"] == (int(d["image_id"][-2:]) > 5) for d in test)
    with pytest.raises(ValueError, match=r"split_index must be in 0\.\.1"):
        cuhk03_classic_split(records, testsets, 2, "train")
    with pytest.raises(ValueError, match=r"\(2, 9\)"):
        cuhk03_classic_split(records, [np.array([[2, 9]])], 0, "train")


def test_cuhk03_classic_without_h5py_says_how_to_install_it(tmp_path, monkeypatch):
    root = tmp_path / "cuhk03"
    (root / "cuhk03_release").mkdir(parents=True)
    (root / "cuhk03_release" / "cuhk-03.mat").write_bytes(b"\x89HDF\r\n")
    write_images(root / "images_labeled", CUHK03_NAMES)
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py → ImportError
    with pytest.raises(ImportError, match="MATLAB v7.3 .*pip install h5py"):
        load_cuhk03_classic(str(root), "labeled", 0, "train")
    empty = tmp_path / "cuhk03_without_release"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(empty / "cuhk03_release" / "cuhk-03.mat"))):
        load_cuhk03_classic(str(empty), "labeled", 0, "train")


def test_cuhk03_classic_from_a_real_hdf5_file(tmp_path):
    h5py = pytest.importorskip("h5py", reason="h5py is not installed (needed to read MATLAB v7.3 files)")
    root = tmp_path / "cuhk03"
    (root / "cuhk03_release").mkdir(parents=True)
    pairs, testsets = cuhk03_content()
    with h5py.File(root / "cuhk03_release" / "cuhk-03.mat", "w") as f:
        group = f.create_group("#refs#")

        class Writer:
            @staticmethod
            def store(array):
                name = str(len(group))
                if array.dtype == object:
                    group.create_dataset(name, data=array, dtype=h5py.ref_dtype)
                else:
                    group.create_dataset(name, data=array)
                return group[name].ref

        pair_refs, testset_refs = fill_cuhk03_mat(Writer, pairs, testsets)
        for key, refs in (("labeled", pair_refs), ("detected", pair_refs), ("testsets", testset_refs)):
            f.create_dataset(key, data=np.array([refs], dtype=object), dtype=h5py.ref_dtype)
    parts = by_split(load_cuhk03_classic(str(root), "detected", 1, "test"))
    assert len(parts["query"]) == 20 and {d["pid"] for d in parts["gallery"]} == {3, 4}
    assert len(list((root / "images_detected").iterdir())) == 47 and not (root / "images_labeled").exists()


# ---------------------------------------------------------------------------------------------- MSMT17
MSMT_TRAIN = {"list_train.txt": ["0000/0000_000_01_0303morning_0015_0.jpg 0",
                                 "0000/0000_001_05_0303morning_0858_0.jpg 0",
                                 "0007/0007_003_12_0303noon_0917_1.jpg 7"],
              "list_val.txt": ["0003/0003_000_15_0113afternoon_0001_0.jpg 3"]}
MSMT_TEST = {"list_query.txt": ["0000/0000_000_02_0303morning_0006_0.jpg 0"],
             "list_gallery.txt": ["0000/0000_004_03_0303noon_0100_0.jpg 0",
                                  "3059/3059_000_14_0114morning_0002_2.jpg 3059", ""]}


def make_msmt(root, train_dir, test_dir):
    for lists, image_dir in ((MSMT_TRAIN, train_dir), (MSMT_TEST, test_dir)):
        for list_name, lines in lists.items():
            root.mkdir(parents=True, exist_ok=True)
            (root / list_name).write_text("\n".join(lines) + "\n")
            for line in filter(None, lines):
                rel = Path(line.split()[0])
                write_images(root / image_dir / rel.parent, [rel.name])


@pytest.mark.parametrize("version, train_dir, test_dir", [("MSMT17_V1", "train", "test"),
                                                          ("MSMT17_V2", "mask_train_v2", "mask_test_v2")])
def test_msmt17_layouts(tmp_path, version, train_dir, test_dir):
    root = tmp_path / version
    make_msmt(root, train_dir, test_dir)
    train = load_msmt17(str(root), "train")
    assert [(d["orig_pid"], d["pid"], d["camid"]) for d in train] == [(0, 0, 0), (0, 0, 4), (7, 2, 11), (3, 1, 14)]
    assert train[2]["file_name"] == str(root / train_dir / "0007" / "0007_003_12_0303noon_0917_1.jpg")
    test = load_msmt17(str(root), "test")
    assert [(d["split"], d["pid"], d["camid"]) for d in test] == [
        ("query", 0, 1), ("gallery", 0, 2), ("gallery", 3059, 13)]
    (root / "list_val.txt").write_text("0003_000_15_0113afternoon_0001_0.jpg\n")
    with pytest.raises(ValueError, match=r"list_val.txt:1: expected '<relative image path> <pid>'"):
        load_msmt17(str(root), "train")
    (root / "list_val.txt").write_text("0003/0003_c1s1_000451_03.jpg 3\n")
    with pytest.raises(ValueError, match=r"list_val.txt:1: unexpected image name"):
        load_msmt17(str(root), "train")
    (root / "list_query.txt").write_text("0000/0000_000_02_0303morning_0006_9.jpg 0\n")
    with pytest.raises(FileNotFoundError, match="0006_9.jpg not found"):
        load_msmt17(str(root), "test")
    with pytest.raises(FileNotFoundError, match=re.escape(MSMT17_LAYOUT)):
        load_msmt17(str(tmp_path / "MSMT17_V3"), "test")


# ------------------------------------------------------------------------------------------ registration
def test_registered_datasets_read_the_root_at_load_time(tmp_path, monkeypatch):
    builtin.register_all_reid_datasets()
    builtin.register_all_reid_datasets()  # idempotent
    names = set(DatasetCatalog.list())
    expected = {"market1501_train", "market1501_test", "market1501_multiquery_test", "dukemtmc_train",
                "dukemtmc_test", "cuhk03_labeled_train", "cuhk03_detected_test", "msmt17_train", "msmt17_test",
                "cuhk03_classic_labeled_split19_test", "cuhk03_classic_detected_split0_train",
                "cuhk01_split9_train", "viper_split0_test", "synthetic_market_train", "synthetic_market_test",
                "synthetic_market_multiquery_test"}
    assert expected <= names and "viper_split10_train" not in names
    assert MetadataCatalog.get("cuhk03_classic_labeled_split3_test").protocol == "cuhk03_classic"
    assert MetadataCatalog.get("viper_split4_test").protocol == "split_average"
    assert MetadataCatalog.get("market1501_train").num_classes == 751

    make_market(tmp_path / "synthetic" / "Market-1501-v15.09.15")
    monkeypatch.setenv("REID2_DATASETS", str(tmp_path))
    train = DatasetCatalog.get("synthetic_market_train")
    test = DatasetCatalog.get("synthetic_market_test")
    assert len(train) == 5 and len(test) == 8
    meta = MetadataCatalog.get("synthetic_market_test")
    assert (meta.evaluator_type, meta.protocol, meta.num_query) == ("reid", "market", 3)
    assert meta.dataset_root == str(tmp_path / "synthetic" / "Market-1501-v15.09.15")
    assert MetadataCatalog.get("synthetic_market_train").num_classes == 4
    assert len(by_split(DatasetCatalog.get("synthetic_market_multiquery_test"))["query"]) == 4

    make_viper(tmp_path / "VIPeR", 5)
    assert len(DatasetCatalog.get("viper_split1_train")) == 4
    assert MetadataCatalog.get("viper_split1_train").num_classes == 2  # the official 316 replaced
    other = tmp_path / "other"
    make_viper(other / "VIPeR", 9)
    monkeypatch.setenv("REID2_DATASETS", str(other))
    assert len(DatasetCatalog.get("viper_split1_train")) == 8
    assert MetadataCatalog.get("viper_split1_train").num_classes == 4
    assert MetadataCatalog.get("viper_split1_train").dataset_root == str(other / "VIPeR")


def test_register_reid_dataset_custom():
    name = "test_reid_datasets_custom_train"
    dicts = [{"file_name": "/x/a.jpg", "pid": 0, "camid": 0, "split": "train", "image_id": "a"},
             {"file_name": "/x/b.jpg", "pid": 1, "camid": 1, "split": "train", "image_id": "b"}]
    register_reid_dataset(name, lambda: dicts, protocol="market")
    try:
        assert DatasetCatalog.get(name) == dicts
        meta = MetadataCatalog.get(name)
        assert (meta.evaluator_type, meta.protocol, meta.num_classes) == ("reid", "market", 2)
        with pytest.raises(AssertionError, match="already registered"):
            register_reid_dataset(name, lambda: dicts)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


# ---------------------------------------------------------------------------- real Market-1501 file lists
def test_market_loader_counts_on_the_real_file_lists(tmp_path):
    lists = shared("market1501_meta", "hehefan_lists")
    root = tmp_path / "Market-1501-v15.09.15"
    for list_name, folder in (("train.list", "bounding_box_train"), ("query.list", "query"),
                              ("test.list", "bounding_box_test")):
        names = [line.split()[0] for line in (lists / list_name).read_text().splitlines() if line.strip()]
        touch_all(root / folder, names)
    train = load_market1501(str(root), "train")
    parts = by_split(load_market1501(str(root), "test"))
    assert (len(train), len({d["pid"] for d in train})) == (12936, 751)
    assert (len(parts["query"]), len({d["pid"] for d in parts["query"]})) == (3368, 750)
    assert len(os.listdir(root / "bounding_box_test")) == 19732
    gallery_ids = {d["pid"] for d in parts["gallery"]}
    assert len(parts["gallery"]) == 15913 and len(gallery_ids) == 751 and 0 in gallery_ids
    assert gallery_ids - {0} == {d["pid"] for d in parts["query"]}
    assert sum(d["pid"] == 0 for d in parts["gallery"]) == 2798
    assert {d["camid"] for d in train} == set(range(6))
