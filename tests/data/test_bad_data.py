"""Bad data named or, with DATALOADER.SKIP_BAD_IMAGES, skipped and counted; bad boxes dropped or clipped with
one warning; query boxes outside their image are errors naming the query."""
import json
import logging

import numpy as np
import pytest
from PIL import Image

from reid2.config import get_cfg


def _write(path, size=(32, 64), color=(0, 0, 0), truncate=False):
    Image.new("RGB", size, color).save(path, quality=95)
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return str(path)


@pytest.fixture
def reid_dicts(tmp_path):
    """3 ids x 2 images; the first image of id 1 is a truncated JPEG. Colour encodes the index."""
    dicts = []
    for i in range(6):
        path = _write(tmp_path / f"{i}.jpg", color=(40 * i, 0, 0), truncate=(i == 2))
        dicts.append({"file_name": path, "pid": i // 2, "camid": i % 2, "split": "train"})
    return dicts


def _reid_cfg(skip, batch=4, instances=2):
    cfg = get_cfg()
    cfg.merge_from_file("configs/synthetic/reid_tiny.yaml")
    cfg.DATALOADER.SKIP_BAD_IMAGES = skip
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH, cfg.DATALOADER.NUM_INSTANCES = batch, instances
    cfg.TEST.IMS_PER_BATCH = 2
    return cfg


def test_default_is_an_error_naming_the_file(reid_dicts):
    from reid2.data import build_reid_test_loader, build_reid_train_loader

    assert get_cfg().DATALOADER.SKIP_BAD_IMAGES is False
    with pytest.raises(OSError, match=f"cannot read image {reid_dicts[2]['file_name']}"):
        list(build_reid_test_loader(_reid_cfg(False), None, dicts=reid_dicts))
    loader = iter(build_reid_train_loader(_reid_cfg(False, batch=6), dicts=reid_dicts))
    with pytest.raises(OSError, match=f"cannot read image {reid_dicts[2]['file_name']}"):
        for _ in range(10):
            next(loader)


def test_reid_training_replaces_a_bad_image_by_the_next_of_its_identity(reid_dicts, caplog):
    from reid2.data import ReIDImageDataset
    from reid2.data.build import build_reid_transforms

    dataset = ReIDImageDataset(reid_dicts, build_reid_transforms(_reid_cfg(True), is_train=False),
                               skip_bad_images=True)
    with caplog.at_level(logging.WARNING, logger="reid2.data.bad_images"):
        item = dataset[2]
        again = dataset[2]
    assert item["file_name"] == again["file_name"] == reid_dicts[3]["file_name"]  # same pid 1, next index
    assert item["pid"] == 1
    assert dataset.bad_images.count == 1  # known bad: not decoded (nor counted) again
    assert "1 unreadable image(s) skipped" in caplog.text and reid_dicts[2]["file_name"] in caplog.text


def test_reid_training_with_skipped_images_resumes_exactly(reid_dicts):
    from reid2.data import build_reid_train_loader

    def batches(start, count):
        loader = build_reid_train_loader(_reid_cfg(True), dicts=reid_dicts)
        loader.batch_sampler.start_at(start)
        it = iter(loader)
        return [next(it)["file_names"] for _ in range(count)]

    full = batches(0, 8)
    assert not any(reid_dicts[2]["file_name"] in b for b in full)
    assert sum(b.count(reid_dicts[3]["file_name"]) for b in full) > 0
    assert batches(5, 3) == full[5:]


def test_reid_evaluation_drops_a_bad_image(reid_dicts, caplog):
    from reid2.data import build_reid_test_loader

    with caplog.at_level(logging.WARNING, logger="reid2.data.bad_images"):
        batches = list(build_reid_test_loader(_reid_cfg(True), None, dicts=reid_dicts))
    names = [n for b in batches for n in b["file_names"]]
    assert names == [d["file_name"] for i, d in enumerate(reid_dicts) if i != 2]
    assert [p for b in batches for p in b["targets"].tolist()] == [0, 0, 1, 2, 2]
    assert reid_dicts[2]["file_name"] in caplog.text


def test_reid_evaluation_leaves_out_a_batch_of_bad_images_only(tmp_path):
    from reid2.data import build_reid_test_loader

    dicts = [{"file_name": _write(tmp_path / f"{i}.jpg", truncate=i < 2), "pid": i, "camid": 0, "split": "gallery"}
             for i in range(4)]
    batches = list(build_reid_test_loader(_reid_cfg(True), None, dicts=dicts))
    assert [b["file_names"] for b in batches] == [[dicts[2]["file_name"], dicts[3]["file_name"]]]


def _register_ps(name, tmp_path, bad_index):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    records = []
    for i in range(4):
        size = (96, 64) if i % 2 else (64, 96)  # landscape, portrait alternate
        path = _write(tmp_path / f"s{i}.jpg", size=size, color=(50 * i, 0, 0), truncate=(i == bad_index))
        records.append({"file_name": path, "image_id": f"s{i}.jpg", "height": size[1], "width": size[0],
                        "annotations": [{"bbox": [2, 2, 30, 40], "bbox_mode": 0, "category_id": 0,
                                         "person_id": i}]})
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: [dict(r) for r in records])
    MetadataCatalog.get(name).set(thing_classes=["person"])
    return records


def _ps_cfg(skip, name):
    cfg = get_cfg()
    cfg.merge_from_file("configs/synthetic/oim_tiny.yaml")
    cfg.DATALOADER.SKIP_BAD_IMAGES = skip
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATASETS.TRAIN = (name,)
    cfg.SOLVER.IMS_PER_BATCH = 1
    cfg.TEST.PERSON_SEARCH.IMS_PER_BATCH = 1
    return cfg


def test_person_search_evaluation_drops_and_training_replaces_a_bad_image(tmp_path):
    from reid2.data.person_search_mapper import build_person_search_test_loader, build_person_search_train_loader

    name = "_test_bad_data_ps"
    records = _register_ps(name, tmp_path, bad_index=1)
    with pytest.raises(OSError, match=f"cannot read image {records[1]['file_name']}"):
        list(build_person_search_test_loader(_ps_cfg(False, name), name))
    batches = list(build_person_search_test_loader(_ps_cfg(True, name), name))
    assert [b[0]["image_id"] for b in batches] == ["s0.jpg", "s2.jpg", "s3.jpg"]

    def train_ids(start, count):
        np.random.seed(0)  # the sampler's seed: comm.shared_random_seed(), fixed by the trainer's SEED
        loader = build_person_search_train_loader(_ps_cfg(True, name))
        loader.batch_sampler.start_at(start)
        it = iter(loader)
        return [next(it)[0]["image_id"] for _ in range(count)]

    full = train_ids(0, 12)
    assert "s1.jpg" not in full and "s3.jpg" in full  # s3: the next landscape image after s1
    assert train_ids(7, 5) == full[7:]


def test_person_search_boxes_dropped_or_clipped_with_one_warning(tmp_path, caplog):
    from reid2.data.datasets.coco_person import load_coco_person_json

    coco = {"images": [{"id": 1, "file_name": "a.jpg", "height": 50, "width": 100},
                       {"id": 2, "file_name": "b.jpg", "height": 50, "width": 100}],
            "annotations": [
                {"id": 1, "image_id": 1, "bbox": [10, 10, 20, 30], "person_id": 1},   # fine
                {"id": 2, "image_id": 1, "bbox": [10, 10, -5, 30], "person_id": 2},   # negative width: dropped
                {"id": 3, "image_id": 2, "bbox": [90, 40, 20, 20], "person_id": 3},   # reaches out: clipped
                {"id": 4, "image_id": 2, "bbox": [200, 10, 20, 20], "person_id": 4},  # wholly outside: dropped
                {"id": 5, "image_id": 2, "bbox": [-4, 0, 10, 10], "person_id": 5},    # reaches out: clipped
            ]}
    path = tmp_path / "pid.json"
    path.write_text(json.dumps(coco))
    with caplog.at_level(logging.WARNING, logger="reid2.data.datasets.coco_person"):
        records = load_coco_person_json(str(path), str(tmp_path), relabel=False)
    boxes = {r["image_id"]: [a["bbox"] for a in r["annotations"]] for r in records}
    assert boxes == {"a.jpg": [[10.0, 10.0, 30.0, 40.0]],
                     "b.jpg": [[90.0, 40.0, 100.0, 50.0], [0.0, 0.0, 6.0, 10.0]]}
    assert [a["person_id"] for a in records[1]["annotations"]] == [3, 5]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "2 boxes dropped" in text and "2 boxes reaching outside" in text
    assert f"{tmp_path / 'a.jpg'} box [10.0, 10.0, 5.0, 40.0]" in text  # first dropped: the negative-width box
    assert f"{tmp_path / 'b.jpg'} box [90.0, 40.0, 110.0, 60.0]" in text  # first clipped
    assert [action for _, action in records[1]["bad_boxes"]] == [
        "clipped to the 100x50 image", "dropped: outside the 100x50 image", "clipped to the 100x50 image"]


def test_clean_boxes_are_left_alone(tmp_path, caplog):
    from reid2.data.datasets.coco_person import clean_person_boxes, person_record

    record = person_record("x.jpg", "x.jpg", 50, 100, -1, [[0, 0, 100, 50], [1, 2, 3, 4]], [1, -1])
    with caplog.at_level(logging.WARNING):
        clean_person_boxes([record], "set")
    assert [a["bbox"] for a in record["annotations"]] == [[0, 0, 100, 50], [1, 2, 3, 4]]
    assert "bad_boxes" not in record and not caplog.records


def _queries(*boxes):
    return [{"query": {"image": "q.jpg", "file_name": "/d/q.jpg", "box": np.asarray(b, float), "pid": 7 + i},
             "gallery": []} for i, b in enumerate(boxes)]


def test_query_box_outside_its_image_is_an_error_naming_the_query():
    from reid2.evaluation.protocols import check_query_boxes

    size = lambda path: (50, 100)  # (height, width)
    with pytest.raises(ValueError, match=r"set: query 1 \(image /d/q.jpg, pid 8, box \[120.0, 5.0, 150.0, 40.0\]\)"
                                         r" lies outside its 100x50 image"):
        check_query_boxes(_queries([1, 1, 20, 40], [120, 5, 150, 40]), "set", image_size=size)
    with pytest.raises(ValueError, match=r"query 0 .*expected a finite x1 y1 x2 y2 box"):
        check_query_boxes(_queries([30, 5, 20, 40]), "set", image_size=size)


def test_query_box_reaching_out_is_clipped_with_a_warning(caplog):
    from reid2.evaluation.protocols import check_query_boxes

    with caplog.at_level(logging.WARNING, logger="reid2.evaluation.protocols"):
        queries = check_query_boxes(_queries([1, 1, 20, 40], [90, -3, 104, 40]), "set", image_size=lambda p: (50, 100))
    assert queries[0]["query"]["box"].tolist() == [1, 1, 20, 40]
    assert queries[1]["query"]["box"].tolist() == [90, 0, 100, 40]
    assert "set: 1 query boxes reaching outside their image clipped" in caplog.text and "query 1" in caplog.text


def test_registered_query_outside_its_image_fails_the_evaluation_protocol(tmp_path):
    from detectron2.data import MetadataCatalog

    from reid2.evaluation.protocols import get_queries

    path = _write(tmp_path / "q.jpg", size=(100, 50))
    name = "_test_bad_query"
    meta = MetadataCatalog.get(name)
    meta.set(query_loader=lambda gallery_size: [{"query": {"image": "q.jpg", "file_name": path, "pid": 3,
                                                           "box": np.array([0.0, 60, 20, 80])}, "gallery": []}])
    with pytest.raises(ValueError, match=f"{name}: query 0 \\(image {path}, pid 3.*outside its 100x50 image"):
        get_queries(name)


def test_demo_query_box_outside_the_image_is_an_error(tmp_path):
    from reid2.utils.files import read_image
    from tests.helpers import load_tool

    query = _write(tmp_path / "q.jpg", size=(40, 80))
    assert read_image(query, [0, 0, 40, 80]).size == (40, 80)
    with pytest.raises(ValueError, match=f"{query}: box .* lies outside the 40x80 image"):
        read_image(query, [30, 10, 60, 70])
    (tmp_path / "g").mkdir()
    _write(tmp_path / "g" / "a.jpg")
    with pytest.raises(ValueError, match=f"{query}: box \\[100.0, 10.0, 120.0, 70.0\\] lies outside"):
        load_tool("demo").main(["--config-file", "configs/synthetic/reid_tiny.yaml", "--weights", "random",
                                "--query", query, "--query-box", "100", "10", "120", "70",
                                "--gallery", str(tmp_path / "g"), "--output-dir", str(tmp_path / "out")])
