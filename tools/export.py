#!/usr/bin/env python
"""Export a trained model to TorchScript and ONNX, then check the exported files against PyTorch.

Examples:
  # re-ID model (images -> embeddings)
  python tools/export.py --config-file configs/synthetic/reid_tiny.yaml \\
      --weights output/synthetic/reid_tiny/model_final.pth --output-dir exported/
  # DSA-reID: its test-time MF-Stream
  python tools/export.py --config-file projects/DSA/configs/synthetic_dsa_tiny.yaml \\
      --weights output/dsa/synthetic_dsa_tiny/model_final.pth --output-dir exported/
  # person search: the identity branch (image + boxes -> embeddings; the detector is not exported)
  python tools/export.py --config-file configs/synthetic/oim_tiny.yaml \\
      --weights output/synthetic/oim_tiny/model_final.pth --output-dir exported/ --format onnx

Writes OUTPUT_DIR/<name>.pt (TorchScript, torch.jit.load), OUTPUT_DIR/<name>.onnx and OUTPUT_DIR/<name>.json
(input layout, normalisation, and the verification report). The check runs both files (TorchScript with
torch.jit.load, ONNX with onnxruntime) on inputs of two sizes (batch for re-ID, number of boxes for person
search) and compares with the PyTorch model; a difference above --atol + --rtol·|ref| exits with status 1.
Trailing KEY VALUE pairs override the config.
"""
import reid2  # noqa: F401  (first: it restores the PIL.Image names Detectron2 v0.6 uses, gone in Pillow >= 10)

# isort: split
import argparse
import json
import logging
import os
import sys
from pathlib import Path


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--weights", metavar="FILE", help="checkpoint, or 'random' for an untrained model on "
                   "purpose (default: MODEL.WEIGHTS of the config)")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--name", default=None, help="file stem (default: the config file's stem)")
    p.add_argument("--format", choices=("torchscript", "onnx", "both"), default="both")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--atol", type=float, default=1e-4)
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from detectron2.utils.logger import setup_logger

    setup_logger(name="reid2")
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # D2's shape asserts, traced as constants
    from reid2.engine.export import (
        example_inputs,
        export_module,
        export_onnx,
        export_torchscript,
        input_spec,
        verify_exports,
        write_spec,
    )
    from reid2.engine.predictor import load_model, model_task

    # exported on CPU: the files run anywhere; onnxruntime is checked on CPU
    cfg, model = load_model(args.config_file, args.weights, [o for o in args.opts if o != "--"], device="cpu")
    task = model_task(model)
    module = export_module(model, task)
    name = args.name or Path(args.config_file).stem
    os.makedirs(args.output_dir, exist_ok=True)
    inputs = example_inputs(cfg, task)
    paths = {}
    if args.format in ("torchscript", "both"):
        paths["torchscript"] = export_torchscript(module, inputs[0], os.path.join(args.output_dir, name + ".pt"))
    if args.format in ("onnx", "both"):
        paths["onnx"] = export_onnx(module, inputs[0], os.path.join(args.output_dir, name + ".onnx"), task,
                                    args.opset)
    report = verify_exports(module, paths, inputs, task, atol=args.atol, rtol=args.rtol)
    spec = input_spec(cfg, task)
    spec["meta_architecture"] = cfg.MODEL.META_ARCHITECTURE
    spec["exported"] = type(module.model).__name__ if hasattr(module, "model") else "PersonSearchEmbedding"
    spec_path = write_spec(os.path.join(args.output_dir, name + ".json"), spec, report)
    for fmt, r in report.items():
        print(f"{fmt}: {r['path']} max |diff| {r['max_abs_diff']:.2e} on outputs {r['output_shapes']} -> "
              f"{'OK' if r['ok'] else 'MISMATCH'}")
    print(f"input layout and report: {spec_path}")
    logging.getLogger("reid2").info("export report: %s", json.dumps(report))
    return 0 if all(r["ok"] for r in report.values()) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
