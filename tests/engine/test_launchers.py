"""Being started by torchrun or SLURM's srun: node lists, environment detection, argument checks, and
end-to-end runs on this machine that must give the weights of reid2's own ``--num-gpus 2`` spawn."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from reid2.engine.launch import (
    LauncherEnv,
    check_launch_args,
    detect_launcher,
    expand_slurm_nodelist,
    find_free_port,
    launch,
    local_groups,
    slurm_default_port,
)

REPO = Path(__file__).resolve().parents[2]
LAUNCH_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR",
               "MASTER_PORT")

TORCHRUN_ENV = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2",
                "GROUP_RANK": "1", "MASTER_ADDR": "node01", "MASTER_PORT": "29400"}
SRUN_ENV = {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS": "8", "SLURM_NODEID": "2",
            "SLURM_TASKS_PER_NODE": "2(x4)", "SLURM_STEP_ID": "0", "SLURM_JOB_ID": "123456",
            "SLURM_JOB_NODELIST": "gpu[07-09,12]", "SLURM_GPUS_ON_NODE": "2"}


# --- SLURM node lists -------------------------------------------------------------------------------

@pytest.mark.parametrize("nodelist, hosts", [
    ("node01", ["node01"]),
    ("node[01-04,07]", ["node01", "node02", "node03", "node04", "node07"]),
    ("gpu-a100-[008-011]", ["gpu-a100-008", "gpu-a100-009", "gpu-a100-010", "gpu-a100-011"]),
    ("a[9-10],b3,c[2]", ["a9", "a10", "b3", "c2"]),  # padding only when written: 9 → 10 grows
    ("n[1-2]-ib", ["n1-ib", "n2-ib"]),
    ("rack[1-2]-n[1,3]", ["rack1-n1", "rack1-n3", "rack2-n1", "rack2-n3"]),
])
def test_expand_slurm_nodelist(nodelist, hosts):
    assert expand_slurm_nodelist(nodelist) == hosts


@pytest.mark.parametrize("bad, words", [
    ("node[01-04", "unbalanced"), ("node]1[", "unbalanced"), ("node[3-1]", "descending"),
    ("node[a-b]", "bad range"), ("node[1-]", "bad range"), ("a,,b", "empty host"),
])
def test_expand_slurm_nodelist_rejects_malformed(bad, words):
    with pytest.raises(ValueError, match=words) as err:
        expand_slurm_nodelist(bad)
    assert bad in str(err.value)


# --- detection from environment dictionaries ----------------------------------------------------------

def test_no_launcher_means_none():
    assert detect_launcher({"PATH": "/bin", "SLURM_JOB_ID": "7"}) is None


def test_torchrun_env():
    got = detect_launcher(TORCHRUN_ENV)
    assert got == LauncherEnv(name="torchrun", rank=3, local_rank=1, world_size=4, local_world_size=2,
                              node_rank=1, init_method="env://")
    assert "torchrun" in got.describe() and "rank 3/4" in got.describe()


@pytest.mark.parametrize("drop", ["LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"])
def test_torchrun_env_incomplete_is_named(drop):
    env = {k: v for k, v in TORCHRUN_ENV.items() if k != drop}
    with pytest.raises(ValueError, match=drop):
        detect_launcher(env)


@pytest.mark.parametrize("key, value, words", [
    ("RANK", "x", "RANK='x' is not an integer"), ("RANK", "4", "rank 4 outside 0..3"),
    ("LOCAL_RANK", "2", "local rank 2 outside 0..1"),
])
def test_torchrun_env_bad_values(key, value, words):
    with pytest.raises(ValueError, match=words):
        detect_launcher({**TORCHRUN_ENV, key: value})


def test_srun_env():
    got = detect_launcher(SRUN_ENV)
    # first host of gpu[07-09,12]; port 15000 + 123456 % 15000 = 15000 + 3456
    assert got == LauncherEnv(name="slurm", rank=5, local_rank=1, world_size=8, local_world_size=2,
                              node_rank=2, init_method="tcp://gpu07:18456")
    assert slurm_default_port(123456) == 18456


def test_srun_env_sources_of_address_port_and_tasks_per_node():
    env = {**SRUN_ENV, "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "23456"}
    assert detect_launcher(env).init_method == "tcp://10.0.0.5:23456"
    env = {**SRUN_ENV, "SLURM_STEP_NODELIST": "gpu[09,12]"}  # the step's nodes, not the job's
    assert detect_launcher(env).init_method == "tcp://gpu09:18456"
    env = {**SRUN_ENV, "SLURM_TASKS_PER_NODE": "3,2(x2),1", "SLURM_NODEID": "3", "SLURM_PROCID": "7",
           "SLURM_LOCALID": "0"}
    assert detect_launcher(env).local_world_size == 1
    env = {**SRUN_ENV, "SLURM_NTASKS_PER_NODE": "4", "SLURM_TASKS_PER_NODE": "2(x4)"}
    assert detect_launcher(env).local_world_size == 4
    env = {k: v for k, v in SRUN_ENV.items() if k != "SLURM_TASKS_PER_NODE"}
    assert detect_launcher(env).local_world_size == 2  # SLURM_GPUS_ON_NODE
    env = {k: v for k, v in SRUN_ENV.items() if k not in ("SLURM_JOB_ID",)}
    with pytest.raises(ValueError, match="MASTER_PORT"):
        detect_launcher(env)


@pytest.mark.parametrize("change", [
    {"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"},  # one task: reid2 spawns itself
    {"SLURM_STEP_ID": None},  # the batch script itself, not an srun step
    {"SLURM_STEP_ID": "4294967294"},  # SLURM's id of the batch step
])
def test_slurm_allocation_without_srun_tasks_is_not_a_launcher(change):
    env = {**SRUN_ENV, **change}
    env = {k: v for k, v in env.items() if v is not None}
    assert detect_launcher(env) is None


def test_torchrun_wins_over_slurm():
    """``srun torchrun ...``: the process is torchrun's worker; SLURM_PROCID is torchrun's."""
    assert detect_launcher({**SRUN_ENV, **TORCHRUN_ENV}).name == "torchrun"


def test_local_groups_follow_nodes_in_any_placement():
    assert local_groups([0, 0, 1, 1]) == [[0, 1], [2, 3]]
    assert local_groups([0, 1, 0, 1]) == [[0, 2], [1, 3]]  # srun --distribution=cyclic
    assert local_groups(["b", "a", "b"]) == [[0, 2], [1]]


# --- command line against the launcher ------------------------------------------------------------------

def test_num_gpus_contradicting_the_launcher_is_an_error():
    tr = detect_launcher(TORCHRUN_ENV)
    check_launch_args(tr, None)
    check_launch_args(tr, 2, 2, 1)  # agreeing values are fine
    with pytest.raises(ValueError, match=r"--num-gpus 4 disagrees with torchrun --nproc_per_node = 2"):
        check_launch_args(tr, 4)
    with pytest.raises(ValueError, match=r"--num-machines 3 disagrees"):
        check_launch_args(tr, None, 3)
    with pytest.raises(ValueError, match=r"--machine-rank 2 disagrees with torchrun's node rank 1"):
        check_launch_args(tr, None, 1, 2)
    with pytest.raises(ValueError, match=r"--num-gpus 1 disagrees with SLURM tasks per node"):
        check_launch_args(detect_launcher(SRUN_ENV), 1)


@pytest.fixture
def torchrun_env(monkeypatch):
    for key in LAUNCH_VARS:
        monkeypatch.delenv(key, raising=False)
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    env = {**TORCHRUN_ENV, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "GROUP_RANK": "0"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_launch_checks_num_gpus_before_joining(torchrun_env):
    calls = []
    with pytest.raises(ValueError, match="--num-gpus 3"):
        launch(calls.append, 3, args=(1,))
    assert calls == [] and not dist.is_initialized()


def test_launch_under_a_one_process_torchrun_runs_inline(torchrun_env):
    torchrun_env.setenv("WORLD_SIZE", "1")
    torchrun_env.setenv("LOCAL_WORLD_SIZE", "1")
    calls = []
    launch(calls.append, None, args=(5,))
    assert calls == [5] and not dist.is_initialized()


def test_train_net_defaults_and_auto_url_on_several_machines():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_net_tool", REPO / "tools" / "train_net.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    args = tool.build_parser().parse_args(["--config-file", "x.yaml"])
    assert args.dist_url == "auto" and args.num_gpus is None
    with pytest.raises(ValueError, match=r"--num-machines 2 needs --dist-url tcp://HOST:PORT"):
        launch(print, 2, num_machines=2, machine_rank=0, dist_url="auto")


# --- processes on this machine ------------------------------------------------------------------------

WORKER = textwrap.dedent('''
    import json, os, sys
    import torch, torch.distributed as dist
    from detectron2.utils import comm
    from reid2.engine.launch import launch

    def main(out):
        total = torch.tensor([float(comm.get_rank() + 1)])
        dist.all_reduce(total)
        info = dict(rank=comm.get_rank(), world=comm.get_world_size(), local_rank=comm.get_local_rank(),
                    local_size=comm.get_local_size(), backend=dist.get_backend(), total=total.item(),
                    pid=os.getpid())
        with open(os.path.join(out, f"rank{comm.get_rank()}.json"), "w") as f:
            json.dump(info, f)

    launch(main, None, args=(sys.argv[1],))
''')


def _clean_env(**extra):
    """This environment without any launcher's variables (pytest itself may run under SLURM)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC_")) and k not in LAUNCH_VARS}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **extra)
    return env


