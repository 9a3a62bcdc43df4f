"""Short training + evaluation of the synthetic re-ID and person-search configs, as a user runs them
(``tools/train_net.py``, images read from disk, loader workers on): images/s and the data-loading share of the
iteration time (``gpu_check`` 3).

The synthetic datasets (``reid2.data.synthetic``, preset ``--preset``) are written to a temporary
``REID2_DATASETS`` first. Iteration and data times are Detectron2's (``metrics.json``, logged every iteration,
20-iteration medians); the evaluation time is Detectron2's "Total inference time".

    python -m bench.gpu_synthetic_train [--iters 200] [--workers 4] [--amp] [--out FILE.md]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

from bench.common import REPO, emit_table

RUNS = [("configs/synthetic/reid_tiny.yaml", "reid/mAP"), ("configs/synthetic/bc_tiny.yaml", "reid/mAP"),
        ("configs/synthetic/oim_tiny.yaml", "search/mAP")]


def _seconds(text):
    h, m, s = text.split(":")
    return 3600 * int(h) + 60 * int(m) + float(s)


def run(config, metric, args, root, out):
    opts = ["SOLVER.MAX_ITER", args.iters, "SOLVER.WARMUP_ITERS", min(20, args.iters), "SOLVER.STEPS", "()",
            "DATALOADER.NUM_WORKERS", args.workers, "REID2.LOG_PERIOD", 1, "TEST.EVAL_PERIOD", 0,
            "SOLVER.CHECKPOINT_PERIOD", 10 ** 6, "OUTPUT_DIR", out, "SOLVER.AMP.ENABLED", args.amp]
    if args.device:
        opts += ["MODEL.DEVICE", args.device]
    env = dict(os.environ, REID2_DATASETS=str(root), PYTHONPATH=str(REPO))
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "tools/train_net.py", "--config-file", config, *map(str, opts)],
                         cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        return [config, "FAILED", res.stderr[-400:].replace("\n", " "), "", "", "", "", ""]
    lines = [json.loads(x) for x in Path(out, "metrics.json").read_text().splitlines() if x.strip()]
    steps = [x for x in lines if "time" in x and "data_time" in x]
    iter_time = sum(x["time"] for x in steps) / max(len(steps), 1)
    data_time = sum(x["data_time"] for x in steps) / max(len(steps), 1)
    evals = [x for x in lines if metric in x]
    log = Path(out, "log.txt").read_text()
    inference = re.findall(r"Total inference time: (\d+:\d+:[\d.]+)", log)
    batch = int(re.search(r"IMS_PER_BATCH: (\d+)", Path(out, "config.yaml").read_text()).group(1))
    return [Path(config).stem, args.iters, batch, batch / iter_time if iter_time else float("nan"),
            data_time / iter_time if iter_time else float("nan"),
            sum(_seconds(t) for t in inference), evals[-1][metric] if evals else float("nan"), wall]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--preset", default="default", help="synthetic data preset (tiny for a dry run)")
    parser.add_argument("--amp", action="store_true", help="SOLVER.AMP.ENABLED True")
    parser.add_argument("--device", default="", help="MODEL.DEVICE (default: the configs' auto)")
    parser.add_argument("--out", help="write the table (markdown) here too")
    args = parser.parse_args(argv)
    from reid2.data.synthetic import generate_all

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_all(Path(tmp) / "datasets" / "synthetic", seed=0, preset=args.preset)
        print(f"synthetic data ({args.preset}) written in {time.perf_counter() - start:.1f} s", flush=True)
        for config, metric in RUNS:
            rows.append(run(config, metric, args, Path(tmp) / "datasets", Path(tmp) / Path(config).stem))
            print(rows[-1], flush=True)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    title = (f"Synthetic configs trained {args.iters} iterations with tools/train_net.py ({name}, {args.workers} "
             f"loader workers, data preset {args.preset}, {'AMP' if args.amp else 'fp32'}), then evaluated")
    table = tabulate(rows, headers=["config", "iterations", "batch", "train images/s", "data-time share",
                                    "eval s", "final mAP", "wall s"], floatfmt=".3f", tablefmt="pipe")
    emit_table(title, table, args.out)


if __name__ == "__main__":
    main()
