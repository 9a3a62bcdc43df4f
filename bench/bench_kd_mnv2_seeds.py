"""KD_reid on the MobileNetV2 C4 model over several training seeds: the main job's comparison with its spread.

Runs ``tools/quickstart.py --seeds ...`` (teacher ``configs/synthetic/oim_mnv2.yaml`` → its LUT → KD_reid student
``configs/synthetic/kd_oim_mnv2.yaml``, and the control: plain OIM at the student's λ_oim without the teacher's
LUT, per seed) into its own run folder and prints its tables: per seed, and teacher / student / control / paired
differences as mean ± sample std. The data set is the same for every seed
(synthetic preset "default", seed 0); the seed changes the weight init of the new layers, the sampling order and
the RoI sampling. A rerun skips the trainings whose ``model_final.pth`` exists.

    python -m bench.bench_kd_mnv2_seeds [--seeds 0 1 2] [--output output/bench_kd_mnv2_seeds]
"""
import argparse
import subprocess
import sys

from bench.common import REPO


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: %(default)s)")
    parser.add_argument("--output", default="output/bench_kd_mnv2_seeds", help="run folder (default: %(default)s)")
    args, rest = parser.parse_known_args()
    cmd = [sys.executable, str(REPO / "tools" / "quickstart.py"), "--output", args.output,
           "--seeds", *map(str, args.seeds), "--control", *rest]
    raise SystemExit(subprocess.call(cmd, cwd=REPO))


if __name__ == "__main__":
    main()
