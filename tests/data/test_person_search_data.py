"""Person-search loaders: the real protocol/annotation files in ../shared/data and synthetic files in the exact
original formats (written here with scipy.io.savemat), registration, and errors on bad files."""
import json
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image
from scipy.io import loadmat, savemat

from reid2.data.datasets.coco_person import image_size, load_coco_person_json
from reid2.data.datasets.cuhk_sysu import load_cuhk_sysu, load_cuhk_sysu_queries
from reid2.data.datasets.person_search_builtin import register_all_person_search_datasets
from reid2.data.datasets.prw import build_prw_queries, load_prw, load_prw_queries, read_query_info
from reid2.data.synthetic.files import cell_column
from reid2.evaluation.protocols import detection_ground_truth, get_queries
from tests.helpers import SHARED

U8, U16 = np.uint8, np.uint16


# ------------------------------------------------------------------------------------- MATLAB writers
def struct_array(records, fields):
    """1×n MATLAB struct array (numpy structured array of objects), as scipy.io.savemat expects."""
    array = np.zeros((1, len(records)), dtype=[(f, "O") for f in fields])
    for i, record in enumerate(records):
        for f in fields:
            array[0, i][f] = record[f]
    return array



def idlocate(xywh, dtype):
    return np.array([xywh], dtype=dtype)


def write_jpg(path, size=(640, 360)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path)


# Synthetic CUHK-SYSU: train s1-s3 (identities 0: A, 1: B), test pool s4-s7 (test identities P, Q).
# Boxes (x, y, w, h) with uint8 ones whose x + w > 255 (overflow if summed before the cast).
CUHK_IMAGES = {
    "s1.jpg": [([10, 20, 30, 60], U8), ([100, 50, 40, 80], U8)],
    "s2.jpg": [([300, 20, 40, 100], U16), ([5, 5, 20, 50], U8), ([50, 50, 0, 30], U8)],  # last: w = 0
    "s3.jpg": [([200, 100, 100, 150], U8)],
    "s4.jpg": [([250, 10, 60, 200], U8)],
    "s5.jpg": [([20, 30, 40, 90], U8), ([120, 40, 30, 80], U8)],
    "s6.jpg": [([300, 60, 35, 90], U16), ([10, 10, 20, 40], U8)],
    "s7.jpg": [([40, 40, 20, 50], U8)],
}
CUHK_TRAIN_PEOPLE = [("p1", [("s1.jpg", [10, 20, 30, 60]), ("s2.jpg", [300, 20, 40, 100])]),
                     ("p2", [("s2.jpg", [5, 5, 20, 50]), ("s3.jpg", [200, 100, 100, 150])])]
CUHK_POOL = ["s4.jpg", "s5.jpg", "s6.jpg", "s7.jpg"]
# TestG2: (query idname, query image, query box, gallery [(image, box or None)])
CUHK_TESTG2 = [("p7", "s4.jpg", [250, 10, 60, 200], [("s5.jpg", [20, 30, 40, 90]), ("s6.jpg", None)]),
               ("p8", "s5.jpg", [120, 40, 30, 80], [("s6.jpg", [300, 60, 35, 90]), ("s4.jpg", None)])]


def write_cuhk_sysu(root):
    for name in CUHK_IMAGES:
        write_jpg(os.path.join(root, "Image", "SSM", name))
    annotation = os.path.join(root, "annotation")
    protocol = os.path.join(annotation, "test", "train_test")
    os.makedirs(protocol, exist_ok=True)
    images = []
    for name, boxes in CUHK_IMAGES.items():
        box = struct_array([{"idlocate": idlocate(b, t), "ishard": np.array([[0]], U8)} for b, t in boxes],
                           ("idlocate", "ishard"))
        images.append({"imname": name, "nAppear": np.array([[len(boxes)]], U8), "box": box})
    savemat(os.path.join(annotation, "Images.mat"), {"Img": struct_array(images, ("imname", "nAppear", "box"))})
    savemat(os.path.join(annotation, "pool.mat"), {"pool": cell_column(CUHK_POOL)})
    people = []
    for idname, scenes in CUHK_TRAIN_PEOPLE:
        scene = struct_array([{"imname": im, "idlocate": idlocate(b, U16 if max(b) > 255 else U8),
                               "ishard": np.array([[0]], U8)} for im, b in scenes], ("imname", "idlocate", "ishard"))
        people.append(struct_array([{"idname": idname, "nAppear": np.array([[len(scenes)]], U8), "scene": scene}],
                                   ("idname", "nAppear", "scene")))
    savemat(os.path.join(protocol, "Train.mat"), {"Train": cell_column(people)})
    rows = []
    for idname, image, box, gallery in CUHK_TESTG2:
        query = struct_array([{"imname": image, "idlocate": idlocate(box, U8), "ishard": np.array([[0]], U8),
                               "idname": idname}], ("imname", "idlocate", "ishard", "idname"))
        entries = [{"imname": im, "idlocate": np.zeros((1, 0)) if b is None else idlocate(b, U16),
                    "ishard": np.zeros((1, 0)) if b is None else np.array([[0]], U8)} for im, b in gallery]
        rows.append({"Query": query, "Gallery": struct_array(entries, ("imname", "idlocate", "ishard"))})
    savemat(os.path.join(protocol, "TestG2.mat"), {"TestG2": struct_array(rows, ("Query", "Gallery"))})
    return root


