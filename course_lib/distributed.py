"""Several processes, one model: what the training loop needs from ``torch.distributed``.

Under ``torchrun`` every process gets RANK, WORLD_SIZE and LOCAL_RANK in its environment;
:func:`init_from_env` joins the process group (NCCL on CUDA, Gloo on the CPU) and returns this
process's device, ``cuda:LOCAL_RANK`` on a GPU. Without torchrun nothing is initialized and every
helper answers as for one process, so the same code runs on a laptop unchanged.
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0: the one process that writes checkpoints and prints."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def _env_int(name: str, default: str) -> int:
    value = os.environ.get(name, default)
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a whole number: torchrun sets it; unset it to train in one "
                         "process.") from None


def init_from_env(device: str | torch.device | None = None) -> torch.device:
    """Join the process group that torchrun describes in the environment (once), and return this process's
    device: ``cuda:LOCAL_RANK`` when CUDA is used, else the CPU. Without torchrun (no WORLD_SIZE, or 1)
    it initializes nothing and returns `device` (default: CUDA if available, else the CPU)."""
    requested = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    if _env_int("WORLD_SIZE", "1") <= 1:
        return requested
    missing = [v for v in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set: start the "
                           "processes with torchrun (torchrun --nproc_per_node N -m course_lib.programs.train_cli ...).")
    if requested.type == "cuda":
        local = _env_int("LOCAL_RANK", "0")
        if local >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local} but this machine has {torch.cuda.device_count()} GPU(s): "
                               "start at most one process per GPU (--nproc_per_node).")
        requested = torch.device("cuda", local)
        torch.cuda.set_device(requested)
    if not is_distributed():
        dist.init_process_group("nccl" if requested.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=30))
    return requested


def mean_over_processes(values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of `values` over all processes (itself for one process)."""
    if not is_distributed():
        return values
    total = values.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)   # Gloo has no AVG
    return total / world_size()


def shard(batch: int) -> slice:
    """This process's rows of a global batch of `batch` (the whole batch for one process)."""
    n = world_size()
    if batch % n:
        raise ValueError(f"the batch size {batch} must be a multiple of the number of processes ({n}), so that "
                         "every process gets the same share; change batch_size or --nproc_per_node.")
    per = batch // n
    return slice(rank() * per, (rank() + 1) * per)
