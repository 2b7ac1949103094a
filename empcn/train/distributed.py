"""Data-parallel training through ``torchrun``: process group from environment variables, DDP wrapping.

``torchrun --nproc_per_node=K -m empcn train …`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them (a plain ``empcn train`` has
none and runs as a world of one). Backend: NCCL on CUDA, gloo on CPU. Only rank 0 writes files and
prints; every rank computes the same number of batches per epoch (see :mod:`empcn.train.dataset`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from empcn.errors import EmpcnError


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the run: rank among ``world_size``, its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


class DeviceUnavailable(EmpcnError, RuntimeError):
    """The device a run asked for is not on this machine; one-line message."""


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is a one-line error."""
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable("--device cuda: no CUDA device is available (use --device cpu or auto)")
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    if choice == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {choice!r} (auto, cpu or cuda)")


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment variables (0, 1, 0 without them)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def init_distributed(device_choice: str = "auto") -> DistEnv:
    """Join the process group when launched by torchrun (idempotent); a world of one otherwise."""
    rank, world, local = env_world()
    device = resolve_device(device_choice, local)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=device)


def shutdown(env: DistEnv) -> None:
    """Leave the process group (after a last barrier so no rank exits while others still talk)."""
    if env.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap_model(model: nn.Module, env: DistEnv) -> nn.Module:
    """``DistributedDataParallel(model)`` in a multi-process run; the model itself otherwise.

    DDP broadcasts rank 0's parameters and buffers at construction, so all ranks start equal.
    """
    if not env.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (what is saved and evaluated)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def all_reduce_sum(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum of ``values`` over all ranks (in place; a no-op in a world of one)."""
    if env.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_reduce_max(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Element-wise maximum over all ranks (in place)."""
    if env.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def broadcast_object(obj: Any, env: DistEnv) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
