"""Multi-process launch and DDP wrapping that work on CPU (gloo) as well as on GPUs (NCCL).

Detectron2 v0.6's ``launch`` asserts CUDA and hard-codes NCCL, and its ``create_ddp_model``
always passes ``device_ids``, which PyTorch rejects for CPU modules. These replacements keep
Detectron2's behaviour on GPUs and add the CPU path: ``--num-gpus N`` on a machine without
CUDA starts N CPU processes that communicate through gloo.

``launch`` also runs under the launchers clusters use: when ``torchrun`` (env:// variables) or
SLURM's ``srun`` (``SLURM_PROCID``...) started this process as one rank of a job, reid2 spawns
nothing and joins that job's process group instead (:func:`detect_launcher`, :func:`init_from_env`).
"""
import logging
import os
import re
import socket
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Mapping, Optional

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

__all__ = ["launch", "create_ddp_model", "find_free_port", "LauncherEnv", "detect_launcher",
           "init_from_env", "expand_slurm_nodelist", "slurm_default_port"]

DEFAULT_TIMEOUT = timedelta(minutes=30)
logger = logging.getLogger(__name__)

TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
SLURM_PORT_BASE, SLURM_PORT_SPAN = 15000, 15000  # default MASTER_PORT: 15000 + SLURM_JOB_ID % 15000
# Step ids SLURM gives the batch script, the extern step and the interactive step: not an srun step.
_SLURM_SPECIAL_STEPS = range(0xFFFFFFF0, 0x100000000)


def find_free_port() -> int:
    """A free TCP port on localhost (for a single-machine ``dist_url``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class LauncherEnv:
    """Where an external launcher placed this process (read from its environment variables)."""

    name: str  # "torchrun" (any env:// launcher) or "slurm"
    rank: int
    local_rank: int
    world_size: int
    local_world_size: Optional[int]  # processes on this node, when the launcher says
    node_rank: Optional[int]  # which node; ranks with equal node_rank share a local group
    init_method: str  # "env://" or "tcp://HOST:PORT"

    def __post_init__(self):
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"{self.name} start: rank {self.rank} outside 0..{self.world_size - 1}")
        if self.local_rank < 0 or (self.local_world_size is not None
                                   and self.local_rank >= self.local_world_size):
            raise ValueError(f"{self.name} start: local rank {self.local_rank} outside "
                             f"0..{(self.local_world_size or 1) - 1}")

    def describe(self) -> str:
        local = f"/{self.local_world_size}" if self.local_world_size else ""
        return (f"launcher: {self.name}, rank {self.rank}/{self.world_size}, local rank "
                f"{self.local_rank}{local}, node {self.node_rank}, rendezvous {self.init_method}")


def _int_var(env: Mapping[str, str], name: str, launcher: str) -> int:
    try:
        return int(env[name])
    except KeyError:
        raise ValueError(f"{launcher} start: environment variable {name} is not set") from None
    except ValueError:
        raise ValueError(f"{launcher} start: {name}={env[name]!r} is not an integer") from None


def _opt_int(env: Mapping[str, str], name: str, launcher: str) -> Optional[int]:
    return _int_var(env, name, launcher) if env.get(name, "") != "" else None


def _split_top_level(text: str, sep: str = ","):
    """Split on ``sep`` outside ``[...]`` (``a[1,2],b`` → ``a[1,2]``, ``b``)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if depth < 0 or depth > 1:
            raise ValueError(f"SLURM node list {text!r}: unbalanced or nested brackets")
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"SLURM node list {text!r}: unbalanced brackets")
    parts.append(text[start:])
    return parts


def _expand_range(text: str, whole: str):
    """``01-03,07`` → ``01, 02, 03, 07`` (zero padding kept as written)."""
    out = []
    for item in text.split(","):
        lo, dash, hi = item.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ValueError(f"SLURM node list {whole!r}: bad range {item!r} (expected N or N-M)")
        if not dash:
            out.append(lo)
            continue
        if int(hi) < int(lo):
            raise ValueError(f"SLURM node list {whole!r}: descending range {item!r}")
        out.extend(str(n).zfill(len(lo)) for n in range(int(lo), int(hi) + 1))
    return out


