"""Export reid2 models to TorchScript and ONNX, and check the exported files against PyTorch.

What is exported (:func:`export_module`):

* ``"reid"``: a re-ID meta-architecture (``ReIDBaseline`` or any model whose eval forward takes
  ``{"images": x}``): input ``images`` (B, 3, H, W), normalised as ``cfg.INPUT.REID`` (the test transform),
  output ``features`` (B, D): of the module the model's ``export_inference_model()`` returns (the model itself
  when it has none; see ``reid2.modeling.meta_arch``).
* ``"person_search"``: the identity branch of a ``PersonSearchRCNN`` for given boxes: inputs ``image``
  (1, 3, H, W) raw pixels in the model's ``INPUT.FORMAT`` (0..255, already resized as the test mapper does) and
  ``boxes`` (N, 4) xyxy in that image's pixels; output ``features`` (N, D) = ``model.embed_boxes``. The
  detector (RPN + NMS) is not part of it.

:func:`verify_exports` runs the TorchScript file (``torch.jit.load``) and the ONNX file (onnxruntime) on
inputs of two batch sizes and reports the largest absolute difference to the PyTorch outputs.
"""
import json
import os
from typing import Dict, List

import numpy as np
import torch
from torch import nn

from reid2.utils.modules import unwrap_model

__all__ = ["ReIDExportWrapper", "PersonSearchEmbeddingWrapper", "export_module", "example_inputs",
           "export_torchscript", "export_onnx", "verify_exports", "input_spec"]


class ReIDExportWrapper(nn.Module):
    """images (B,3,H,W) → features (B,D) of a re-ID model in eval mode."""

    def __init__(self, model):
        super().__init__()
        export = getattr(model, "export_inference_model", None)  # the declared test-time module, if any
        self.model = export() if export is not None else model

    def forward(self, images):
        out = self.model({"images": images})
        return out["features"] if isinstance(out, dict) else out


class PersonSearchEmbeddingWrapper(nn.Module):
    """(image (1,3,H,W) raw pixels, boxes (N,4) xyxy) → features (N,D): backbone + RoI pooling + res5 + embedding."""

    def __init__(self, model):
        super().__init__()
        from detectron2.structures import Boxes

        self._boxes_cls = Boxes
        self.backbone, self.roi_heads = model.backbone, model.roi_heads
        self.register_buffer("pixel_mean", model.pixel_mean.clone(), persistent=False)
        self.register_buffer("pixel_std", model.pixel_std.clone(), persistent=False)

    def forward(self, image, boxes):
        features = self.backbone((image - self.pixel_mean) / self.pixel_std)
        # = roi_heads.embed_boxes for one image, without its split by len(boxes) (a constant once traced)
        return self.roi_heads.embedding_head(self.roi_heads.pooled_features(features, [self._boxes_cls(boxes)]))


def export_module(model, task):
    model = unwrap_model(model).eval()
    if task == "person_search":
        return PersonSearchEmbeddingWrapper(model).eval()
    return ReIDExportWrapper(model).eval()


def input_spec(cfg, task) -> dict:
    """How to feed the exported model (written next to the files as ``<name>.json``)."""
    if task == "person_search":
        return {"task": task, "inputs": {"image": "(1, 3, H, W) float32 raw pixels 0..255, channel order "
                                                  f"{cfg.INPUT.FORMAT}, shortest edge resized to "
                                                  f"{cfg.INPUT.MIN_SIZE_TEST} (max {cfg.INPUT.MAX_SIZE_TEST})",
                                         "boxes": "(N, 4) float32 xyxy in the resized image's pixels"},
                "outputs": {"features": "(N, D) float32 identity embeddings"},
                "pixel_mean": list(cfg.MODEL.PIXEL_MEAN), "pixel_std": list(cfg.MODEL.PIXEL_STD)}
    from reid2.data.transforms import NORMALIZATIONS

    mean, std = NORMALIZATIONS[cfg.INPUT.REID.NORMALIZE]
    return {"task": task, "inputs": {"images": f"(B, 3, {cfg.INPUT.REID.SIZE_TEST[0]}, {cfg.INPUT.REID.SIZE_TEST[1]}) "
                                               "float32 RGB in [0, 1], then (x - mean) / std"},
            "outputs": {"features": "(B, D) float32 embeddings (L2-normalise before comparing when "
                                    f"TEST.REID.NORMALIZE_FEATS={cfg.TEST.REID.NORMALIZE_FEATS})"},
            "size_hw": list(cfg.INPUT.REID.SIZE_TEST), "mean": list(mean), "std": list(std),
            "metric": cfg.TEST.REID.METRIC}


