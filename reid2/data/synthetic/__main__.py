"""python -m reid2.data.synthetic --root DIR [--preset default|tiny] [--seed 0] [--only market|cuhk_sysu]"""
import argparse
import logging

from .presets import GENERATORS, PRESETS, generate_all


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m reid2.data.synthetic",
        description="Write the synthetic Market-1501 and CUHK-SYSU datasets (real on-disk formats) under --root. "
                    "Folders already holding the same data are left as they are.")
    parser.add_argument("--root", required=True, help="output folder (e.g. datasets/synthetic)")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS), help="dataset sizes")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed → identical files)")
    parser.add_argument("--only", choices=sorted(GENERATORS), help="write one dataset only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name, path in generate_all(args.root, seed=args.seed, preset=args.preset, only=args.only).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
