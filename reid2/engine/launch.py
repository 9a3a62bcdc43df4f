"""Multi-process launch and DDP wrapping that work on CPU (gloo) as well as on GPUs (NCCL).

Detectron2 v0.6's ``launch`` asserts CUDA and hard-codes NCCL, and its ``create_ddp_model``
always passes ``device_ids``, which PyTorch rejects for CPU modules. These replacements keep
Detectron2's behaviour on GPUs and add the CPU path: ``--num-gpus N`` on a machine without
CUDA starts N CPU processes that communicate through gloo.
"""
import logging
import socket
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

__all__ = ["launch", "create_ddp_model", "find_free_port"]

DEFAULT_TIMEOUT = timedelta(minutes=30)


def find_free_port() -> int:
    """A free TCP port on localhost (for a single-machine ``dist_url``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(main_func, num_gpus_per_machine, num_machines=1, machine_rank=0, dist_url=None,
           args=(), timeout=DEFAULT_TIMEOUT):
    """Run ``main_func(*args)`` in ``num_machines × num_gpus_per_machine`` processes.

    Without CUDA each "GPU" is a CPU process and the backend is gloo; with CUDA it is NCCL and
    process ``i`` uses device ``i``, as in Detectron2.
    """
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        main_func(*args)
        return
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError("dist_url='auto' only works on one machine; pass tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logging.getLogger(__name__).warning("file:// init across machines needs a shared file system")
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
        logging.getLogger(__name__).error("Process group URL: %s", dist_url)
        raise
    # Detectron2's comm.get_local_rank() needs the group of ranks on this machine.
    if comm._LOCAL_PROCESS_GROUP is None:
        for i in range(world_size // num_per_machine):
            ranks_on_i = list(range(i * num_per_machine, (i + 1) * num_per_machine))
            group = dist.new_group(ranks_on_i)
            if i == machine_rank:
                comm._LOCAL_PROCESS_GROUP = group
    if has_gpu:
        torch.cuda.set_device(local_rank)
    comm.synchronize()
    main_func(*args)


def create_ddp_model(model, *, fp16_compression=False, **kwargs):
    """Wrap ``model`` in DDP when running distributed; ``device_ids`` only for CUDA modules."""
    if comm.get_world_size() == 1:
        return model
    is_cuda = next(model.parameters()).is_cuda
    if is_cuda:
        kwargs.setdefault("device_ids", [comm.get_local_rank()])
    else:
        kwargs.pop("device_ids", None)
        kwargs.pop("output_device", None)
    ddp = DistributedDataParallel(model, **kwargs)
    if fp16_compression and is_cuda:
        from torch.distributed.algorithms.ddp_comm_hooks import default as comm_hooks

        ddp.register_comm_hook(state=None, hook=comm_hooks.fp16_compress_hook)
    return ddp