def expand_slurm_nodelist(nodelist: str):
    """SLURM's compact host list → host names, in order (what ``scontrol show hostnames`` prints).

    ``node[01-04,07]`` → node01..node04, node07; ``a[1-2]-ib,b3`` → a1-ib, a2-ib, b3; several
    bracket groups in one name expand as a product (``r[1-2]n[1-2]`` → r1n1, r1n2, r2n1, r2n2).
    """
    hosts = []
    for part in _split_top_level(nodelist.strip()):
        if not part:
            raise ValueError(f"SLURM node list {nodelist!r}: empty host name")
        names = [""]
        for literal, bracket in re.findall(r"([^\[\]]*)(?:\[([^\]]*)\])?", part):
            suffixes = _expand_range(bracket, nodelist) if bracket else [""]
            names = [n + literal + s for n in names for s in suffixes]
        hosts.extend(names)
    return hosts


def _tasks_on_node(tasks_per_node: str, node_id: int) -> int:
    """``SLURM_TASKS_PER_NODE`` (``2(x3),1``) → the task count of node ``node_id``."""
    counts = []
    for item in tasks_per_node.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item.strip())
        if not m:
            raise ValueError(f"SLURM_TASKS_PER_NODE={tasks_per_node!r}: expected e.g. 2(x3),1")
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    if node_id >= len(counts):
        raise ValueError(f"SLURM_TASKS_PER_NODE={tasks_per_node!r} has no entry for SLURM_NODEID={node_id}")
    return counts[node_id]


def slurm_default_port(job_id: int) -> int:
    """MASTER_PORT when SLURM starts reid2 and none is exported: one per job, below the ephemeral range."""
    return SLURM_PORT_BASE + job_id % SLURM_PORT_SPAN


def _detect_torchrun(env) -> Optional[LauncherEnv]:
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    missing = [v for v in TORCHRUN_VARS if v not in env]
    if missing:
        raise ValueError(f"RANK and WORLD_SIZE are set (an env:// launcher such as torchrun) but "
                         f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not; "
                         f"a torchrun start sets all of {', '.join(TORCHRUN_VARS)}")
    _int_var(env, "MASTER_PORT", "torchrun")
    return LauncherEnv(
        name="torchrun", rank=_int_var(env, "RANK", "torchrun"),
        local_rank=_int_var(env, "LOCAL_RANK", "torchrun"),
        world_size=_int_var(env, "WORLD_SIZE", "torchrun"),
        local_world_size=_opt_int(env, "LOCAL_WORLD_SIZE", "torchrun"),
        node_rank=_opt_int(env, "GROUP_RANK", "torchrun"),
        # env:// (not tcp://): under torchrun the agent already serves the store at MASTER_PORT.
        init_method="env://",
    )


def _is_srun_step(env) -> bool:
    step = env.get("SLURM_STEP_ID", env.get("SLURM_STEPID", ""))
    return step.isdigit() and int(step) not in _SLURM_SPECIAL_STEPS


def _detect_slurm(env) -> Optional[LauncherEnv]:
    if "SLURM_PROCID" not in env or "SLURM_NTASKS" not in env:
        return None
    world_size = _int_var(env, "SLURM_NTASKS", "SLURM")
    if world_size <= 1:
        return None  # one task (sbatch/salloc shell): reid2 starts --num-gpus processes itself
    if not _is_srun_step(env):
        logger.info("SLURM_NTASKS=%d but no srun step (SLURM_STEP_ID): not started by srun, "
                    "reid2 starts its own processes", world_size)
        return None
    node_id = _opt_int(env, "SLURM_NODEID", "SLURM")
    local_world_size = _opt_int(env, "SLURM_NTASKS_PER_NODE", "SLURM")
    if local_world_size is None and env.get("SLURM_TASKS_PER_NODE") and node_id is not None:
        local_world_size = _tasks_on_node(env["SLURM_TASKS_PER_NODE"], node_id)
    if local_world_size is None:
        local_world_size = _opt_int(env, "SLURM_GPUS_ON_NODE", "SLURM")
    addr = env.get("MASTER_ADDR")
    if not addr:
        nodelist = next((env[k] for k in ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
                         if env.get(k)), None)
        if nodelist is None:
            raise ValueError("SLURM start: neither MASTER_ADDR nor SLURM_JOB_NODELIST is set; "
                             "export MASTER_ADDR=<host of rank 0>")
        addr = expand_slurm_nodelist(nodelist)[0]
    if env.get("MASTER_PORT"):
        port = _int_var(env, "MASTER_PORT", "SLURM")
    elif env.get("SLURM_JOB_ID"):
        port = slurm_default_port(_int_var(env, "SLURM_JOB_ID", "SLURM"))
    else:
        raise ValueError("SLURM start: neither MASTER_PORT nor SLURM_JOB_ID is set; export MASTER_PORT")
    return LauncherEnv(
        name="slurm", rank=_int_var(env, "SLURM_PROCID", "SLURM"),
        local_rank=_int_var(env, "SLURM_LOCALID", "SLURM"), world_size=world_size,
        local_world_size=local_world_size, node_rank=node_id, init_method=f"tcp://{addr}:{port}",
    )


