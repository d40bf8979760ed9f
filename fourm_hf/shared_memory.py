"""The sum all-reduce of ranks forked on one machine, through shared memory instead of gloo's loopback sockets.

[`run_forked_ranks`](distributed.py) builds a [`SharedMemorySum`] before it forks its ranks, and every rank finds it
with [`forked_sum`]. DDP's gradient hook there ([`collate_during_all_reduce`](distributed.py)) and `MuonAdamW`'s split
across ranks ([`all_reduce_sum_`]) then add the ranks' tensors in shared memory: a copy in, a barrier and a sum, a
fraction of a millisecond for the demo 4M's 0.68M gradients where gloo took 1.5-3 ms of both cores' time. The sum is
the one gloo computes: each rank adds the ranks' tensors in rank order, so two ranks get gloo's values to the bit
(adding two floats does not depend on their order), and every rank gets the same values for any number of ranks.
"""

from __future__ import annotations

import mmap
import multiprocessing
from collections.abc import Callable

import torch

DEFAULT_CAPACITY_BYTES = 16 << 20  # per rank and buffer: larger tensors go through in chunks of this size


class SharedMemorySum:
    """A sum all-reduce between the `world_size` processes forked after it was built (each one sets its `rank`).

    Two buffers of one slot per rank, used in turn: a rank writes its tensor into its slot of the current buffer,
    waits at a barrier for every rank to have written, and adds the slots in rank order. The next call writes the
    other buffer, and the one after that can only reuse this one once every rank has passed the next call's barrier,
    so after each rank finished reading it: one barrier per call (per chunk). Only a memory map (anonymous, shared)
    and a `multiprocessing` barrier are shared, both inherited through the fork.
    """

    def __init__(self, world_size: int, capacity_bytes: int = DEFAULT_CAPACITY_BYTES):
        for name, value in (("world_size", world_size), ("capacity_bytes", capacity_bytes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SharedMemorySum {name} must be a positive int, got {value!r}.")
        self.world_size = world_size
        self.capacity_bytes = capacity_bytes - capacity_bytes % 8  # whole elements of every dtype up to 8 bytes
        self.rank: int | None = None
        self._barrier = multiprocessing.get_context("fork").Barrier(world_size)
        self._memory = mmap.mmap(-1, 2 * world_size * self.capacity_bytes)  # pages are taken when first written
        self._calls = 0

    def all_reduce_(self, tensor: torch.Tensor, while_waiting: Callable[[], object] | None = None) -> torch.Tensor:
        """Replace a contiguous CPU `tensor` by its sum over the ranks, in place; returns it. `while_waiting` runs once,
        after this rank's share is written and before it waits for the other ranks."""
        if self.rank is None:
            raise RuntimeError("SharedMemorySum is used by the processes forked after it, each with its rank set.")
        if tensor.device.type != "cpu" or not tensor.is_contiguous() or tensor.is_complex() or tensor.is_sparse:
            raise ValueError(
                "SharedMemorySum sums contiguous real CPU tensors, got a "
                f"{'non-contiguous ' if not tensor.is_contiguous() else ''}{tensor.dtype} tensor on {tensor.device}."
            )
        flat = tensor.view(-1)
        step = self.capacity_bytes // tensor.element_size()
        for start in range(0, max(flat.numel(), 1), step):
            chunk = flat[start : start + step]
            slots = self._slots(tensor.dtype)[:, : chunk.numel()]
            slots[self.rank].copy_(chunk)
            if while_waiting is not None:
                while_waiting()
                while_waiting = None
            self._barrier.wait()
            chunk.copy_(slots[0])
            for other in slots[1:]:
                chunk.add_(other)
        return tensor

    def _slots(self, dtype: torch.dtype) -> torch.Tensor:
        """This call's buffer as (world_size, elements) of `dtype`; the next call gets the other one."""
        buffer, self._calls = self._calls % 2, self._calls + 1
        size = self.world_size * self.capacity_bytes
        memory = memoryview(self._memory)[buffer * size : (buffer + 1) * size]
        return torch.frombuffer(memory, dtype=dtype).view(self.world_size, -1)


_FORKED: SharedMemorySum | None = None


def set_forked_sum(reducer: SharedMemorySum | None, rank: int | None = None) -> None:
    """Make `reducer` this process's [`forked_sum`], as `rank` (what each rank of `run_forked_ranks` does first)."""
    global _FORKED
    _FORKED = reducer
    if reducer is not None:
        reducer.rank = rank


def forked_sum() -> SharedMemorySum | None:
    """The [`SharedMemorySum`] of this process's ranks when it is a rank of `run_forked_ranks` and the default process
    group is the one that set it up (same rank and world size); else None."""
    distributed = torch.distributed
    if _FORKED is None or not (distributed.is_available() and distributed.is_initialized()):
        return None
    if distributed.get_rank() != _FORKED.rank or distributed.get_world_size() != _FORKED.world_size:
        return None
    return _FORKED


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """`torch.distributed.all_reduce(tensor)` (a sum over the default group, in place), through shared memory between
    ranks forked by `run_forked_ranks`."""
    reducer = forked_sum()
    if reducer is not None and tensor.device.type == "cpu" and tensor.is_contiguous():
        return reducer.all_reduce_(tensor)
    torch.distributed.all_reduce(tensor)
    return tensor