# Synthetic PRW: 2 train frames, 3 test frames; each annotation file uses a different variable name.
PRW_TRAIN = {"c1s1_000001": ("box_new", [[1, 10, 10, 20, 40], [932, -5, 3, 30, 60], [-2, 50, 50, 10, 20]]),
             "c2s1_000002": ("anno_file", [[5, 30, 30, 20, 40], [1, 60, 10, 25, 50], [5, 0, 0, 0, 10]])}
PRW_TEST = {"c1s2_000003": ("anno_previous", [[7, 10, 20, 30, 60], [-2, 100, 20, 30, 60]]),
            "c3s1_000004": ("box_new", [[8, 5, 5, 20, 40], [7, 40, 10, 25, 70], [7, 90, 10, 25, 70]]),
            "c1s3_000005": ("box_new", [[7, 12, 22, 30, 60]])}
PRW_QUERIES = "7 10.0000 20.0000 30.0000 60.0000 c1s2_000003\r\n8 -2.5000 5.0000 20.0000 40.0000 c3s1_000004\r\n"


def write_prw(root):
    for split, frames in (("train", PRW_TRAIN), ("test", PRW_TEST)):
        for frame, (key, table) in frames.items():
            write_jpg(os.path.join(root, "frames", frame + ".jpg"), (192, 108))
            os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
            savemat(os.path.join(root, "annotations", frame + ".jpg.mat"), {key: np.asarray(table, float)})
        savemat(os.path.join(root, f"frame_{split}.mat"), {f"img_index_{split}": cell_column(list(frames))})
    with open(os.path.join(root, "query_info.txt"), "w", newline="") as f:
        f.write(PRW_QUERIES)
    return root


@pytest.fixture
def cuhk_root(tmp_path):
    return write_cuhk_sysu(str(tmp_path / "CUHK-SYSU"))


@pytest.fixture
def prw_root(tmp_path):
    return write_prw(str(tmp_path / "PRW"))


def boxes_of(record):
    return [ann["bbox"] for ann in record["annotations"]], [ann["person_id"] for ann in record["annotations"]]


# ------------------------------------------------------------------------------------- real files
@pytest.fixture(scope="module")
def real_testg100():
    root = SHARED / "data" / "CUHK-SYSU"
    path = root / "annotation" / "test" / "train_test" / "TestG100.mat"
    if not path.is_file():
        pytest.skip(f"{path} (real CUHK-SYSU protocol from ../shared) is absent")
    return str(root), loadmat(str(path))["TestG100"], load_cuhk_sysu_queries(str(root), 100)


def test_real_testg100_protocol(real_testg100):
    _, raw, queries = real_testg100
    assert len(queries) == 2900
    assert all(len(q["gallery"]) == 100 for q in queries)
    positives = np.array([sum(e["box"] is not None for e in q["gallery"]) for q in queries])
    assert positives.min() == 1 and positives.max() == 13 and positives.mean() == pytest.approx(1.88, abs=0.005)
    for q in queries:  # positives first
        flags = [e["box"] is not None for e in q["gallery"]]
        assert flags == sorted(flags, reverse=True)
    first = queries[0]["query"]
    assert (first["image"], first["pid"]) == ("s15538.jpg", "p10581")
    np.testing.assert_array_equal(first["box"], [488, 90, 576, 340])
    assert first["file_name"].endswith(os.path.join("Image", "SSM", "s15538.jpg"))
    # the annotation quirks the notes list: the same image twice in a gallery (query rows 1250, 1633, ...)
    duplicated = [i for i, q in enumerate(queries)
                  if len({e["image"] for e in q["gallery"] if e["box"] is not None})
                  < sum(e["box"] is not None for e in q["gallery"])]
    assert duplicated == [1250, 1633, 1997, 2561]


