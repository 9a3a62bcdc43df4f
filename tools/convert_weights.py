#!/usr/bin/env python
"""Convert a torchvision ImageNet .pth into a reid2 re-ID backbone file or a Detectron2 C4 person-search file.

Examples (the input is torchvision's model-zoo file, downloaded once on a machine with internet):
  # re-ID (MODEL.REID_BACKBONE.PRETRAINED): ResNet-18/34/50/101/152, DenseNet-121, MobileNetV2
  python tools/convert_weights.py --arch resnet50 --target reid resnet50-0676ba61.pth weights/r50_reid.pth
  # person search (MODEL.WEIGHTS of configs/oim_r18.yaml, configs/oim_r50.yaml ...): ResNets only
  python tools/convert_weights.py --arch resnet18 --target person_search resnet18-f37072fd.pth weights/r18_c4.pth

Targets:
  reid           torchvision module names (conv1, layer1 ... / features.*) without the ImageNet classifier;
                 older layouts (DenseNet "norm.1", the flat MobileNetV2 file) renamed to torchvision's.
  person_search  Detectron2 C4 names: conv1..layer3 -> backbone.stem / backbone.res2..res4, layer4 ->
                 roi_heads.res5 (the per-RoI head). BatchNorm step counters are dropped (FrozenBN has none).
                 No C4 person-search backbone exists for DenseNet-121 or MobileNetV2.

The source must be exactly a torchvision state dict of --arch (default: detected); it is loaded with
torch.load(weights_only=True) only, so a file that pickles code is refused. Every source tensor is
converted or reported as dropped (the classifier), and the output is checked key by key against the
model it is for. The output (.pth, or .pkl in Detectron2's model-zoo format) holds
{"model": state dict, "__author__", "provenance": arch, source file name and sha256, target, dropped keys,
config}. The tool prints the config keys under which the model computes torchvision's features: for
person search these include MODEL.RESNETS.STRIDE_IN_1X1 False and RGB ImageNet pixel statistics.
"""
import argparse
import json
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from reid2.modeling.backbones.convert import ARCHS, TARGETS, convert_file  # noqa: E402


def _parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default=None, metavar="ARCH",
                   help=f"torchvision architecture of INPUT: {', '.join(ARCHS)} (also mobilenetv2); "
                        "default: detected from the keys and shapes")
    p.add_argument("--target", required=True, choices=TARGETS,
                   help="reid: MODEL.REID_BACKBONE.PRETRAINED file; person_search: Detectron2 C4 MODEL.WEIGHTS file")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("input", metavar="INPUT", help="torchvision ImageNet state dict (.pth / .pt)")
    p.add_argument("output", metavar="OUTPUT", help="converted file (.pth / .pt, or .pkl)")
    return p


def _format_value(value) -> str:
    """A config value as Detectron2's ``merge_from_list`` reads it from a shell command line."""
    return shlex.quote(json.dumps(value, separators=(",", ":")) if isinstance(value, list) else str(value))


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if os.path.exists(args.output) and not args.overwrite:
        print(f"error: {args.output} exists (pass --overwrite to replace it)", file=sys.stderr)
        return 2
    if os.path.exists(args.output) and os.path.exists(args.input) and os.path.samefile(args.input, args.output):
        print(f"error: OUTPUT is INPUT ({args.input})", file=sys.stderr)
        return 2
    try:
        converted = convert_file(args.input, args.output, args.arch, args.target)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.input}: torchvision {converted.arch}, {converted.source_tensors} tensors "
          f"-> {args.output} (target {converted.target})")
    print(f"  converted: {len(converted.state_dict)} tensors")
    reasons = {}
    for key, reason in converted.dropped.items():
        reasons.setdefault(reason, []).append(key)
    for reason, keys in reasons.items():
        shown = ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")
        print(f"  dropped: {len(keys)} ({reason}): {shown}")
    for note in converted.notes:
        print(f"  note: {note}")
    overrides = " ".join(f"{k} {_format_value(v)}" for k, v in converted.config.items())
    print(f"Use it as {converted.config_key} with: {converted.config_key} {shlex.quote(args.output)} {overrides}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
