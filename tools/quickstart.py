#!/usr/bin/env python
"""The main job on the embedded synthetic data: OIM teacher → its LUT → KD-OIM student → one table.

Stages (each skipped when its output exists, so an interrupted run resumes):
  1. write the synthetic CUHK-SYSU-format data to $REID2_DATASETS/synthetic (default ./datasets);
  2. train a small OIM teacher               (configs/synthetic/oim_tiny.yaml);
  3. export the teacher's lookup table        (tools/export_lut.py);
  4. train the KD_reid student of configs/kd_oim.yaml with CPU sizes (configs/synthetic/kd_oim_tiny.yaml),
     its LUT copied from the teacher and frozen, λ_oim = 0.1;
  5. evaluate the untrained student, the teacher and the student; print one table.

Example:
  python tools/quickstart.py --output output/quickstart
  python tools/train_net.py --config-file configs/synthetic/kd_oim_tiny.yaml --eval-only \
      MODEL.WEIGHTS output/quickstart/student/model_final.pth OUTPUT_DIR output/quickstart/student
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TEACHER_CFG = "configs/synthetic/oim_tiny.yaml"
STUDENT_CFG = "configs/synthetic/kd_oim_tiny.yaml"
COLUMNS = [("search/mAP", "search mAP"), ("search/top1", "top-1"),
           ("detection/AP", "det AP"), ("detection/recall", "det recall")]


def run_train_net(args, log_name, out_dir):
    """tools/train_net.py in a subprocess; its log streams to the console and to a file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(REPO / "tools" / "train_net.py"), *args]
    print(f"\n$ {' '.join(cmd)}", flush=True)
    with open(out_dir / log_name, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        for line in proc.stdout:
            log.write(line)
            if any(k in line for k in ("eta:", "Evaluation results", "|", "Starting training",
                                       "Inference done", "Error", "error")):
                sys.stdout.write("  " + line)
        if proc.wait() != 0:
            raise SystemExit(f"stage failed ({' '.join(cmd)}); see {out_dir / log_name}")


def evaluate(config, weights, out_dir, extra=()):
    from reid2.evaluation import read_last_evaluation

    run_train_net(["--config-file", config, "--eval-only", "MODEL.WEIGHTS", str(weights),
                   "OUTPUT_DIR", str(out_dir), *extra], "eval_log.txt", out_dir)
    return read_last_evaluation(str(out_dir))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="output/quickstart", help="run folder (default: %(default)s)")
    parser.add_argument("--preset", default="default", choices=["default", "tiny"],
                        help="size of the synthetic data set (tiny: for smoke tests)")
    parser.add_argument("--teacher-iters", type=int, default=None, help="override SOLVER.MAX_ITER of the teacher")
    parser.add_argument("--student-iters", type=int, default=None, help="override SOLVER.MAX_ITER of the student")
    args = parser.parse_args()
    start = time.time()
    out = (REPO / args.output).resolve() if not os.path.isabs(args.output) else Path(args.output)
    datasets = Path(os.environ.setdefault("REID2_DATASETS", str(REPO / "datasets"))).resolve()
    os.environ["REID2_DATASETS"] = str(datasets)

    print(f"[1/5] synthetic CUHK-SYSU-format data in {datasets / 'synthetic'}", flush=True)
    from reid2.data.synthetic import generate_all

    generate_all(datasets / "synthetic", seed=0, preset=args.preset)

    teacher_dir, student_dir = out / "teacher", out / "student"
    teacher_extra = ["SOLVER.MAX_ITER", str(args.teacher_iters)] if args.teacher_iters else []
    student_extra = ["SOLVER.MAX_ITER", str(args.student_iters)] if args.student_iters else []
    print("[2/5] OIM teacher", flush=True)
    if not (teacher_dir / "model_final.pth").is_file():
        run_train_net(["--config-file", TEACHER_CFG, "--resume", "OUTPUT_DIR", str(teacher_dir),
                       *teacher_extra], "train_log.txt", teacher_dir)
    else:
        print(f"  {teacher_dir / 'model_final.pth'} exists: skipped")

    print("[3/5] export the teacher's LUT", flush=True)
    from reid2.modeling.kd.lut import export_lut

    lut_path = teacher_dir / "lut.npy"
    table = export_lut(str(teacher_dir / "model_final.pth"), str(lut_path))
    print(f"  {lut_path}: {tuple(table.table.shape)} from key {table.key}")

    print("[4/5] KD_reid student (configs/kd_oim.yaml, CPU sizes)", flush=True)
    lut_arg = ["MODEL.KD.REID.LUT_SOURCE", str(lut_path)]
    if not (student_dir / "model_final.pth").is_file():
        run_train_net(["--config-file", STUDENT_CFG, "--resume", "OUTPUT_DIR", str(student_dir),
                       *lut_arg, *student_extra], "train_log.txt", student_dir)
    else:
        print(f"  {student_dir / 'model_final.pth'} exists: skipped")

    print("[5/5] evaluation", flush=True)
    rows = [("untrained student", evaluate(STUDENT_CFG, "random", out / "untrained", lut_arg)),
            ("OIM teacher", evaluate(TEACHER_CFG, teacher_dir / "model_final.pth", teacher_dir)),
            ("KD_reid student (λ_oim 0.1)",
             evaluate(STUDENT_CFG, student_dir / "model_final.pth", student_dir, lut_arg))]
    from tabulate import tabulate

    table_rows = []
    for name, res in rows:
        res = res or {}
        vals = []
        for key, _ in COLUMNS:
            match = [v for k, v in res.items() if k.endswith(key)]
            vals.append(f"{match[0]:.2f}" if match else "-")
        table_rows.append([name, *vals])
    print("\nSynthetic CUHK-SYSU-format test set (gallery 50), percentages:")
    print(tabulate(table_rows, headers=["model", *[c for _, c in COLUMNS]], tablefmt="pipe"))
    print(f"\nRun folder: {out}  (re-evaluate with tools/train_net.py --eval-only, see --help)")
    print(f"Main job took {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