def test_real_testg100_uint8_and_uint16_boxes(real_testg100):
    _, raw, queries = real_testg100
    dtypes, overflow_checked = set(), 0
    for i in range(raw.shape[1]):
        gallery = raw[0, i]["Gallery"].ravel()
        for j, entry in enumerate(gallery):
            xywh = entry["idlocate"]
            if xywh.size == 0:
                assert queries[i]["gallery"][j]["box"] is None
                continue
            dtypes.add(xywh.dtype)
            x, y, w, h = (int(v) for v in xywh.ravel())
            np.testing.assert_array_equal(queries[i]["gallery"][j]["box"], [x, y, x + w, y + h])
            overflow_checked += xywh.dtype == U8 and (x + w > 255 or y + h > 255)
    assert dtypes == {np.dtype(U8), np.dtype(U16)}
    assert overflow_checked > 0  # uint8 boxes whose x2/y2 exceed 255 were converted without wrapping


def test_synthetic_mat_files_have_the_real_structure(cuhk_root, real_testg100):
    """TestG written by the test's writer loads back like the real TestG100 (fields, shapes, dtypes)."""
    _, real, _ = real_testg100
    ours = loadmat(os.path.join(cuhk_root, "annotation", "test", "train_test", "TestG2.mat"))["TestG2"]
    assert ours.dtype.names == real.dtype.names and ours.shape[0] == real.shape[0] == 1
    for field in ("Query", "Gallery"):
        assert ours[0, 0][field].dtype.names == real[0, 0][field].dtype.names
    rq, oq = real[0, 0]["Query"][0, 0], ours[0, 0]["Query"][0, 0]
    for field in rq.dtype.names:
        assert (oq[field].shape, oq[field].dtype.kind) == (rq[field].shape, rq[field].dtype.kind), field
    real_negative, our_negative = real[0, 0]["Gallery"][0, -1], ours[0, 0]["Gallery"][0, -1]
    for field in ("idlocate", "ishard"):
        assert (our_negative[field].shape, our_negative[field].dtype) == (real_negative[field].shape,
                                                                          real_negative[field].dtype)


@pytest.fixture(scope="module")
def prw_json():
    folder = SHARED / "data" / "PRW"
    if not (folder / "alignps_anno" / "train_pid.json").is_file():
        pytest.skip(f"{folder}/alignps_anno (real PRW annotations from ../shared) is absent")
    train = load_coco_person_json(str(folder / "alignps_anno" / "train_pid.json"), str(folder / "frames"))
    test = load_coco_person_json(str(folder / "alignps_anno" / "test_pid.json"), str(folder / "frames"), relabel=False)
    return folder, train, test


def test_real_prw_json(prw_json):
    folder, train, test = prw_json
    assert (len(train), len(test)) == (5704, 6112)
    train_pids = np.array([a["person_id"] for r in train for a in r["annotations"]])
    test_pids = np.array([a["person_id"] for r in test for a in r["annotations"]])
    assert (len(train_pids), (train_pids == -1).sum()) == (18048, 3141)
    assert sorted(set(train_pids[train_pids >= 0])) == list(range(483))
    assert (len(test_pids), (test_pids == -1).sum(), test_pids.max()) == (25062, 5935, 933)
    assert {r["camid"] for r in train} == {1, 2, 3, 4, 5, 6}
    first = train[0]
    assert first["image_id"] == "c1s1_000151.jpg" and first["annotations"][0]["bbox"] == [193, 480, 243, 629]
    assert first["annotations"][0]["bbox_mode"] == BoxMode.XYXY_ABS
    # the 16 real frames: the header size agrees with the json
    on_disk = {r["image_id"]: r for r in train if os.path.isfile(r["file_name"])}
    assert len(on_disk) == 16
    for record in on_disk.values():
        assert image_size(record["file_name"]) == (record["height"], record["width"])


