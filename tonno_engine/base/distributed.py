"""Several processes under ``torchrun``: who this process is, and the few collectives the engine uses.

Everything goes through ``torch.distributed`` (NCCL on CUDA, gloo on CPU); nothing here is a
transport of our own. Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) every function
behaves as for a world of one process, so single-process code needs no branch.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's ``rank`` among ``size`` processes, and its ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_by_torchrun() -> bool:
    """True when the environment ``torchrun`` sets up for a world of more than one process is present."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch_rank() -> int:
    """This process's rank from torchrun's environment (0 outside torchrun), before any process group exists."""
    return int(os.environ.get("RANK", "0"))


def init_world(device: torch.device) -> World:
    """Join the process group ``torchrun`` describes (NCCL for CUDA, else gloo), once; on CUDA each
    process takes the GPU of its ``LOCAL_RANK``. Returns :class:`World()` outside ``torchrun``."""
    if not launched_by_torchrun():
        return World()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
        # A process that exits with its group alive can abort in gloo's worker threads while the
        # interpreter is torn down ("terminate called without an active exception", pytorch#190489):
        # leave the group we joined while Python is still whole, however the command ends.
        atexit.register(leave_world)
    return current_world()


def leave_world() -> None:
    """Destroy the process group, if one is joined (a no-op otherwise, so it is safe to call twice)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current_world() -> World:
    """The process group already joined, or a world of one."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def local_device(device: torch.device, world: World) -> torch.device:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun (one GPU per process); others stay."""
    if world.distributed and device.type == "cuda" and device.index is None:
        return torch.device("cuda", world.local_rank)
    return device


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def gather_objects(obj, world: World) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not world.distributed:
        return [obj]
    out: list = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, world: World, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class RankFailed(RuntimeError):
    """Another rank failed in a step all ranks take together, so this one stops that step too."""


def agree_on_failure(error: Exception | None, world: World) -> None:
    """Before ranks pair up in a collective, make a failure on one rank a failure on all.

    Raises on every rank when any rank passes an ``error``: that rank its own error; the others a
    ``torch.OutOfMemoryError`` when every failure was one (so all ranks retry with smaller batches in
    step), else :class:`RankFailed` naming the first failed rank and its message. Otherwise returns.
    Without it a rank that skips a collective pairs the next one with the wrong data.
    """
    if not world.distributed:
        if error is not None:
            raise error
        return
    mine = None if error is None else (type(error).__name__, str(error), isinstance(error, torch.OutOfMemoryError))
    failed = [(rank, e) for rank, e in enumerate(gather_objects(mine, world)) if e is not None]
    if error is not None:
        raise error
    if not failed:
        return
    if all(out_of_memory for _, (_, _, out_of_memory) in failed):
        raise torch.OutOfMemoryError(f"rank {failed[0][0]} ran out of device memory")
    rank, (name, message, _) = failed[0]
    raise RankFailed(f"rank {rank} failed: {name}: {message}")


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one (e.g. a signal reached one of them)."""
    if not world.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def reduce_in_slabs(tensor: torch.Tensor, world: World, *, dst: int = 0, slab_bytes: int = 64 * 2**20) -> int:
    """Sum the contiguous ``tensor`` over all ranks into rank ``dst``'s copy, in place, in slabs of at most
    ``slab_bytes`` (consecutive elements), so that no second full-size buffer is ever needed.

    Returns the bytes this rank sent (its tensor's size; 0 in a world of one). Other ranks' copies
    are left in an unspecified state, as ``torch.distributed.reduce`` leaves them.
    """
    if not world.distributed:
        return 0
    flat = tensor.view(-1)  # shares memory: reducing its slabs reduces the tensor
    step = max(1, slab_bytes // tensor.element_size())
    for start in range(0, flat.numel(), step):
        dist.reduce(flat[start:start + step], dst=dst, op=dist.ReduceOp.SUM)
    return tensor.numel() * tensor.element_size()
