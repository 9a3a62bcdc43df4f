"""User tools on a re-ID model and the tiny synthetic Market data: extract_features (resume), visualize_results
(ranked lists, CMC), demo (constructed ranking), --help and clear errors."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import REPO, load_tool, run_tool, save_random_checkpoint

CFG = str(REPO / "configs/synthetic/reid_tiny.yaml")


@pytest.fixture(scope="module")
def reid_ckpt(datasets_root, tmp_path_factory):
    """A randomly initialised tiny re-ID model saved as a checkpoint (the tools only need some weights)."""
    return save_random_checkpoint(CFG, tmp_path_factory.mktemp("reid_ckpt"))


@pytest.fixture(scope="module")
def reid_feats(reid_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("feats") / "market.npz"
    load_tool("extract_features").main(["--config-file", CFG, "--weights", reid_ckpt, "--dataset",
                                        "synthetic_market_test", "--output", str(out), "--device", "cpu"])
    return str(out)


def test_help_has_examples():
    for tool in ("extract_features", "visualize_results", "demo", "export"):
        res = run_tool([f"tools/{tool}.py", "--help"])
        assert res.returncode == 0, res.stderr
        assert "Example" in res.stdout and f"python tools/{tool}.py" in res.stdout, tool


def test_missing_inputs_fail_with_the_path(reid_ckpt, datasets_root, tmp_path):
    missing = tmp_path / "nope.pth"
    res = run_tool(["tools/extract_features.py", "--config-file", CFG, "--weights", str(missing), "--dataset",
                    "synthetic_market_test", "--output", str(tmp_path / "f.npz")])
    assert res.returncode == 2 and f"checkpoint (MODEL.WEIGHTS / --weights) not found: {missing}" in res.stderr
    assert "Traceback" not in res.stderr

    gallery = tmp_path / "gallery"
    gallery.mkdir()
    res = run_tool(["tools/demo.py", "--config-file", CFG, "--weights", reid_ckpt, "--query",
                    str(tmp_path / "q.jpg"), "--gallery", str(gallery), "--output-dir", str(tmp_path / "o")])
    assert res.returncode == 2 and f"query image not found: {tmp_path / 'q.jpg'}" in res.stderr

    res = run_tool(["tools/visualize_results.py", "ranks", "--features", str(tmp_path / "x.npz"),
                    "--output-dir", str(tmp_path)])
    assert res.returncode == 2 and f"features file not found: {tmp_path / 'x.npz'}" in res.stderr

    # a registered dataset whose files are absent: the error names the folder
    res = run_tool(["tools/extract_features.py", "--config-file", CFG, "--weights", reid_ckpt, "--dataset",
                    "synthetic_market_test", "--output", str(tmp_path / "f.npz")],
                   env_extra={"REID2_DATASETS": str(tmp_path / "no_datasets")})
    assert res.returncode == 2 and str(tmp_path / "no_datasets") in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr


def test_extract_features_reid_content(reid_feats):
    from detectron2.data import DatasetCatalog

    dicts = DatasetCatalog.get("synthetic_market_test")
    z = np.load(reid_feats)
    assert z["feats"].shape == (len(dicts), 128) and z["feats"].dtype == np.float32
    assert list(z["names"]) == [d["file_name"] for d in dicts]
    assert list(z["pids"]) == [d["pid"] for d in dicts] and list(z["camids"]) == [d["camid"] for d in dicts]
    assert set(z["splits"]) == {"query", "gallery"}
    assert json.loads(str(z["meta_json"]))["task"] == "reid"


def test_extract_features_resumes_after_the_last_complete_chunk(reid_ckpt, reid_feats, tmp_path, monkeypatch):
    tool = load_tool("extract_features")
    calls = []
    real_chunk = tool._reid_chunk
    monkeypatch.setattr(tool, "_reid_chunk",
                        lambda e, items, bar: calls.append(len(items)) or real_chunk(e, items, bar))
    out = tmp_path / "f.npz"
    args = ["--config-file", CFG, "--weights", reid_ckpt, "--dataset", "synthetic_market_test", "--output", str(out),
            "--chunk-size", "32", "--keep-parts", "--device", "cpu"]
    tool.main(args)
    assert calls == [32, 32, 6]
    parts = sorted(p.name for p in (tmp_path / "f.npz.parts").iterdir())
    assert parts == ["chunk_000000000.npz", "chunk_000000032.npz", "chunk_000000064.npz", "manifest.json"]
    # "interrupted" during the last chunk: only that one is computed again, the result is the same
    (tmp_path / "f.npz.parts" / "chunk_000000064.npz").unlink()
    out.unlink()
    calls.clear()
    tool.main(args[:-3] + ["--device", "cpu"])
    assert calls == [6]
    np.testing.assert_allclose(np.load(out)["feats"], np.load(reid_feats)["feats"], rtol=1e-5, atol=1e-6)
    assert not (tmp_path / "f.npz.parts").exists()  # merged and cleaned up
    # partial results of another run are not mixed in
    (tmp_path / "f.npz.parts").mkdir()
    (tmp_path / "f.npz.parts" / "manifest.json").write_text(json.dumps({"chunk_size": 5}))
    with pytest.raises(RuntimeError, match="--restart"):
        tool.main(args)
    tool.main(args + ["--restart"])


def test_extract_features_from_a_folder(reid_ckpt, datasets_root, tmp_path):
    folder = tmp_path / "crops"
    folder.mkdir()
    src = sorted((datasets_root / "synthetic/Market-1501-v15.09.15/query").glob("*.jpg"))[:3]
    for p in src:
        shutil.copy(p, folder / p.name)
    out = tmp_path / "crops.npz"
    load_tool("extract_features").main(["--config-file", CFG, "--weights", reid_ckpt, "--images", str(folder),
                                        "--output", str(out)])
    z = np.load(out)
    assert z["feats"].shape == (3, 128) and list(z["image_ids"]) == [p.name for p in src]
    assert (z["pids"] == -1).all()


def test_visualize_ranks_and_cmc(reid_feats, tmp_path):
    from reid2.evaluation import ReIDEvaluator
    from reid2.utils.visualizer import rank_grid_size

    vis = load_tool("visualize_results")
    vis.main(["ranks", "--features", reid_feats, "--output-dir", str(tmp_path / "a"), "--num-queries", "3",
              "--topk", "5"])
    assert Image.open(tmp_path / "a/ranked_list.png").size == rank_grid_size(3, 5) == (456, 460)
    res = json.loads((tmp_path / "a/results.json").read_text())
    assert len(res["queries"]) == 3 and all(len(q["ranked"]) == 5 for q in res["queries"])
    assert all(np.all(np.diff([r["distance"] for r in q["ranked"]]) >= 0) for q in res["queries"])
    # the metrics are those of the evaluator
    z = np.load(reid_feats)
    ev = ReIDEvaluator("synthetic_market_test")
    ev.process({"targets": torch.from_numpy(z["pids"]), "camids": torch.from_numpy(z["camids"]),
                "splits": list(z["splits"])}, torch.from_numpy(z["feats"]))
    metrics = ev.evaluate()["reid"]
    assert res["cmc"][0] * 100 == pytest.approx(metrics["Rank-1"]) and res["mAP"] * 100 == pytest.approx(metrics["mAP"])

    vis.main(["ranks", "--features", reid_feats, "--output-dir", str(tmp_path / "b"), "--num-queries", "2",
              "--topk", "4", "--rerank", "--cell", "32", "64"])
    assert Image.open(tmp_path / "b/ranked_list.png").size == rank_grid_size(2, 4, (32, 64))
    assert json.loads((tmp_path / "b/results.json").read_text())["rerank"] is True

    vis.main(["cmc", "--results", reid_feats, str(tmp_path / "b/results.json"), "--labels", "plain", "re-ranked",
              "--output", str(tmp_path / "cmc.png")])
    assert Image.open(tmp_path / "cmc.png").size == (640, 480)


def test_demo_ranks_the_query_copy_first(reid_ckpt, datasets_root, tmp_path):
    from reid2.engine.predictor import ReIDEmbedder, load_model
    from reid2.evaluation import compute_distance_matrix
    from reid2.utils.visualizer import rank_grid_size

    market = datasets_root / "synthetic/Market-1501-v15.09.15"
    query = sorted((market / "query").glob("*.jpg"))[0]
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    shutil.copy(query, gallery / "zz_same_image.jpg")  # last by name, first by distance
    for p in sorted((market / "bounding_box_test").glob("*.jpg"))[:5]:
        shutil.copy(p, gallery / p.name)
    # the query given as a box in a wider picture: the crop is the original query image
    canvas = Image.new("RGB", (200, 160), (0, 0, 0))
    canvas.paste(Image.open(query), (40, 10))
    canvas.save(tmp_path / "street.png")
    w, h = Image.open(query).size
    out = tmp_path / "out"
    load_tool("demo").main(["--config-file", CFG, "--weights", reid_ckpt, "--query", str(tmp_path / "street.png"),
                            "--query-box", "40", "10", str(40 + w), str(10 + h), "--gallery", str(gallery),
                            "--output-dir", str(out), "--topk", "4"])
    res = json.loads((out / "demo.json").read_text())
    files = [r["file"] for r in res["results"]]
    assert files[0] == str(gallery / "zz_same_image.jpg") and res["results"][0]["distance"] < 1e-3
    assert [r["rank"] for r in res["results"]] == list(range(1, 7))
    # the whole order is the one of the model's distances
    cfg, model = load_model(CFG, reid_ckpt, ["MODEL.DEVICE", "cpu"])
    emb = ReIDEmbedder(cfg, model)
    names = sorted(str(p) for p in gallery.iterdir())
    dist = compute_distance_matrix(emb.embed([str(query)]), emb.embed(names), normalize=True)[0]
    assert files == [names[i] for i in np.argsort(dist, kind="stable")]
    np.testing.assert_allclose([r["distance"] for r in res["results"]], np.sort(dist), atol=1e-4)
    assert Image.open(out / "demo.png").size == rank_grid_size(1, 4) == (382, 156)


@pytest.mark.slow
def test_trained_model_through_every_tool_cli(datasets_root, tmp_path):
    """train_net (100 iterations) → extract_features → visualize ranks/cmc → demo → export, all as commands."""
    out = tmp_path / "run"
    res = run_tool(["tools/train_net.py", "--config-file", CFG, "SOLVER.MAX_ITER", "100", "SOLVER.WARMUP_ITERS", "0",
                    "OUTPUT_DIR", str(out)])
    assert res.returncode == 0, res.stderr[-3000:]
    ckpt = str(out / "model_final.pth")
    feats = tmp_path / "f.npz"
    res = run_tool(["tools/extract_features.py", "--config-file", CFG, "--weights", ckpt, "--dataset",
                    "synthetic_market_test", "--output", str(feats)])
    assert res.returncode == 0, res.stderr[-3000:]
    res = run_tool(["tools/visualize_results.py", "ranks", "--features", str(feats), "--output-dir", str(tmp_path)])
    assert res.returncode == 0, res.stderr[-3000:]
    trained = json.loads((tmp_path / "results.json").read_text())
    evaluation = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()
                  if '"evaluation"' in line][-1]
    assert 100 * trained["cmc"][0] == pytest.approx(evaluation["reid/Rank-1"], abs=1e-3)
    res = run_tool(["tools/visualize_results.py", "cmc", "--results", str(tmp_path / "results.json"), "--output",
                    str(tmp_path / "cmc.png")])
    assert res.returncode == 0 and Image.open(tmp_path / "cmc.png").size == (640, 480)
    res = run_tool(["tools/export.py", "--config-file", CFG, "--weights", ckpt, "--output-dir", str(tmp_path / "x")])
    assert res.returncode == 0 and res.stdout.count("-> OK") == 2, res.stdout + res.stderr[-3000:]