def test_real_prw_mini_queries(prw_json):
    folder, _, test = prw_json
    records = read_query_info(str(folder / "prwmini_query_info.txt"))
    assert len(records) == 30 and records[0]["pid"] == 484 and records[-1]["pid"] == 906
    assert records[0]["image"] == "c2s1_159941.jpg" and records[0]["camid"] == 2
    np.testing.assert_allclose(records[0]["box"], [849.7009, 619.8089, 849.7009 + 172.6134, 619.8089 + 440.8639])
    queries = build_prw_queries(test, records)
    assert all(len(q["gallery"]) == 6111 for q in queries)
    assert all(q["query"]["image"] not in {e["image"] for e in q["gallery"]} for q in queries)
    frames_with = {r["pid"]: sum(any(a["person_id"] == r["pid"] for a in t["annotations"]) for t in test)
                   for r in records}
    for record, query in zip(records, queries):
        assert sum(e["box"] is not None for e in query["gallery"]) == frames_with[record["pid"]] - 1
    cross_camera = build_prw_queries(test, records[:3], ignore_cam_id=False)
    for query in cross_camera:
        assert query["query"]["camid"] not in {int(e["image"][1]) for e in query["gallery"]}


# ------------------------------------------------------------------------------------- synthetic CUHK-SYSU
def test_cuhk_sysu_train_split(cuhk_root):
    records = load_cuhk_sysu(cuhk_root, "train")
    assert [r["image_id"] for r in records] == ["s1.jpg", "s2.jpg", "s3.jpg"]
    assert (records[0]["height"], records[0]["width"], records[0]["camid"]) == (360, 640, -1)
    assert boxes_of(records[0]) == ([[10, 20, 40, 80], [100, 50, 140, 130]], [0, -1])
    assert boxes_of(records[1]) == ([[300, 20, 340, 120], [5, 5, 25, 55]], [0, 1])  # w = 0 box dropped
    assert boxes_of(records[2]) == ([[200, 100, 300, 250]], [1])  # uint8 200 + 100 without wrapping


def test_cuhk_sysu_test_split_labels_protocol_identities(cuhk_root):
    records = load_cuhk_sysu(cuhk_root, "test")
    assert [r["image_id"] for r in records] == CUHK_POOL
    pids = {r["image_id"]: boxes_of(r)[1] for r in records}
    assert pids == {"s4.jpg": [0], "s5.jpg": [0, 1], "s6.jpg": [1, -1], "s7.jpg": [-1]}
    gt_boxes, labeled = detection_ground_truth(records)
    np.testing.assert_array_equal(gt_boxes["s6.jpg"], [[300, 60, 335, 150], [10, 10, 30, 50]])
    np.testing.assert_array_equal(labeled["s6.jpg"], [True, False])


def test_cuhk_sysu_queries_and_full_set(cuhk_root):
    queries = load_cuhk_sysu_queries(cuhk_root, gallery_size=2)
    assert [q["query"]["pid"] for q in queries] == ["p7", "p8"]
    np.testing.assert_array_equal(queries[0]["query"]["box"], [250, 10, 310, 210])
    assert [(e["image"], None if e["box"] is None else e["box"].tolist()) for e in queries[0]["gallery"]] == [
        ("s5.jpg", [20, 30, 60, 120]), ("s6.jpg", None)]
    full = load_cuhk_sysu_queries(cuhk_root, gallery_size=-1)
    # the protocol's entries, then every other pool image but the query's own
    assert [(e["image"], e["box"] is not None) for e in full[0]["gallery"]] == [
        ("s5.jpg", True), ("s6.jpg", False), ("s7.jpg", False)]
    assert [e["image"] for e in full[1]["gallery"]] == ["s6.jpg", "s4.jpg", "s7.jpg"]
    with pytest.raises(FileNotFoundError, match=r"TestG100\.mat.*available.*\[2\]"):
        load_cuhk_sysu_queries(cuhk_root, gallery_size=100)


def test_cuhk_sysu_errors_name_file_and_structure(cuhk_root):
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_cuhk_sysu(cuhk_root, "val")
    images = os.path.join(cuhk_root, "annotation", "Images.mat")
    savemat(images, {"Images": np.zeros((1, 2))})
    with pytest.raises(ValueError, match=r"Images\.mat: no variable 'Img'.*imname"):
        load_cuhk_sysu(cuhk_root, "train")
    savemat(images, {"Img": struct_array([{"name": "s1.jpg"}], ("name",))})
    with pytest.raises(ValueError, match=r"Images\.mat: struct lacks fields \['imname', 'box'\]"):
        load_cuhk_sysu(cuhk_root, "train")
    os.remove(images)
    with pytest.raises(FileNotFoundError, match=r"Images\.mat not found.*'Img'"):
        load_cuhk_sysu(cuhk_root, "test")
    with open(os.path.join(cuhk_root, "annotation", "pool.mat"), "w") as f:
        f.write("not a mat file")
    with pytest.raises(ValueError, match=r"pool\.mat: not a readable MATLAB"):
        load_cuhk_sysu_queries(cuhk_root, -1)