def example_inputs(cfg, task, sizes=(2, 3), seed=0) -> List[tuple]:
    """One input tuple per size (batch size for re-ID, number of boxes for person search)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for k, n in enumerate(sizes):
        if task == "person_search":  # the image size changes too (dynamic height / width)
            h, w = cfg.INPUT.MIN_SIZE_TEST, int(cfg.INPUT.MIN_SIZE_TEST * 4 / 3) + 32 * k
            image = torch.rand(1, 3, h, w, generator=g) * 255
            xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.7, h * 0.5])
            wh = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.2, h * 0.4]) + torch.tensor([8.0, 16.0])
            out.append((image, torch.cat([xy, xy + wh], 1)))
        else:
            h, w = cfg.INPUT.REID.SIZE_TEST
            out.append((torch.randn(n, 3, h, w, generator=g),))
    return out


def _names(task):
    return (["image", "boxes"] if task == "person_search" else ["images"]), ["features"]


def export_torchscript(module, inputs, path):
    with torch.no_grad():
        traced = torch.jit.trace(module, inputs, check_trace=False)
    traced.save(path)
    return path


def export_onnx(module, inputs, path, task, opset=17):
    in_names, out_names = _names(task)
    if task == "person_search":
        dynamic = {"image": {2: "height", 3: "width"}, "boxes": {0: "num_boxes"}, "features": {0: "num_boxes"}}
    else:
        dynamic = {"images": {0: "batch"}, "features": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(module, inputs, path, input_names=in_names, output_names=out_names,
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False, do_constant_folding=True)
    import onnx

    onnx.checker.check_model(onnx.load(path))
    return path


def verify_exports(module, paths: Dict[str, str], inputs_list, task, atol=1e-4, rtol=1e-3) -> dict:
    """Largest |exported − PyTorch| per format over ``inputs_list``; ``ok`` when within ``atol + rtol·|ref|``."""
    in_names, _ = _names(task)
    report = {}
    loaded = {}
    if "torchscript" in paths:
        loaded["torchscript"] = torch.jit.load(paths["torchscript"], map_location="cpu")
    if "onnx" in paths:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        loaded["onnx"] = ort.InferenceSession(paths["onnx"], opts, providers=["CPUExecutionProvider"])
    for fmt, runner in loaded.items():
        worst, ok, shapes = 0.0, True, []
        for inputs in inputs_list:
            with torch.no_grad():
                ref = module(*inputs).float().numpy()
                if fmt == "torchscript":
                    got = runner(*inputs).float().numpy()
                else:
                    got = runner.run(None, {n: x.numpy() for n, x in zip(in_names, inputs)})[0]
            if got.shape != ref.shape:
                ok = False
                shapes.append(f"{got.shape} != {ref.shape}")
                continue
            diff = np.abs(got - ref)
            worst = max(worst, float(diff.max()) if diff.size else 0.0)
            ok &= bool(np.all(diff <= atol + rtol * np.abs(ref)))
            shapes.append(list(ref.shape))
        report[fmt] = {"max_abs_diff": worst, "ok": ok, "output_shapes": shapes, "path": paths[fmt]}
    return report


def write_spec(path, spec, report):
    with open(path, "w") as f:
        json.dump({**spec, "verification": report}, f, indent=1)
    return path
