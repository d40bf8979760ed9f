"""`SharedMemorySum`: the ranks of `run_forked_ranks` sum tensors through shared memory, with gloo's values."""

import pytest
import torch

from fourm_hf import shared_memory
from fourm_hf.distributed import run_forked_ranks
from fourm_hf.shared_memory import SharedMemorySum, all_reduce_sum_, forked_sum

SHAPES = [(5, 7), (1000,), (0,), (3, 4, 5)]  # more than one chunk, none at all, several dimensions


def _rank_tensors(rank: int, dtype: torch.dtype) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + rank)
    if dtype.is_floating_point:
        return [torch.randn(shape, generator=generator).to(dtype) for shape in SHAPES]
    return [torch.randint(-1000, 1000, shape, generator=generator, dtype=dtype) for shape in SHAPES]


def _sums_rank(rank: int) -> dict:
    """Every shape and dtype through the default group's shared-memory sum (built with chunks of 64 bytes, so that
    the larger tensors take many rounds), and float32 through gloo too."""
    torch.distributed.init_process_group("gloo")
    reducer = forked_sum()
    waited = []
    results = {}
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.int64):
        tensors = _rank_tensors(rank, dtype)
        results[dtype] = [
            reducer.all_reduce_(t.clone(), while_waiting=lambda: waited.append(len(waited))) for t in tensors
        ]
    results["gloo"] = []
    for t in _rank_tensors(rank, torch.float32):
        torch.distributed.all_reduce(t)
        results["gloo"].append(t)
    results["through_all_reduce_sum_"] = [all_reduce_sum_(t.clone()) for t in _rank_tensors(rank, torch.float32)]
    results["waited"] = waited
    results["chunk_bytes"] = reducer.capacity_bytes
    results["strided"] = all_reduce_sum_(torch.arange(12.0).view(3, 4).T * (rank + 1))  # summed as a copy
    return results


@pytest.mark.parametrize("world", [2, 3])
def test_forked_ranks_sum_in_rank_order_to_the_bit(world, monkeypatch):
    monkeypatch.setattr(shared_memory, "DEFAULT_CAPACITY_BYTES", 64)
    ranks = run_forked_ranks(_sums_rank, world)
    assert ranks[0]["chunk_bytes"] == 64
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.int64):
        inputs = [_rank_tensors(rank, dtype) for rank in range(world)]
        for index in range(len(SHAPES)):
            expected = inputs[0][index].clone()
            for other in inputs[1:]:
                expected += other[index]
            for rank in range(world):
                got = ranks[rank][dtype][index]
                assert got.dtype == dtype and got.shape == SHAPES[index]
                assert torch.equal(got, expected), (dtype, SHAPES[index], rank)
    for rank in range(world):
        assert ranks[rank]["waited"] == list(range(4 * len(SHAPES)))  # once per call, not once per chunk
        factor = sum(range(1, world + 1))
        assert torch.equal(ranks[rank]["strided"], torch.arange(12.0).view(3, 4).T * factor)
        for ours, expected in zip(ranks[rank]["through_all_reduce_sum_"], ranks[0]["gloo"]):
            if world == 2:  # two addends: gloo's sum to the bit
                assert torch.equal(ours, expected)
            else:  # gloo adds three in another order
                torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-6)


def _without_shared_memory(rank: int) -> tuple:
    torch.distributed.init_process_group("gloo")
    total = all_reduce_sum_(torch.tensor([rank + 1.0]))  # gloo, since run_forked_ranks shared no memory
    return forked_sum() is None, total.item()


def _in_a_subgroup_world(rank: int) -> bool:
    torch.distributed.init_process_group("gloo", world_size=1, rank=0, init_method=f"tcp://127.0.0.1:{29700 + rank}")
    return forked_sum() is None  # not the group the memory was shared for


def test_the_sum_is_offered_only_to_the_ranks_it_was_built_for():
    assert forked_sum() is None  # this process forked nothing
    assert run_forked_ranks(_without_shared_memory, 2, shared_memory=False) == [(True, 3.0), (True, 3.0)]
    assert run_forked_ranks(_in_a_subgroup_world, 2) == [True, True]


def _mismatched_rank(rank: int) -> None:
    torch.distributed.init_process_group("gloo")
    all_reduce_sum_(torch.ones(4 if rank == 0 else 2))


def _extra_sum_rank(rank: int) -> float:
    torch.distributed.init_process_group("gloo")
    total = all_reduce_sum_(torch.ones(3)).sum().item()
    if rank == 1:  # a sum rank 0 never makes: without the abort this would wait for ever
        all_reduce_sum_(torch.ones(3))
    return total


def test_sums_that_the_ranks_do_not_all_make_alike_fail_on_every_rank():
    with pytest.raises(RuntimeError, match=r"different sizes or dtypes: \['4 x torch.float32', '2 x torch.float32'\]"):
        run_forked_ranks(_mismatched_rank, 2)
    with pytest.raises(RuntimeError, match="rank 1 waits for a sum that another rank will not make"):
        run_forked_ranks(_extra_sum_rank, 2)


def test_an_abort_releases_a_rank_whose_round_every_rank_reached():
    """`run_forked_ranks` aborts the barrier once a rank returns; a rank the last arrival had already released, but
    that had not woken yet, still gets its sum (here rank 1's share of the first round is written, as if it had
    arrived and left), while one whose partner never came fails."""
    reducer = SharedMemorySum(2)
    reducer.rank = 0
    reducer._headers[0, 1] = 3, 0, 1  # rank 1: 3 float32 in round 1
    start = reducer.capacity_bytes // 4  # rank 1's slot of the first buffer, in float32
    torch.frombuffer(reducer._data, dtype=torch.float32)[start : start + 3] = 2.0
    reducer.abort()
    assert torch.equal(reducer.all_reduce_(torch.ones(3)), torch.full((3,), 3.0))
    with pytest.raises(RuntimeError, match="rank 0 waits for a sum that another rank will not make"):
        reducer.all_reduce_(torch.ones(3))  # round 2: rank 1 never wrote it


def test_shared_memory_sum_rejects_bad_arguments_and_tensors():
    with pytest.raises(ValueError, match="SharedMemorySum world_size must be >= 1, got 0"):
        SharedMemorySum(0)
    for bad in (1.5, True, "2"):
        with pytest.raises(TypeError, match="SharedMemorySum world_size must be an integer, got"):
            SharedMemorySum(bad)
    for bad in (-4, 7):
        with pytest.raises(ValueError, match=f"SharedMemorySum capacity_bytes must be >= 8, got {bad}"):
            SharedMemorySum(2, capacity_bytes=bad)
    reducer = SharedMemorySum(1)
    with pytest.raises(RuntimeError, match="used by the processes forked after it"):
        reducer.all_reduce_(torch.ones(3))
    reducer.rank = 0
    with pytest.raises(ValueError, match=r"sums contiguous tensors, got a non-contiguous \(4, 3\) one"):
        reducer.all_reduce_(torch.ones(3, 4).T)
    with pytest.raises(ValueError, match="sums dense real CPU tensors, got a torch.complex64 tensor on cpu"):
        reducer.all_reduce_(torch.ones(3, dtype=torch.complex64))
    with pytest.raises(ValueError, match="got a sparse torch.float32 tensor on cpu"):
        reducer.all_reduce_(torch.eye(3).to_sparse())
    alone = torch.arange(6.0)
    assert reducer.all_reduce_(alone) is alone and torch.equal(alone, torch.arange(6.0))  # one rank: itself