def test_missing_image_is_reported(cuhk_root):
    os.remove(os.path.join(cuhk_root, "Image", "SSM", "s3.jpg"))
    with pytest.raises(FileNotFoundError, match=r"s3\.jpg"):
        load_cuhk_sysu(cuhk_root, "train")


# ------------------------------------------------------------------------------------- synthetic PRW
def test_prw_train_split(prw_root):
    records = load_prw(prw_root, "train")
    assert [(r["image_id"], r["camid"], r["height"], r["width"]) for r in records] == [
        ("c1s1_000001.jpg", 1, 108, 192), ("c2s1_000002.jpg", 2, 108, 192)]
    # raw ids 1, 5, 932 -> 0, 1, 2 (contiguous from the training annotations); -2 -> -1; negative x clipped
    assert boxes_of(records[0]) == ([[10, 10, 30, 50], [0, 3, 30, 63], [50, 50, 60, 70]], [0, 2, -1])
    assert boxes_of(records[1]) == ([[30, 30, 50, 70], [60, 10, 85, 60]], [1, 0])  # w = 0 box dropped


def test_prw_test_split_and_queries(prw_root):
    test = load_prw(prw_root, "test")
    assert [boxes_of(r)[1] for r in test] == [[7, -1], [8, 7, 7], [7]]  # raw ids kept for the query files
    queries = load_prw_queries(prw_root)
    assert [q["query"]["pid"] for q in queries] == [7, 8]
    np.testing.assert_array_equal(queries[1]["query"]["box"], [0, 5, 20, 45])  # x clipped at 0, then + w
    gallery = queries[0]["gallery"]
    assert [e["image"] for e in gallery] == ["c3s1_000004.jpg", "c1s3_000005.jpg"]
    assert gallery[0]["box"].tolist() == [40, 10, 65, 80]  # the first of two boxes of pid 7
    assert gallery[1]["box"].tolist() == [12, 22, 42, 82]
    cross = load_prw_queries(prw_root, ignore_cam_id=False, test_dicts=test)
    assert [e["image"] for e in cross[0]["gallery"]] == ["c3s1_000004.jpg"]
    assert [(e["image"], e["box"]) for e in cross[1]["gallery"]] == [("c1s2_000003.jpg", None),
                                                                    ("c1s3_000005.jpg", None)]
    with pytest.raises(ValueError, match="no gallery-size"):
        load_prw_queries(prw_root, gallery_size=100, test_dicts=test)


def test_query_info_crlf_lf_and_malformed(tmp_path):
    lf, crlf = tmp_path / "lf.txt", tmp_path / "crlf.txt"
    lf.write_bytes(PRW_QUERIES.replace("\r\n", "\n").encode())
    crlf.write_bytes(PRW_QUERIES.encode())
    for a, b in zip(read_query_info(str(lf)), read_query_info(str(crlf))):
        assert (a["image"], a["pid"], a["camid"]) == (b["image"], b["pid"], b["camid"])
        np.testing.assert_array_equal(a["box"], b["box"])
    bad = tmp_path / "bad.txt"
    bad.write_text("7 1 2 3 4 c1s1_000001\n7 1 2 3 c1s1_000001\n")
    with pytest.raises(ValueError, match=r"bad\.txt, line 2: expected 'pid x y w h frame'"):
        read_query_info(str(bad))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_query_info(str(tmp_path / "missing.txt"))


def test_prw_errors_name_file_and_structure(prw_root):
    annotation = os.path.join(prw_root, "annotations", "c1s2_000003.jpg.mat")
    savemat(annotation, {"box_new": np.zeros((2, 4))})
    with pytest.raises(ValueError, match=r"c1s2_000003\.jpg\.mat: expected an n×5 array"):
        load_prw(prw_root, "test")
    savemat(annotation, {"boxes": np.zeros((2, 5))})
    with pytest.raises(ValueError, match=r"no variable 'box_new' or 'anno_file' or 'anno_previous'"):
        load_prw(prw_root, "test")
    os.remove(os.path.join(prw_root, "frame_train.mat"))
    with pytest.raises(FileNotFoundError, match=r"frame_train\.mat not found.*'img_index_train'"):
        load_prw(prw_root, "train")


