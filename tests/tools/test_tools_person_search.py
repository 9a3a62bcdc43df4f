"""User tools on a person-search model (OIM tiny) and the tiny synthetic CUHK-SYSU data: detections + query
features, search and detection pictures, the demo on scenes and on crops."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO, load_tool, save_random_checkpoint

CFG = str(REPO / "configs/synthetic/oim_tiny.yaml")


@pytest.fixture(scope="module")
def ps_ckpt(datasets_root, tmp_path_factory):
    return save_random_checkpoint(CFG, tmp_path_factory.mktemp("ps_ckpt"))


@pytest.fixture(scope="module")
def ps_feats(ps_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("ps_feats") / "ps.npz"
    load_tool("extract_features").main(["--config-file", CFG, "--weights", ps_ckpt, "--dataset",
                                        "synthetic_cuhk_sysu_test", "--output", str(out), "--device", "cpu"])
    return str(out)


def test_extract_features_person_search(ps_feats, ps_ckpt):
    from detectron2.data import DatasetCatalog

    from reid2.engine.predictor import PersonSearchPredictor, load_model
    from reid2.evaluation import get_queries

    dicts = DatasetCatalog.get("synthetic_cuhk_sysu_test")
    z = np.load(ps_feats)
    k = len(z["scores"])
    assert k > 0 and z["boxes"].shape == (k, 4) and z["feats"].shape == (k, 256) and z["det_image_index"].shape == (k,)
    assert list(z["image_names"]) == [d["image_id"] for d in dicts]
    assert np.all(np.diff(z["det_image_index"]) >= 0) and z["det_image_index"].max() < len(dicts)
    queries = get_queries("synthetic_cuhk_sysu_test")
    assert z["query_feats"].shape == (len(queries), 256)
    galleries = json.loads(str(z["queries_json"]))
    assert [len(g) for g in galleries] == [len(q["gallery"]) for q in queries]
    # the query features are the model's embed_boxes of the query boxes
    cfg, model = load_model(CFG, ps_ckpt, ["MODEL.DEVICE", "cpu"])
    q = queries[0]["query"]
    feat = PersonSearchPredictor(cfg, model).embed_boxes(q["file_name"], [q["box"]])[0]
    np.testing.assert_allclose(z["query_feats"][0], feat, atol=1e-5)


def test_visualize_search_and_detections(ps_feats, tmp_path):
    from reid2.utils.visualizer import search_grid_size

    vis = load_tool("visualize_results")
    vis.main(["search", "--features", ps_feats, "--output-dir", str(tmp_path), "--num-queries", "2", "--topk", "3",
              "--det-thresh", "0.05"])
    assert Image.open(tmp_path / "search.png").size == search_grid_size(2, 3) == (862, 412)
    res = json.loads((tmp_path / "search.json").read_text())
    assert len(res["queries"]) == 2
    for q in res["queries"]:
        sims = [r["similarity"] for r in q["ranked"] if r["similarity"] is not None]
        assert len(q["ranked"]) == 3 and sims == sorted(sims, reverse=True)

    z = np.load(ps_feats)
    name = str(z["image_names"][1])
    vis.main(["detections", "--features", ps_feats, "--output-dir", str(tmp_path), "--images", name,
              "--det-thresh", "0.05"])
    assert Image.open(tmp_path / f"detections_{name.rsplit('.', 1)[0]}.png").size == (320, 240)
    with pytest.raises(KeyError, match="not_there.jpg"):
        vis.main(["detections", "--features", ps_feats, "--output-dir", str(tmp_path), "--images", "not_there.jpg"])


def test_demo_person_search_crops_and_scenes(ps_ckpt, datasets_root, tmp_path):
    from reid2.evaluation import get_queries
    from reid2.utils.visualizer import search_grid_size

    demo = load_tool("demo")
    queries = get_queries("synthetic_cuhk_sysu_test")
    crops = tmp_path / "crops"
    crops.mkdir()
    for i, q in enumerate(queries[:4]):
        x1, y1, x2, y2 = (int(v) for v in q["query"]["box"])
        Image.open(q["query"]["file_name"]).crop((x1, y1, x2, y2)).save(crops / f"person{i}.png")
    shutil.copy(crops / "person2.png", tmp_path / "query.png")
    demo.main(["--config-file", CFG, "--weights", ps_ckpt, "--query", str(tmp_path / "query.png"), "--gallery",
               str(crops), "--gallery-crops", "--output-dir", str(tmp_path / "a"), "--topk", "3"])
    res = json.loads((tmp_path / "a/demo.json").read_text())
    assert res["task"] == "person_search" and len(res["results"]) == 4
    assert res["results"][0]["file"] == str(crops / "person2.png")
    assert res["results"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert Image.open(tmp_path / "a/demo.png").size == search_grid_size(1, 3)

    scenes = tmp_path / "scenes"
    scenes.mkdir()
    for g in queries[0]["gallery"][:3]:
        shutil.copy(datasets_root / "synthetic/CUHK-SYSU/Image/SSM" / g["image"], scenes / g["image"])
    q = queries[0]["query"]
    demo.main(["--config-file", CFG, "--weights", ps_ckpt, "--query", q["file_name"], "--query-box",
               *map(str, q["box"]), "--gallery", str(scenes), "--output-dir", str(tmp_path / "b"),
               "--det-thresh", "0.05"])
    res = json.loads((tmp_path / "b/demo.json").read_text())
    sims = [r["similarity"] for r in res["results"] if r["similarity"] is not None]
    assert len(res["results"]) == 3 and sims == sorted(sims, reverse=True)
    for r in res["results"]:
        if r["box"] is not None:
            x1, y1, x2, y2 = r["box"]
            assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240
    assert Image.open(tmp_path / "b/demo.png").size == search_grid_size(1, 3)