def detect_launcher(env: Optional[Mapping[str, str]] = None) -> Optional[LauncherEnv]:
    """The launcher that started this process as one rank of a job, or None (reid2 spawns).

    torchrun's variables win over SLURM's (``srun torchrun ...`` is torchrun's job). A SLURM
    allocation counts only inside an ``srun`` step with more than one task.
    """
    env = os.environ if env is None else env
    return _detect_torchrun(env) or _detect_slurm(env)


def check_launch_args(launcher: LauncherEnv, num_gpus_per_machine=None, num_machines=1, machine_rank=0):
    """Command-line sizes that contradict the launcher's are an error, not silently ignored."""
    where = ("torchrun --nproc_per_node" if launcher.name == "torchrun"
             else "SLURM tasks per node (#SBATCH --ntasks-per-node)")
    if num_gpus_per_machine is not None:
        per_node = launcher.local_world_size
        if per_node is not None and num_gpus_per_machine != per_node:
            raise ValueError(f"--num-gpus {num_gpus_per_machine} disagrees with {where} = {per_node} "
                             f"(world size {launcher.world_size}); under {launcher.name} the launcher "
                             f"starts the processes: drop --num-gpus or make them equal")
        if per_node is None and num_gpus_per_machine * (num_machines or 1) != launcher.world_size:
            raise ValueError(f"--num-gpus {num_gpus_per_machine} × --num-machines {num_machines} disagrees "
                             f"with {launcher.name}'s world size {launcher.world_size}")
    if (num_machines or 1) > 1 and launcher.local_world_size:
        nodes = launcher.world_size // launcher.local_world_size
        if num_machines != nodes:
            raise ValueError(f"--num-machines {num_machines} disagrees with {launcher.name}'s "
                             f"{nodes} nodes; drop --num-machines")
    if machine_rank and launcher.node_rank is not None and machine_rank != launcher.node_rank:
        raise ValueError(f"--machine-rank {machine_rank} disagrees with {launcher.name}'s node rank "
                         f"{launcher.node_rank}; drop --machine-rank")


def local_groups(node_of_rank):
    """Ranks grouped by node, in order of first appearance: ``[0, 0, 1, 1]`` → ``[[0, 1], [2, 3]]``."""
    groups = {}
    for rank, node in enumerate(node_of_rank):
        groups.setdefault(node, []).append(rank)
    return list(groups.values())