# ------------------------------------------------------------------------------------- COCO json
def test_coco_json_relabel_and_errors(tmp_path):
    coco = {"categories": [{"id": 1, "name": "person"}],
            "images": [{"id": 3, "file_name": "c4s1_000010.jpg", "width": 50, "height": 40},
                       {"id": 4, "file_name": "x.jpg", "width": 50, "height": 40}],
            "annotations": [{"id": 0, "image_id": 3, "bbox": [1, 2, 3, 4], "category_id": 1, "person_id": 932},
                            {"id": 1, "image_id": 3, "bbox": [5, 5, 3, 4], "category_id": 1, "person_id": -2},
                            {"id": 2, "image_id": 4, "bbox": [1, 1, 3, 4], "category_id": 1, "person_id": 17},
                            {"id": 3, "image_id": 4, "bbox": [1, 1, 0, 4], "category_id": 1, "person_id": 17}]}
    path = tmp_path / "a.json"
    path.write_text(json.dumps(coco))
    records = load_coco_person_json(str(path), "/img")
    assert [(r["file_name"], r["camid"], r["height"]) for r in records] == [("/img/c4s1_000010.jpg", 4, 40),
                                                                            ("/img/x.jpg", -1, 40)]
    assert [boxes_of(r) for r in records] == [([[1, 2, 4, 6], [5, 5, 8, 9]], [1, -1]), ([[1, 1, 4, 5]], [0])]
    assert [boxes_of(r)[1] for r in load_coco_person_json(str(path), "/img", relabel=False)] == [[932, -1], [17]]
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="keys 'images' and 'annotations'"):
        load_coco_person_json(str(path), "/img")
    del coco["annotations"][0]["person_id"]
    path.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match="lacks 'bbox' or 'person_id'"):
        load_coco_person_json(str(path), "/img")


# ------------------------------------------------------------------------------------- registration
def test_registration_metadata_and_idempotence():
    register_all_person_search_datasets()
    register_all_person_search_datasets()  # idempotent
    names = set(DatasetCatalog.list())
    assert {"cuhk_sysu_train", "cuhk_sysu_test", "prw_train", "prw_test", "prw_mini_test",
            "synthetic_cuhk_sysu_train", "synthetic_cuhk_sysu_test"} <= names
    assert MetadataCatalog.get("cuhk_sysu_train").num_pids == 5532
    assert MetadataCatalog.get("prw_train").num_pids == 483
    test = MetadataCatalog.get("cuhk_sysu_test")
    assert (test.evaluator_type, test.protocol, test.gallery_size) == ("person_search", "cuhk_sysu", 100)
    assert MetadataCatalog.get("synthetic_cuhk_sysu_test").gallery_size == 50
    assert MetadataCatalog.get("prw_mini_test").protocol == "prw_mini"
    with pytest.raises(KeyError, match="not a registered person-search test set"):
        get_queries("cuhk_sysu_train")


def test_registered_datasets_read_the_root_lazily(tmp_path, monkeypatch):
    register_all_person_search_datasets()
    write_cuhk_sysu(str(tmp_path / "synthetic" / "CUHK-SYSU"))
    write_prw(str(tmp_path / "PRW"))
    monkeypatch.setenv("REID2_DATASETS", str(tmp_path))
    assert len(DatasetCatalog.get("synthetic_cuhk_sysu_train")) == 3
    assert len(DatasetCatalog.get("synthetic_cuhk_sysu_test")) == 4
    queries = get_queries("synthetic_cuhk_sysu_test", gallery_size=2)
    assert [q["query"]["pid"] for q in queries] == ["p7", "p8"]
    with pytest.raises(FileNotFoundError, match=r"TestG50\.mat"):  # the metadata default
        get_queries("synthetic_cuhk_sysu_test")
    assert [q["query"]["pid"] for q in get_queries("prw_test")] == [7, 8]
    assert len(get_queries("prw_test", ignore_cam_id=False)[0]["gallery"]) == 1
    assert len(DatasetCatalog.get("prw_train")) == 2
