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
import threading
from collections.abc import Callable

import numpy as np
import torch

from .checks import check_int

DEFAULT_CAPACITY_BYTES = 16 << 20  # per rank and buffer: larger tensors go through in chunks of this size
_DTYPES = (
    torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16, torch.int8,
    torch.uint8, torch.bool,
)  # fmt: skip
_HEADER = 3  # int64 per rank and buffer: the call's element count and dtype (checked against the other ranks'), the round


class SharedMemorySum:
    """A sum all-reduce between the `world_size` processes forked after it was built (each one sets its `rank`).

    Two buffers of one slot per rank, used in turn: a rank writes its tensor into its slot of the current buffer,
    waits at a barrier for every rank to have written, and adds the slots in rank order. The next call writes the
    other buffer, and the one after that can only reuse this one once every rank has passed the next call's barrier,
    so after each rank finished reading it: one barrier per call (per chunk). Only a memory map (anonymous, shared)
    and a `multiprocessing` barrier are shared, both inherited through the fork. As with any collective, every rank
    makes the same sums in the same order: tensors of different sizes or dtypes raise a `ValueError` on every rank,
    and a rank left waiting for one that will not come (`abort`, which `run_forked_ranks` calls once a rank has
    returned) a `RuntimeError`.
    """

    def __init__(self, world_size: int, capacity_bytes: int | None = None):
        capacity_bytes = DEFAULT_CAPACITY_BYTES if capacity_bytes is None else capacity_bytes
        self.world_size = check_int(world_size, "SharedMemorySum world_size", minimum=1)
        check_int(capacity_bytes, "SharedMemorySum capacity_bytes", minimum=8)
        self.capacity_bytes = capacity_bytes - capacity_bytes % 8  # whole elements of every dtype up to 8 bytes
        self.rank: int | None = None
        self._barrier = multiprocessing.get_context("fork").Barrier(world_size)
        header_bytes = 2 * world_size * _HEADER * 8
        self._memory = mmap.mmap(-1, header_bytes + 2 * world_size * self.capacity_bytes)  # pages taken when written
        headers = np.frombuffer(memoryview(self._memory)[:header_bytes], dtype=np.int64)
        self._headers = headers.reshape(2, world_size, _HEADER)  # numpy: ~1 us an operation on a few numbers
        self._data = memoryview(self._memory)[header_bytes:]
        self._calls = 0

    def abort(self) -> None:
        """Release every rank waiting for a sum, and fail every later one, with a `RuntimeError`."""
        self._barrier.abort()

    def all_reduce_(self, tensor: torch.Tensor, while_waiting: Callable[[], object] | None = None) -> torch.Tensor:
        """Replace a contiguous CPU `tensor` by its sum over the ranks, in place; returns it. `while_waiting` runs once,
        after this rank's share is written and before it waits for the other ranks."""
        if self.rank is None:
            raise RuntimeError("SharedMemorySum is used by the processes forked after it, each with its rank set.")
        if tensor.is_sparse or tensor.device.type != "cpu" or tensor.dtype not in _DTYPES:
            layout = "sparse " if tensor.is_sparse else ""
            raise ValueError(
                f"SharedMemorySum sums dense real CPU tensors, got a {layout}{tensor.dtype} tensor on {tensor.device}."
            )
        if not tensor.is_contiguous():
            raise ValueError(f"SharedMemorySum sums contiguous tensors, got a non-contiguous {tuple(tensor.shape)} one.")
        flat = tensor.view(-1)
        step = self.capacity_bytes // tensor.element_size()
        for start in range(0, max(flat.numel(), 1), step):
            chunk = flat[start : start + step]
            buffer, slots = self._slots(tensor.dtype)
            slots = slots[:, : chunk.numel()]
            slots[self.rank].copy_(chunk)
            headers = self._headers[buffer]
            headers[self.rank] = flat.numel(), _DTYPES.index(tensor.dtype), self._calls
            if while_waiting is not None:
                while_waiting()
                while_waiting = None
            self._wait(headers)
            if not (headers[:, :2] == headers[self.rank, :2]).all():
                sizes = [f"{n} x {_DTYPES[d]}" for n, d, _ in headers.tolist()]
                raise ValueError(f"SharedMemorySum: the ranks sum tensors of different sizes or dtypes: {sizes}.")
            chunk.copy_(slots[0])
            for other in slots[1:]:
                chunk.add_(other)
        return tensor

    def _wait(self, headers: np.ndarray) -> None:
        """Wait until every rank has written its share of this round. An aborted barrier also releases a rank that
        the last one to arrive had released but that had not woken yet: every rank's header then holds this round."""
        try:
            self._barrier.wait()
        except threading.BrokenBarrierError:
            if not (headers[:, 2] == self._calls).all():
                raise RuntimeError(
                    f"SharedMemorySum: rank {self.rank} waits for a sum that another rank will not make (it returned "
                    "or failed); every rank must make the same sums in the same order."
                ) from None

    def _slots(self, dtype: torch.dtype) -> tuple[int, torch.Tensor]:
        """This call's buffer index and the buffer as (world_size, elements) of `dtype`; the next call gets the other
        one."""
        buffer, self._calls = self._calls % 2, self._calls + 1
        size = self.world_size * self.capacity_bytes
        memory = self._data[buffer * size : (buffer + 1) * size]
        return buffer, torch.frombuffer(memory, dtype=dtype).view(self.world_size, -1)


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
    if reducer is None or tensor.device.type != "cpu":
        torch.distributed.all_reduce(tensor)
    elif tensor.is_contiguous():
        reducer.all_reduce_(tensor)
    else:
        tensor.copy_(reducer.all_reduce_(tensor.contiguous()))
    return tensor