def _start_srun_like(cmd, tasks, node_of_task=None, **extra):
    """Start ``tasks`` processes as ``srun`` would on one (or, simulated, several) nodes."""
    node_of_task = node_of_task or [0] * tasks
    per_node = {n: node_of_task.count(n) for n in node_of_task}
    port = str(find_free_port())
    procs = []
    for rank, node in enumerate(node_of_task):
        env = _clean_env(
            SLURM_JOB_ID="4242", SLURM_STEP_ID="0", SLURM_NTASKS=str(tasks), SLURM_PROCID=str(rank),
            SLURM_LOCALID=str(node_of_task[:rank].count(node)), SLURM_NODEID=str(node),
            SLURM_TASKS_PER_NODE=",".join(str(per_node[n]) for n in sorted(per_node)),
            SLURM_JOB_NODELIST="localhost", MASTER_PORT=port, **extra)
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    return procs, outs


def _rank_files(out, n):
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(n)]


@pytest.mark.dist
def test_torchrun_starts_the_ranks_and_reid2_joins(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                          "2", str(tmp_path / "worker.py"), str(tmp_path)], cwd=REPO, env=_clean_env(),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "launcher: torchrun, rank 0/2" in res.stderr
    for r, info in enumerate(_rank_files(tmp_path, 2)):
        assert info == {**info, "rank": r, "world": 2, "local_rank": r, "local_size": 2,
                        "backend": "gloo", "total": 3.0}


