"""tools/export.py: TorchScript + ONNX files of a re-ID model, of the person-search identity branch and of
DSA's MF-Stream, run with torch.jit.load / onnxruntime on real synthetic images and compared with PyTorch."""
import json

import numpy as np
import pytest
import torch

from tests.helpers import REPO, load_tool, save_random_checkpoint

ort = pytest.importorskip("onnxruntime")


def run_export(cfg_file, ckpt, out, *extra):
    rc = load_tool("export").main(["--config-file", cfg_file, "--weights", ckpt, "--output-dir", str(out), *extra])
    name = cfg_file.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    spec = json.loads((out / f"{name}.json").read_text())
    return rc, spec, out / f"{name}.pt", out / f"{name}.onnx"


def test_export_reid_model(datasets_root, tmp_path):
    from detectron2.data import DatasetCatalog

    from reid2.engine.predictor import ReIDEmbedder, load_model

    cfg_file = str(REPO / "configs/synthetic/reid_tiny.yaml")
    ckpt = save_random_checkpoint(cfg_file, tmp_path)
    rc, spec, pt, onnx_path = run_export(cfg_file, ckpt, tmp_path)
    assert rc == 0 and spec["verification"]["onnx"]["ok"] and spec["verification"]["torchscript"]["ok"]
    assert spec["size_hw"] == [128, 64] and spec["verification"]["onnx"]["output_shapes"] == [[2, 128], [3, 128]]

    # the files on real images, through the test transform, against the PyTorch model's embeddings
    cfg, model = load_model(cfg_file, ckpt, ["MODEL.DEVICE", "cpu"])
    emb = ReIDEmbedder(cfg, model)
    files = [d["file_name"] for d in DatasetCatalog.get("synthetic_market_test")[:5]]
    images = torch.stack([emb.transform(Image_open(f)) for f in files])
    ref = emb.embed(files)
    onnx_out = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
        None, {"images": images.numpy()})[0]
    np.testing.assert_allclose(onnx_out, ref, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(torch.jit.load(str(pt))(images).detach().numpy(), ref, atol=1e-5, rtol=1e-5)


def Image_open(path):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def test_export_person_search_identity_branch(datasets_root, tmp_path):
    from detectron2.data import DatasetCatalog

    from reid2.engine.predictor import PersonSearchPredictor, load_model

    cfg_file = str(REPO / "configs/synthetic/oim_tiny.yaml")
    ckpt = save_random_checkpoint(cfg_file, tmp_path)
    rc, spec, pt, onnx_path = run_export(cfg_file, ckpt, tmp_path)
    assert rc == 0 and all(r["ok"] for r in spec["verification"].values())

    cfg, model = load_model(cfg_file, ckpt, ["MODEL.DEVICE", "cpu"])
    predictor = PersonSearchPredictor(cfg, model)
    d = DatasetCatalog.get("synthetic_cuhk_sysu_test")[3]
    boxes = np.asarray([a["bbox"] for a in d["annotations"]], np.float32)
    ref = predictor.embed_boxes(d["file_name"], boxes)  # model.embed_boxes, original coordinates
    image = predictor.mapper({"file_name": d["file_name"]})["image"].float()[None]
    assert image.shape[-2:] == (240, 320)  # the test resize keeps 320x240 scenes: same box coordinates
    onnx_out = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
        None, {"image": image.numpy(), "boxes": boxes})[0]
    np.testing.assert_allclose(onnx_out, ref, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(torch.jit.load(str(pt))(image, torch.from_numpy(boxes)).detach().numpy(), ref, atol=1e-5)


@pytest.mark.skipif(not (REPO / "projects/DSA/dsa").is_dir(), reason="projects/DSA is absent")
def test_export_dsa_mf_stream(datasets_root, tmp_path):
    from reid2.engine.predictor import load_model

    cfg_file = str(REPO / "projects/DSA/configs/synthetic_dsa_tiny.yaml")
    ckpt = save_random_checkpoint(cfg_file, tmp_path)
    rc, spec, _, onnx_path = run_export(cfg_file, ckpt, tmp_path, "--format", "onnx")
    assert rc == 0 and spec["exported"] == "DSAInferenceModel" and spec["verification"]["onnx"]["ok"]
    _, model = load_model(cfg_file, ckpt, ["MODEL.DEVICE", "cpu"])
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        ref = model({"images": x}).numpy()  # the full DSAReID at test time = its MF-Stream
    out = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=1e-4)