def _cuda_device(local_rank: int) -> int:
    count = torch.cuda.device_count()
    if local_rank < count:
        return local_rank
    if count == 1:
        return 0  # the launcher gave each task its own GPU (e.g. srun --gpus-per-task=1)
    raise RuntimeError(f"local rank {local_rank} but this process sees {count} CUDA devices "
                       f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")


def _setup_local_group(world_size, num_per_machine, machine_rank):
    """Detectron2's ``comm._LOCAL_PROCESS_GROUP`` for a job whose ranks fill machines in order."""
    for i in range(world_size // num_per_machine):
        group = dist.new_group(list(range(i * num_per_machine, (i + 1) * num_per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group


def init_from_env(launcher: LauncherEnv, timeout=DEFAULT_TIMEOUT):
    """Join the launcher's process group (NCCL on CUDA, gloo on CPU) and set Detectron2's local group.

    Each rank's node comes from an all-gather, so SLURM's cyclic task placement works too; every
    rank creates every local group, in the same order, as ``dist.new_group`` requires.
    """
    if comm._LOCAL_PROCESS_GROUP is not None or dist.is_initialized():
        raise RuntimeError("init_from_env: a process group already exists in this process")
    has_gpu = torch.cuda.is_available()
    if has_gpu:
        torch.cuda.set_device(_cuda_device(launcher.local_rank))
    try:
        dist.init_process_group(backend="nccl" if has_gpu else "gloo", init_method=launcher.init_method,
                                world_size=launcher.world_size, rank=launcher.rank, timeout=timeout)
    except Exception:
        logger.error("Process group: %s", launcher.describe())
        raise
    node = launcher.node_rank if launcher.node_rank is not None else socket.gethostname()
    nodes = [None] * launcher.world_size
    dist.all_gather_object(nodes, node)
    for ranks in local_groups(nodes):
        group = dist.new_group(ranks)
        if launcher.rank in ranks:
            comm._LOCAL_PROCESS_GROUP = group
    if comm.get_local_rank() != launcher.local_rank:
        raise RuntimeError(f"{launcher.name}: local rank {launcher.local_rank} but rank {launcher.rank} is "
                           f"number {comm.get_local_rank()} among the ranks of its node {nodes}")
    comm.synchronize()


def _announce(text):
    """Say which launcher runs the job; before reid2's logger exists, on stderr."""
    if logger.hasHandlers():
        logger.info(text)
    else:
        print(f"[reid2.engine.launch] {text}", file=sys.stderr, flush=True)


def _run_under_launcher(launcher, main_func, args, timeout):
    if launcher.world_size <= 1:
        main_func(*args)
        return
    init_from_env(launcher, timeout)
    try:
        main_func(*args)
    finally:
        dist.destroy_process_group()
        comm._LOCAL_PROCESS_GROUP = None


def launch(main_func, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None,
           args=(), timeout=DEFAULT_TIMEOUT):
    """Run ``main_func(*args)`` in ``num_machines × num_gpus_per_machine`` processes.

    Started by torchrun or srun, this process is already one rank: it joins the launcher's
    process group and runs ``main_func`` itself (``num_gpus_per_machine=None``: take the
    launcher's count; a number that disagrees is an error). Otherwise reid2 spawns the
    processes: without CUDA each "GPU" is a CPU process and the backend is gloo; with CUDA it is
    NCCL and process ``i`` uses device ``i``, as in Detectron2. ``dist_url`` None or ``"auto"``
    is a free port on this machine; several machines need an explicit ``tcp://HOST:PORT``.
    """
    launcher = detect_launcher()
    if launcher is not None:
        check_launch_args(launcher, num_gpus_per_machine, num_machines, machine_rank)
        if launcher.local_rank == 0:
            _announce(launcher.describe())
        if dist_url not in (None, "auto"):
            logger.warning("--dist-url %s ignored: %s sets the rendezvous", dist_url, launcher.name)
        _run_under_launcher(launcher, main_func, args, timeout)
        return
    num_gpus_per_machine = 1 if num_gpus_per_machine is None else num_gpus_per_machine
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        main_func(*args)
        return
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError(f"--num-machines {num_machines} needs --dist-url tcp://HOST:PORT, HOST being "
                             f"machine 0 reachable from every machine and PORT free there, the same URL "
                             f"on all machines; 'auto' (a free port) works on one machine only")
        dist_url = f"tcp://127.0.0.1:{find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("file:// init across machines needs a shared file system")
    _announce(f"launcher: reid2 spawns {num_gpus_per_machine} processes on machine {machine_rank} "
              f"of {num_machines}, rendezvous {dist_url}")
    mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
        start_method="spawn",
    )


def _distributed_worker(local_rank, main_func, world_size, num_per_machine, machine_rank,
                        dist_url, args, timeout=DEFAULT_TIMEOUT):
    has_gpu = torch.cuda.is_available()
    if has_gpu and num_per_machine > torch.cuda.device_count():
        raise RuntimeError(
            f"--num-gpus {num_per_machine} but only {torch.cuda.device_count()} CUDA devices"
        )
    global_rank = machine_rank * num_per_machine + local_rank
    try:
        dist.init_process_group(
            backend="NCCL" if has_gpu else "GLOO",
            init_method=dist_url,
            world_size=world_size,
            rank=global_rank,
            timeout=timeout,
        )
    except Exception:
        logger.error("Process group URL: %s", dist_url)
        raise
    # Detectron2's comm.get_local_rank() needs the group of ranks on this machine.
    if comm._LOCAL_PROCESS_GROUP is None:
        _setup_local_group(world_size, num_per_machine, machine_rank)
    if has_gpu:
        torch.cuda.set_device(local_rank)
    comm.synchronize()
    main_func(*args)


def create_ddp_model(model, *, fp16_compression=False, **kwargs):
    """Wrap ``model`` in DDP when running distributed; ``device_ids`` only for CUDA modules.

    The device is the model's own (not ``comm.get_local_rank()``): under srun with one GPU per
    task, local rank 1 owns ``cuda:0``.
    """
    if comm.get_world_size() == 1:
        return model
    device = next(model.parameters()).device
    is_cuda = device.type == "cuda"
    if is_cuda:
        kwargs.setdefault("device_ids", [device.index if device.index is not None
                                         else torch.cuda.current_device()])
    else:
        kwargs.pop("device_ids", None)
        kwargs.pop("output_device", None)
    ddp = DistributedDataParallel(model, **kwargs)
    if fp16_compression and is_cuda:
        from torch.distributed.algorithms.ddp_comm_hooks import default as comm_hooks

        ddp.register_comm_hook(state=None, hook=comm_hooks.fp16_compress_hook)
    return ddp