@pytest.mark.dist
@pytest.mark.slow
def test_srun_tasks_on_one_node_join_without_spawning(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    procs, outs = _start_srun_like([sys.executable, str(tmp_path / "worker.py"), str(tmp_path)], 2)
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "launcher: slurm, rank 0/2, local rank 0/2, node 0, rendezvous tcp://localhost:" in outs[0]
    for r, info in enumerate(_rank_files(tmp_path, 2)):
        assert info == {**info, "rank": r, "world": 2, "local_rank": r, "local_size": 2, "total": 3.0}
        assert info["pid"] == procs[r].pid  # main ran in the task srun started: nothing spawned


@pytest.mark.dist
def test_srun_tasks_on_two_nodes_get_one_local_group_each(tmp_path):
    (tmp_path / "worker.py").write_text(WORKER)
    procs, outs = _start_srun_like([sys.executable, str(tmp_path / "worker.py"), str(tmp_path)], 2,
                                   node_of_task=[0, 1])
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "rank 1/2, local rank 0/1, node 1" in outs[1]  # each node's local rank 0 says where it is
    for r, info in enumerate(_rank_files(tmp_path, 2)):
        assert info == {**info, "rank": r, "world": 2, "local_rank": 0, "local_size": 1, "total": 3.0}
        assert info["pid"] == procs[r].pid


# --- tools/train_net.py: same final weights however the 2 processes were started ---------------------

TRAIN = ["tools/train_net.py", "--config-file", "configs/synthetic/reid_tiny.yaml"]
OPTS = ["SEED", "0", "SOLVER.MAX_ITER", "4", "SOLVER.IMS_PER_BATCH", "16", "SOLVER.WARMUP_ITERS", "0",
        "SOLVER.CHECKPOINT_PERIOD", "1000", "DATALOADER.NUM_WORKERS", "0", "DATASETS.TEST", "()"]


def _tensors(obj, prefix=""):
    """Every tensor of a checkpoint, by its path in the nested dicts/lists."""
    if torch.is_tensor(obj):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else []
    out = {}
    for key, value in items:
        out.update(_tensors(value, f"{prefix}/{key}"))
    return out


def _assert_same_final_weights(run_a, run_b):
    a = torch.load(run_a / "model_final.pth", weights_only=False)
    b = torch.load(run_b / "model_final.pth", weights_only=False)
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys() and len([k for k in ta if k.startswith("/model/")]) > 10
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, different[:5]


@pytest.fixture(scope="module")
def spawned_pair(datasets_root, tmp_path_factory):
    """Two ``--num-gpus 2`` runs started at the same time (the default --dist-url must not collide)."""
    root = tmp_path_factory.mktemp("spawned")
    env = _clean_env(REID2_DATASETS=str(datasets_root))
    procs = [subprocess.Popen([sys.executable, *TRAIN, "--num-gpus", "2", *OPTS, "OUTPUT_DIR",
                               str(root / name)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for name in ("a", "b")]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    return root, [p.returncode for p in procs], outs


@pytest.mark.dist
@pytest.mark.slow
def test_two_spawned_runs_at_once_both_succeed(spawned_pair):
    root, codes, outs = spawned_pair
    assert codes == [0, 0], [o[-3000:] for o in outs]
    assert all("launcher: reid2 spawns 2 processes" in o for o in outs)
    _assert_same_final_weights(root / "a", root / "b")


@pytest.mark.dist
@pytest.mark.slow
def test_train_net_under_torchrun_equals_num_gpus_2(spawned_pair, datasets_root, tmp_path):
    root, codes, outs = spawned_pair
    assert codes[0] == 0, outs[0][-3000:]
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                          "2", *TRAIN, *OPTS, "OUTPUT_DIR", str(tmp_path)], cwd=REPO,
                         env=_clean_env(REID2_DATASETS=str(datasets_root)), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "launcher: torchrun, rank 0/2" in res.stderr
    assert (tmp_path / "log.txt.rank1").exists()  # rank 1 of one job, not a second 1-process job
    _assert_same_final_weights(root / "a", tmp_path)


@pytest.mark.dist
@pytest.mark.slow
def test_train_net_under_srun_equals_num_gpus_2(spawned_pair, datasets_root, tmp_path):
    root, codes, outs = spawned_pair
    assert codes[0] == 0, outs[0][-3000:]
    procs, outs = _start_srun_like([sys.executable, *TRAIN, *OPTS, "OUTPUT_DIR", str(tmp_path)], 2,
                                   REID2_DATASETS=str(datasets_root))
    assert [p.returncode for p in procs] == [0, 0], [o[-3000:] for o in outs]
    assert "launcher: slurm, rank 0/2" in outs[0]
    _assert_same_final_weights(root / "a", tmp_path)


@pytest.mark.dist
@pytest.mark.slow
def test_train_net_num_gpus_against_torchrun_is_a_clear_error(datasets_root, tmp_path):
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                          "1", *TRAIN, "--num-gpus", "2", *OPTS, "OUTPUT_DIR", str(tmp_path)], cwd=REPO,
                         env=_clean_env(REID2_DATASETS=str(datasets_root)), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode != 0
    assert "--num-gpus 2 disagrees with torchrun --nproc_per_node = 1" in res.stderr
    assert not (tmp_path / "model_final.pth").exists()
