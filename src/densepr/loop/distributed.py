"""torch.distributed plumbing for training: set-up from torchrun's environment, gather with gradient."""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist


def init_from_env() -> tuple[int, int]:
    """Join the process group torchrun describes (gloo on CPU, NCCL on GPU); ``(rank, world_size)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return rank(), world_size()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def gather_with_grad(local: torch.Tensor) -> torch.Tensor:
    """Concatenate every process's ``local`` rows in rank order; gradient flows through this process's part."""
    if world_size() == 1:
        return local
    parts = [torch.empty_like(local) for _ in range(world_size())]
    dist.all_gather(parts, local.detach().contiguous())
    parts[rank()] = local
    return torch.cat(parts)


def reduce_gradients(params: Iterable[torch.nn.Parameter], mean: bool = False) -> None:
    """Add up gradients across processes (each holds the gradient through its own slice of a global loss),
    or average them (each process's loss is a mean over its own examples)."""
    world = world_size()
    if world == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            if mean:
                p.grad /= world


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
