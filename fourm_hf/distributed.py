"""What the training scripts share for runs over several processes: CPU processes (gloo) when the machine has no
accelerator, accelerate's FSDP plugin on those processes, the epoch of per-sample random draws (masks, flips) on
every rank and after a resume, the export of a sharded FSDP checkpoint to one `model.safetensors`, and
[`run_forked_ranks`]: a function run as the ranks of one gloo process group in forked CPU processes, without a
launcher (what the demo trains its 4M with on a 2-core machine), and [`collate_during_all_reduce`]: DDP on CPU
processes masks its next batch while the gradients' all-reduce is in flight, in the time a rank waits for the slowest.

accelerate (1.15) only turns its FSDP plugin on for accelerator devices: `accelerate launch --use_fsdp` on a machine
without GPUs starts processes that each train alone (no process group in the Trainer), while transformers already
loads the weights of every rank but 0 on the meta device for the FSDP broadcast that never comes; the run dies in
`model.to(device)` with "Cannot copy out of meta tensor; no data!". [`prepare_launch_environment`] and
[`ShardingTrainer`] make such a launch run FSDP2 (`fully_shard`) over gloo on CPU, the same accelerate code
path as on GPUs.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import pickle
import queue
import socket
import traceback
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule
from torch.nn.parallel import DistributedDataParallel
from transformers import PreTrainedModel, Trainer, TrainerCallback
from transformers.trainer import SCHEDULER_NAME
from transformers.utils import logging

from .shared_memory import SharedMemorySum, forked_sum, set_forked_sum

logger = logging.get_logger(__name__)


def fsdp_requested() -> bool:
    """Whether `accelerate launch` was asked for FSDP (`--use_fsdp` or an FSDP config file)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def prepare_launch_environment() -> None:
    """Adjust what `accelerate launch` set for this process before `TrainingArguments` or a model are built:

    - several processes on a machine without an accelerator run on CPU over gloo (what `accelerate launch --cpu`
      does, which accelerate refuses together with `--use_fsdp`); without this each process would train alone;
    - FSDP's `cpu_ram_efficient_loading` is turned off: with it transformers loads the weights of every rank but 0 on
      the meta device and accelerate broadcasts rank 0's parameters only, while 4M models also hold persistent
      buffers (the sin-cos position tables), on which accelerate 1.15 fails (`AttributeError: 'Tensor' object has no
      attribute 'device_mesh'` in `fsdp2_load_full_state_dict`). Every rank loads the checkpoint (or builds the same
      seeded model) instead.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available():
        os.environ["ACCELERATE_USE_CPU"] = "true"
    if fsdp_requested() and os.environ.get("FSDP_CPU_RAM_EFFICIENT_LOADING", "false").lower() == "true":
        logger.warning("fsdp_cpu_ram_efficient_loading is turned off: 4M models hold persistent buffers that "
                       "accelerate's rank-0 broadcast does not carry; every rank loads the weights.")
        os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "false"


def end_processes() -> None:
    """Tear the process group down before the interpreter exits: a gloo group left to the interpreter's shutdown can
    abort a rank after training has finished ("terminate called without an active exception", SIGABRT)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def run_forked_ranks(
    function: Callable[[int], Any], num_processes: int, threads_per_process: int = 1, shared_memory: bool = True
) -> list[Any]:
    """`[function(rank) for rank in range(num_processes)]`, each call in its own forked CPU process, the processes
    being the ranks of one gloo process group on this machine: what `accelerate launch --cpu --num_processes N` sets
    up (`RANK`, `WORLD_SIZE`, `MASTER_ADDR` / `MASTER_PORT`...), without starting new interpreters. A `Trainer` built
    inside `function` trains with DDP over the processes. The function, its closure and the data it reads reach the
    processes through the fork (nothing is pickled on the way in); each rank's result comes back pickled, rank 0
    first. A failing rank stops the others, and its traceback is raised here as a `RuntimeError`.

    Small models use one core per process far better than they share several cores as threads of one process:
    every process runs its own Python and its own share of the collator. The parent's objects are frozen out of the
    garbage collector for the fork (`gc.freeze`), so the ranks' collections (`Trainer` runs one at the end of
    training) neither scan nor copy them. With `shared_memory`, the ranks also share a [`SharedMemorySum`]
    (`fourm_hf.shared_memory.forked_sum`): DDP's gradient hook of [`collate_during_all_reduce`] and `MuonAdamW`'s
    split across ranks sum through it rather than through gloo's sockets, with the same values; a rank still waiting
    for a sum when another has returned fails with a `RuntimeError` rather than waiting for ever.
    """
    if "fork" not in multiprocessing.get_all_start_methods():
        raise RuntimeError("run_forked_ranks needs the fork start method (Linux, macOS); use `accelerate launch`.")
    for name, value in (("num_processes", num_processes), ("threads_per_process", threads_per_process)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    reducer = SharedMemorySum(num_processes) if shared_memory else None
    ranks = [
        context.Process(
            target=_forked_rank, args=(function, rank, num_processes, port, threads_per_process, results, reducer)
        )
        for rank in range(num_processes)
    ]
    outputs: dict[int, Any] = {}
    gc.freeze()
    try:
        for process in ranks:
            process.start()
        while len(outputs) < num_processes:
            try:
                rank, failure, output = results.get(timeout=1.0)
            except queue.Empty:
                dead = [r for r, p in enumerate(ranks) if r not in outputs and p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(
                        f"rank {dead[0]} of {num_processes} exited with code {ranks[dead[0]].exitcode} without a result."
                    ) from None
                continue
            if failure:
                raise RuntimeError(f"rank {rank} of {num_processes} failed:\n{output}")
            outputs[rank] = pickle.loads(output)
            if reducer is not None:  # a rank that returned makes no more sums: the others must not wait for one
                reducer.abort()
    finally:
        for process in ranks:
            if len(outputs) < num_processes and process.is_alive():
                process.terminate()
            if process.pid is not None:
                process.join()
        gc.unfreeze()
    return [outputs[rank] for rank in range(num_processes)]


def _forked_rank(function, rank: int, world_size: int, port: int, threads: int, results, reducer) -> None:
    """One rank of `run_forked_ranks`: the launcher's environment, a fresh accelerate state, the shared-memory sum
    (or none), then `function(rank)`."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS=str(threads),
    )  # fmt: skip
    torch.set_num_threads(threads)
    set_forked_sum(reducer, rank)
    AcceleratorState._reset_state(reset_partial_state=True)  # the parent's (single-process) state came with the fork
    prepare_launch_environment()
    try:
        # by value: torch's queue pickler would share tensors through this process, which ends now
        results.put((rank, False, pickle.dumps(function(rank))))
    except BaseException:
        results.put((rank, True, traceback.format_exc()))
    finally:
        end_processes()


class EpochCallback(TrainerCallback):
    """Sets the epoch of a dataset whose random draws are seeded by (seed, epoch, sample index) at the start of every
    epoch, so every process draws the same for a sample, also in the epoch a run resumes in mid-way (accelerate's
    `DataLoaderShard.set_epoch` does not reach the dataset once the batch sampler is wrapped by `skip_first_batches`;
    without this the resumed epoch would reuse epoch 0's draws)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor(state.epoch or 0))  # the epoch index, also when resumed mid-epoch


class DeferredBatch:
    """A batch whose collation is put off: it holds the samples and collates them on first use, or earlier when its
    [`DeferredCollator`] is told to (`collate_latest`). It reads as the collated batch (`batch[key]`, `keys()`,
    `**batch`, `key in batch`, `len(batch)`), but is not a `Mapping`: accelerate and `Trainer` rebuild mappings key by
    key when they fetch a batch, which would collate it there. An error of the collator is raised where the batch is
    used, whenever it was collated."""

    __slots__ = ("_collator", "_samples", "_batch", "_error", "__weakref__")

    def __init__(self, collator: Callable[[list], Any], samples: list):
        self._collator, self._samples = collator, samples
        self._batch: Any = None
        self._error: Exception | None = None

    @property
    def collated(self) -> bool:
        return self._samples is None

    def _run(self) -> None:
        if self._samples is None:
            return
        samples, self._samples = self._samples, None
        try:
            self._batch = self._collator(samples)
        except Exception as error:  # kept for the step that uses the batch
            self._error = error

    def collate(self) -> Any:
        """The collated batch (collated now if it was not yet)."""
        self._run()
        if self._error is not None:
            raise self._error
        return self._batch

    def keys(self):
        return self.collate().keys()

    def __getitem__(self, key: str) -> Any:
        return self.collate()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.collate()

    def __iter__(self) -> Iterator:
        return iter(self.collate())

    def __len__(self) -> int:
        return len(self.collate())


class DeferredCollator:
    """A `DataLoader` collator that returns [`DeferredBatch`]es: fetching a batch only gathers its samples, and the
    wrapped `collator` runs when the batch is first used or at [`collate_latest`], e.g. from a DDP gradient hook
    ([`collate_during_all_reduce`]). Batches are collated in the order they were fetched, each once; one the loader
    fetched and then skipped (resuming mid-epoch) is never collated."""

    def __init__(self, collator: Callable[[list], Any]):
        if not callable(collator):
            raise TypeError(f"DeferredCollator wraps a collator (a callable), got {type(collator).__name__}.")
        self.collator = collator
        self._latest: weakref.ref[DeferredBatch] | None = None

    def __call__(self, samples: list) -> DeferredBatch:
        batch = DeferredBatch(self.collator, samples)
        self._latest = weakref.ref(batch)
        return batch

    def collate_latest(self) -> bool:
        """Collate the most recently fetched batch if it is still waiting (an error is kept for its use). Returns
        whether there was one."""
        batch = self._latest() if self._latest is not None else None
        if batch is None or batch.collated:
            return False
        batch._run()
        return True


def collate_during_all_reduce(model: torch.nn.Module, collator: DeferredCollator) -> bool:
    """Give a DDP `model` a gradient hook that averages the gradients over the ranks as DDP's own all-reduce does
    (the same values) and, once the last bucket's all-reduce is under way, collates the `collator`'s latest batch:
    accelerate fetches the next step's batch before it yields the current one, so the masking of step t + 1 fills the
    time a rank of step t waits for the slowest one, instead of starting step t + 1. Between ranks of
    [`run_forked_ranks`] the sum goes through their shared memory ([`SharedMemorySum`]; the batch is collated after
    this rank's gradients are written and before it waits for the others), else through the process group. Returns
    False, changing nothing, for a model that is not DDP or already has a gradient hook."""
    if not isinstance(model, DistributedDataParallel):
        return False
    reducer = forked_sum()
    if reducer is not None and model.process_group.size() != reducer.world_size:
        reducer = None

    def hook(process_group, bucket):
        if reducer is None:
            future = allreduce_hook(process_group, bucket)
            if bucket.is_last():
                collator.collate_latest()
            return future
        gradients = bucket.buffer().div_(reducer.world_size)
        reducer.all_reduce_(gradients, while_waiting=collator.collate_latest if bucket.is_last() else None)
        future = torch.futures.Future()
        future.set_result(gradients)
        return future

    try:
        model.register_comm_hook(model.process_group, hook)
    except RuntimeError as error:  # DDP takes one hook
        logger.warning(f"Batches are collated when used, not during the gradient all-reduce: {error}")
        return False
    return True


class ShardingTrainer(Trainer):
    """`Trainer` whose runs move between machines:

    - on CPU processes launched with FSDP, accelerate's state is switched from plain multi-CPU (DDP) to FSDP with the
      plugin of the launch, so the model is sharded with `fully_shard` by the same accelerate code as on GPUs;
    - checkpoints keep model and optimizer as `torch.distributed.checkpoint` shards (`checkpoint-<step>/sharded/`),
      which resume on any world size, with or without FSDP, and export to one file ([`export_checkpoint`]);
    - the final `save_model` of an FSDP run writes the gathered weights as one `model.safetensors`.
    """

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        state = self.accelerator.state
        if fsdp_requested() and state.distributed_type == DistributedType.MULTI_CPU:
            plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* variables set by accelerate launch
            if plugin.fsdp_version != 2:
                raise ValueError(
                    f"FSDP on CPU processes is supported with --fsdp_version 2 (fully_shard), got version "
                    f"{plugin.fsdp_version}."
                )
            state.distributed_type = DistributedType.FSDP
            state.fsdp_plugin = plugin
            self.is_fsdp_enabled = True

    # -----------------------------------------------------------------------------------------------------------------
    # Checkpoints that move between world sizes

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """As `Trainer.save_model`, and under FSDP with sharded state dicts (where `Trainer` writes no weights) the
        gathered weights as one `model.safetensors` with the config (checkpoints keep their sharded copy)."""
        plugin = self.accelerator.state.fsdp_plugin if self.is_fsdp_enabled else None
        if _internal_call or plugin is None or "SHARDED" not in str(plugin.state_dict_type):
            super().save_model(output_dir, _internal_call)
            return
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)  # gathered on rank 0, in CPU memory
        state_dict = get_model_state_dict(self.model, options=options)  # every rank takes part in the gather
        if self.args.should_save:
            self._save(output_dir, state_dict=state_dict)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        """Model and optimizer state as one `torch.distributed.checkpoint` (every rank writes its shards, the
        metadata names the global tensors), then the schedule; any world size, FSDP or not, can resume from it."""
        model_state = get_model_state_dict(self.model)
        optimizer_state = get_optimizer_state_dict(self.model, self.optimizer)
        states = {"model": model_state, "optimizer": optimizer_state}
        dcp.save(states, checkpoint_id=sharded_checkpoint_dir(output_dir))
        if self.args.should_save:  # the config lets `export_checkpoint` rebuild the model
            self.model.config.architectures = [unwrapped_class(self.model).__name__]
            self.model.config.save_pretrained(output_dir)
            torch.save(self.lr_scheduler.state_dict(), os.path.join(output_dir, SCHEDULER_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        folder = sharded_checkpoint_dir(resume_from_checkpoint)
        if not folder.is_dir():
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return
        model = self.model if model is None else model
        state = get_model_state_dict(model)
        dcp.load({"model": state}, checkpoint_id=folder)
        set_model_state_dict(model, state)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is None or not sharded_checkpoint_dir(checkpoint).is_dir():
            super()._load_optimizer_and_scheduler(checkpoint)
            return
        state = get_optimizer_state_dict(self.model, self.optimizer)
        dcp.load({"optimizer": state}, checkpoint_id=sharded_checkpoint_dir(checkpoint))
        set_optimizer_state_dict(self.model, self.optimizer, state)
        schedule = torch.load(os.path.join(checkpoint, SCHEDULER_NAME), map_location="cpu", weights_only=True)
        self.lr_scheduler.load_state_dict(schedule)


def unwrapped_class(model: torch.nn.Module) -> type:
    """The model's own class, also after `fully_shard` (which swaps it for a subclass named `FSDP<class>`)."""
    return next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))


def sharded_checkpoint_dir(checkpoint: str | os.PathLike) -> Path:
    """Where a [`ShardingTrainer`] checkpoint keeps its model and optimizer shards."""
    return Path(checkpoint) / "sharded"


def export_checkpoint(
    checkpoint: str | os.PathLike, output_dir: str | os.PathLike, model_class: type[PreTrainedModel]
) -> PreTrainedModel:
    """Gather the shards of a [`ShardingTrainer`] checkpoint (saved by any number of processes) into one model and
    save it with `save_pretrained` (`config.json` + `model.safetensors`) in `output_dir`; runs in one process."""
    folder = sharded_checkpoint_dir(checkpoint)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{checkpoint} holds no sharded model state ({folder.name}/); give a checkpoint-<step> directory written "
            "by the training scripts."
        )
    config = model_class.config_class.from_pretrained(checkpoint)
    model = model_class(config)
    state = model.state_dict()
    dcp.load({"model": state}, checkpoint_id=folder)
    model.load_state_dict(state)
    model.save_pretrained(output_dir)
    return model
