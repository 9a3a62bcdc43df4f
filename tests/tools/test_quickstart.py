"""The main job (tools/quickstart.py) end to end on the tiny synthetic data, two seeds of 2 iterations each,
with the control arm."""
import re

import pytest

from tests.helpers import run_tool


@pytest.mark.slow
def test_quickstart_trains_teacher_and_student_per_seed_and_summarises(datasets_root, tmp_path):
    from reid2.modeling.backbones import shipped_mobilenetv2_weights

    try:
        shipped_mobilenetv2_weights()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    out = tmp_path / "qs"
    args = ["tools/quickstart.py", "--preset", "tiny", "--seeds", "3", "4", "--teacher-iters", "2",
            "--student-iters", "2", "--control", "--output", str(out)]
    res = run_tool(args, env_extra={"REID2_DATASETS": str(datasets_root)}, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for seed in (3, 4):
        assert (out / f"seed{seed}" / "teacher" / "lut.npy").is_file()
        assert (out / f"seed{seed}" / "student" / "model_final.pth").is_file()
        assert "LOSS_WEIGHT: 0.03" in (out / f"seed{seed}" / "control" / "config.yaml").read_text()
        config = (out / f"seed{seed}" / "student" / "config.yaml").read_text()
        assert f"SEED: {seed}" in config and str(out / f"seed{seed}" / "teacher" / "lut.npy") in config

    def row(name):
        line = next(line for line in res.stdout.splitlines() if line.startswith(f"| {name}"))
        return [c.strip() for c in line.strip("|").split("|")[1:]]

    teacher = {s: [float(v) for v in row(f"seed {s} OIM teacher")] for s in (3, 4)}
    student = {s: [float(v) for v in row(f"seed {s} KD_reid student")] for s in (3, 4)}
    control = {s: [float(v) for v in row(f"seed {s} OIM control")] for s in (3, 4)}
    assert "Mean ± sample std over 2 seeds (3, 4)" in res.stdout
    for name, per_seed in (("OIM teacher", teacher), ("KD_reid student", student), ("OIM control", control)):
        for i, cell in enumerate(row(name)):
            mean, std = map(float, re.fullmatch(r"(\S+) ± (\S+)", cell).groups())
            a, b = per_seed[3][i], per_seed[4][i]
            assert mean == pytest.approx((a + b) / 2, abs=0.011)
            assert std == pytest.approx(abs(a - b) / 2 ** 0.5, abs=0.015)  # sample std of two values
    for i, cell in enumerate(row("student − teacher")):
        mean = float(cell.split(" ± ")[0])
        assert mean == pytest.approx(sum(student[s][i] - teacher[s][i] for s in (3, 4)) / 2, abs=0.011)
    for i, cell in enumerate(row("student − control")):
        mean = float(cell.split(" ± ")[0])
        assert mean == pytest.approx(sum(student[s][i] - control[s][i] for s in (3, 4)) / 2, abs=0.011)

    rerun = run_tool(args, env_extra={"REID2_DATASETS": str(datasets_root)}, timeout=600)
    assert rerun.returncode == 0 and rerun.stdout.count("exists: training skipped") == 6
    assert row("OIM teacher") == [c.strip() for c in next(
        line for line in rerun.stdout.splitlines() if line.startswith("| OIM teacher")).strip("|").split("|")[1:]]
