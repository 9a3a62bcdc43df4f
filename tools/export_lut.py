#!/usr/bin/env python
"""Export the OIM look-up table (LUT) of a person-search checkpoint for KD_reid.

Examples:
  python tools/export_lut.py --checkpoint output/cuhk_sysu/oim_r50/model_final.pth --output lut.npy
  python tools/export_lut.py --checkpoint seqnet_epoch_19.pth --output lut.npz          # + metadata
  python tools/export_lut.py --checkpoint coat_cuhk.pth --output lut.npy --key roi_heads.reid_loss_3rd.lut

Keys searched by default: reid2 roi_heads.oim_loss.lut, SeqNet/NAE roi_heads.reid_loss.lut,
COAT roi_heads.reid_loss_2nd.lut / _3rd.lut, psd2 ...oim_loss.lb_layer.lookup_table.
The table is written as stored; training with MODEL.KD.REID.LUT_SOURCE lut.npy normalises its rows.
"""
import argparse
import sys

import reid2  # noqa: F401  (installs the detectron2._C stub)
from reid2.modeling.kd.lut import export_lut


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="checkpoint holding the LUT (.pth)")
    parser.add_argument("--output", required=True,
                        help="output file: .npy (table) or .npz (table + metadata)")
    parser.add_argument("--key", default=None,
                        help="state-dict key of the LUT (default: search the known keys)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        raw = export_lut(args.checkpoint, args.output, key=args.key)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"export_lut: error: {err}\n")
    num_pids, feat_dim = raw.table.shape
    zero_rows = int((raw.table.abs().sum(dim=1) == 0).sum())
    print(f"wrote {args.output}: {num_pids} ids x {feat_dim} dims ({zero_rows} all-zero rows) "
          f"from {raw.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
