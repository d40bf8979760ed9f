"""Pre-training data streamed from shards on disk (Parquet files or webdataset tar shards), never held whole.

Two shard layouts are read (and written by [`write_shards`] / `pretokenize(..., output_dir=...)`):

- **Parquet**: `<dir>/shard-00000.parquet`, `<dir>/shard-00001.parquet`, ...; one row per sample with the
  pre-tokenised columns (as `pretokenize` makes them) and a `__key__` string column. Each file is read with `datasets`
  streaming (`load_dataset("parquet", data_files=..., streaming=True)`), a batch of rows at a time.
- **tar** (the modified webdataset layout of apple/ml-4m's README_DATA): one folder per modality holding the same
  shard names, e.g. `<dir>/tok_rgb@224/shard-00000.tar`, `<dir>/crop_settings/shard-00000.tar`,
  `<dir>/caption/shard-00000.tar`. Inside, one member per sample named `<key>.<ext>`, the same keys in the same order
  in every modality's tar of a shard (read in lock-step; a mismatch is an error naming both). The folder name is the
  sample's column name (our modality names: `rgb@224`, not the official `rgb` folder of JPEGs). Extensions:
  `.npy` for arrays (token ids `(n_crops, N)` of any integer dtype, the official int16 included; crop settings
  `(n_crops, 5)`; pixel crops; one sequence's ids), `.json` for ragged values (a det sequence per crop, `{"chunks":
  [...]}`), `.txt` for strings. Sequence modalities hold pre-tokenised ids, not the official raw caption / det text.

Splitting and order: in data epoch `e` the shards are permuted with a generator seeded by `(seed, e)`, and reader `g`
of the `G = world_size x num_workers` (rank, DataLoader worker) pairs, `g = rank x num_workers + worker`, reads shards
`g, g + G, ...` of that order; so each epoch every sample is read exactly once, by one reader, and there must be at
least `G` shards. Each reader passes its samples through a shuffle buffer seeded by `(seed, g)`, which carries over
epoch boundaries; readers go through the epochs at their own pace (their shards differ in size), and a finite stream
(`epochs=n`) ends once each reader has read its shards n times. (4M itself resamples shards with replacement; here
every sample is read once per epoch.)

Masking seeds: every sample gets `masking_seed = (masking_seed, epoch, index)`, `index` being its key when the key is a
decimal number (the row index, as `write_shards` names them) and a stable 63-bit hash of it otherwise. It depends on
neither rank nor worker, and equals what [`SeededMaskingDataset`] gives row `index` of the in-memory dataset in that
epoch, so [`FourMMaskingCollator`] masks a sample the same way on either path.

Resuming: a DataLoader over an iterable dataset takes its batches from the workers in turn, so after `b` batches
worker `w` has made `b // W` or `b // W + 1` of them. [`StreamingDataLoader`] counts the batches it yielded
(`state_dict`); after `load_state_dict` each worker replays its reader up to its first unseen sample (reading but not
collating the ones it skips) and the workers are rotated so that the next batch comes from the one whose turn it was.
The run continues with exactly the samples and masks it would have had (with endless streams, `epochs=None`, as in
training; a finite stream resumes exactly until its first reader runs out). Resume with the same world size, batch size
and number of workers. [`StreamingResumeCallback`] does this for `Trainer` (with `ignore_data_skip=True`) and refuses
a resume whose layout differs from the one saved with the checkpoint.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..checks import check_choice, check_int

SHARD_FORMATS = ("parquet", "tar")
KEY_COLUMN = "__key__"
STREAMING_STATE_NAME = "streaming_state.json"  # a StreamingDataLoader's layout, saved with each Trainer checkpoint
PARQUET_BATCH_ROWS = 256  # rows decoded at a time from a Parquet shard
WRITE_BATCH_ROWS = 256  # rows of a column read at a time when writing a tar
TAR_EXTENSIONS = ("npy", "json", "txt")
_ORDER, _BUFFER = 0, 1  # generator streams: shard order per epoch, shuffle buffer per reader
_INHERITED: list = []  # the (function, jobs) of the running run_parallel call, inherited by its forked processes


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def sample_index(key: str) -> int:
    """The integer id of a sample key: the key itself when it is a decimal number, else a stable 63-bit hash."""
    if key.isdigit():
        return int(key)
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") >> 1


# ---------------------------------------------------------------------------------------------------------------------
# Writing


def _npy_dtype(feature: Any) -> str | None:
    """The dtype a column's values are stored with as .npy (arrays, scalars, flat id lists); None for .txt / .json."""
    if isinstance(feature, datasets.Value):
        return None if feature.dtype in ("string", "large_string") else feature.dtype
    if isinstance(feature, (datasets.Array2D, datasets.Array3D, datasets.Array4D)):
        return feature.dtype
    if isinstance(feature, (datasets.List, datasets.LargeList)) and isinstance(feature.feature, datasets.Value):
        return _npy_dtype(feature.feature)
    return None


def _tar_member(key: str, value: Any, dtype: str | None) -> tuple[str, bytes]:
    """`<key>.<ext>` and the bytes of one value: .npy with `dtype`, else .txt for strings and .json for the rest."""
    if dtype is not None:
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(value, dtype=dtype), allow_pickle=False)
        return f"{key}.npy", buffer.getvalue()
    if isinstance(value, str):
        return f"{key}.txt", value.encode()
    return f"{key}.json", json.dumps(value).encode()


def write_shard(
    shard: datasets.Dataset, output_dir: str | os.PathLike, index: int, first_key: int, shard_format: str = "parquet"
) -> None:
    """Write one shard: `shard-<index>.parquet`, or `<column>/shard-<index>.tar` for every column; the samples' keys
    are `first_key`, `first_key + 1`, ... (their row indices in the whole dataset, 9 digits)."""
    shard = shard.with_format(None)
    keys = [f"{first_key + row:09d}" for row in range(len(shard))]
    name = shard_name(index)
    if shard_format == "parquet":
        shard.add_column(KEY_COLUMN, keys).to_parquet(os.path.join(output_dir, f"{name}.parquet"))
        return
    for column, feature in shard.features.items():
        folder = os.path.join(output_dir, column)
        os.makedirs(folder, exist_ok=True)
        dtype = _npy_dtype(feature)
        rows = shard.select_columns([column]).with_format("numpy" if dtype is not None else None)
        values = (value for batch in rows.iter(batch_size=WRITE_BATCH_ROWS) for value in batch[column])
        with tarfile.open(os.path.join(folder, f"{name}.tar"), "w") as tar:
            for key, value in zip(keys, values):
                member, data = _tar_member(key, value, dtype)
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _run_inherited(index: int) -> Any:
    function, jobs = _INHERITED[0]
    return function(*jobs[index])


def run_parallel(function: Callable[..., Any], jobs: Sequence[tuple], num_proc: int) -> list:
    """`[function(*job) for job in jobs]`, in up to `num_proc` forked processes with one torch thread each (as
    DataLoader workers: the processes are the parallelism, and a forked OpenMP pool is unsafe). The function and the
    jobs reach the processes through the fork, not pickled, so closures and large models cost nothing to send; the
    results come back pickled. This process's objects are frozen out of the garbage collector for the fork
    (`gc.freeze`), so the processes' collections neither scan nor copy them. Runs in this process with `num_proc=1`
    or where fork is unavailable."""
    processes = min(num_proc, len(jobs))
    if processes <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [function(*job) for job in jobs]
    _INHERITED[:] = [(function, jobs)]
    gc.freeze()
    try:
        context = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(
            processes, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)
        ) as pool:
            return list(pool.map(_run_inherited, range(len(jobs))))
    finally:
        _INHERITED.clear()
        gc.unfreeze()


def write_shards(
    dataset: datasets.Dataset,
    output_dir: str | os.PathLike,
    num_shards: int,
    shard_format: str = "parquet",
    num_proc: int = 1,
) -> str:
    """Write `dataset` as `num_shards` contiguous shards in `shard_format` (see the module docstring for the layouts),
    `num_proc` shards at a time in separate processes. Sample keys are the row indices (`000000017`). Returns
    `output_dir`."""
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"dataset must be a datasets.Dataset, got {type(dataset).__name__}.")
    check_int(num_shards, "num_shards", minimum=1, maximum=len(dataset))
    check_choice(shard_format, "shard_format", SHARD_FORMATS)
    check_int(num_proc, "num_proc", minimum=1)
    if not isinstance(output_dir, (str, os.PathLike)):
        raise TypeError(f"output_dir must be a path, got {type(output_dir).__name__}.")
    if KEY_COLUMN in dataset.column_names:
        raise ValueError(f"the dataset already has a {KEY_COLUMN!r} column; the shards' keys are written there.")
    undecoded = [c for c, f in dataset.features.items() if isinstance(f, (datasets.Image, datasets.Audio))]
    if undecoded and shard_format == "tar":
        raise ValueError(
            f"columns {undecoded} hold images or audio, which tar shards store as arrays only; pre-tokenise them or "
            "drop them (dataset.remove_columns) before writing."
        )
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    size, extra = divmod(len(dataset), num_shards)
    starts = [size * index + min(index, extra) for index in range(num_shards)]  # as Dataset.shard(contiguous=True)
    shards = [dataset.shard(num_shards, i, contiguous=True) for i in range(num_shards)]
    jobs = [(shard, output_dir, i, starts[i], shard_format) for i, shard in enumerate(shards)]
    run_parallel(write_shard, jobs, num_proc)
    return output_dir


# ---------------------------------------------------------------------------------------------------------------------
# Reading


def find_shards(path: str | os.PathLike) -> tuple[str, list]:
    """The format of a shard directory and its shards in order: Parquet file paths, or for tar shards one
    `{column: tar path}` dict per shard name."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"shard directory {path!r} does not exist.")
    parquet = sorted(name for name in os.listdir(path) if name.endswith(".parquet"))
    if parquet:
        return "parquet", [os.path.join(path, name) for name in parquet]
    tars = {
        name: sorted(f for f in os.listdir(os.path.join(path, name)) if f.endswith(".tar"))
        for name in sorted(os.listdir(path)) if os.path.isdir(os.path.join(path, name))
    }  # fmt: skip
    names = {folder: shards for folder, shards in tars.items() if shards}
    folders = list(names)
    if not folders:
        raise ValueError(
            f"{path!r} holds neither .parquet files nor folders of .tar shards (one folder per modality, "
            "e.g. tok_rgb@224/shard-00000.tar)."
        )
    first = folders[0]
    for folder in folders[1:]:
        if names[folder] != names[first]:
            missing = sorted(set(names[first]) ^ set(names[folder]))
            raise ValueError(
                f"the modality folders of {path!r} must hold the same shards: {folder!r} and {first!r} differ in "
                f"{missing[:3]}."
            )
    shards = [{folder: os.path.join(path, folder, name) for folder in folders} for name in names[first]]
    return "tar", shards


def _read_parquet(path: str, columns: Sequence[str] | None) -> Iterator[tuple[str, dict[str, Any]]]:
    stream = datasets.load_dataset("parquet", data_files=[path], split="train", streaming=True)
    if columns is not None:
        stream = stream.select_columns([c for c in stream.column_names if c in columns or c == KEY_COLUMN])
    row = 0
    for batch in stream.with_format("numpy").iter(batch_size=PARQUET_BATCH_ROWS):
        keys = batch.pop(KEY_COLUMN, None)
        for i in range(len(next(iter(batch.values())))):
            key = str(keys[i]) if keys is not None else f"{os.path.basename(path)}:{row}"
            yield key, {column: values[i] for column, values in batch.items()}
            row += 1


def _decode(member: str, data: bytes) -> Any:
    extension = member.rpartition(".")[2]
    if extension == "npy":
        return np.load(io.BytesIO(data), allow_pickle=False)
    if extension == "json":
        return json.loads(data)
    if extension == "txt":
        return data.decode()
    raise ValueError(f"tar member {member!r}: unsupported extension {extension!r}; expected one of {TAR_EXTENSIONS}.")


def _tar_members(path: str) -> Iterator[tuple[str, str, bytes]]:
    """(key, member name, bytes) of the files of one tar, read sequentially."""
    with tarfile.open(path, "r|*") as tar:
        for member in tar:
            if member.isfile():
                directory, _, base = member.name.rpartition("/")
                key = base.partition(".")[0]
                yield (f"{directory}/{key}" if directory else key), member.name, tar.extractfile(member).read()


def _read_tar(paths: Mapping[str, str], columns: Sequence[str] | None) -> Iterator[tuple[str, dict[str, Any]]]:
    paths = {column: path for column, path in paths.items() if columns is None or column in columns}
    readers = {column: _tar_members(path) for column, path in paths.items()}
    with contextlib.ExitStack() as stack:
        for reader in readers.values():
            stack.callback(reader.close)
        for members in itertools.zip_longest(*readers.values()):
            if any(m is None for m in members):
                short = [c for c, m in zip(readers, members) if m is None]
                raise ValueError(f"shard {list(paths.values())}: {short} end before the other modalities' tars.")
            key = members[0][0]
            for column, (other, name, _) in zip(readers, members):
                if other != key:
                    raise ValueError(
                        f"{paths[column]}: member {name!r} where the other modalities have the sample {key!r}; the "
                        "tars of a shard must hold the same keys in the same order."
                    )
            yield key, {column: _decode(name, data) for column, (_, name, data) in zip(readers, members)}


class ShardStream(IterableDataset):
    """Pre-tokenised samples streamed from a directory of Parquet or tar shards (see the module docstring).

    Args:
        path (`str`): the shard directory.
        columns (`Sequence[str]`, *optional*): read only these columns (modality folders for tar shards).
        seed (`int`, *optional*, defaults to 0): seed of the shard order and the shuffle buffers.
        masking_seed (`int`, *optional*, defaults to 0): first element of every sample's `masking_seed`.
        shuffle_buffer (`int`, *optional*, defaults to 1000): samples held by each reader's shuffle buffer (1: none).
        epochs (`int`, *optional*): passes over the data; endless when None (training with `max_steps`).
        rank, world_size (`int`, *optional*): this process among the data-parallel ones; by default read from
            `torch.distributed` when it is initialised, else 0 and 1.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        columns: Sequence[str] | None = None,
        seed: int = 0,
        masking_seed: int = 0,
        shuffle_buffer: int = 1000,
        epochs: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        self.path = os.fspath(path)
        self.format, self.shards = find_shards(self.path)
        if columns is not None and (isinstance(columns, str) or not all(isinstance(c, str) for c in columns)):
            raise TypeError(f"columns must be a list of column names, got {columns!r}.")
        if columns is not None and not columns:
            raise ValueError("columns is empty: give the columns to read, or None for all of them.")
        self.columns = None
        available = self.column_names
        missing = sorted(set(columns or ()) - set(available))
        if missing:
            raise ValueError(f"columns {missing} are not in the shards of {self.path!r}; they have {available}.")
        self.columns = None if columns is None else list(columns)
        self.seed = check_int(seed, "seed", minimum=0)
        self.masking_seed = check_int(masking_seed, "masking_seed", minimum=0)
        self.shuffle_buffer = check_int(shuffle_buffer, "shuffle_buffer", minimum=1)
        self.epochs = None if epochs is None else check_int(epochs, "epochs", minimum=1)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if world_size is None:
            world_size = torch.distributed.get_world_size() if distributed else 1
        if rank is None:
            rank = torch.distributed.get_rank() if distributed else 0
        self.world_size = check_int(world_size, "world_size", minimum=1)
        self.rank = check_int(rank, "rank", minimum=0, maximum=self.world_size - 1)
        self._resume = (0, 1)  # (batches already consumed, batch size), set by StreamingDataLoader

    @property
    def column_names(self) -> list[str]:
        """The columns a sample has (the key column aside), from the first shard."""
        if self.format == "parquet":
            names = [n for n in pq.read_schema(self.shards[0]).names if n != KEY_COLUMN]
        else:
            names = list(self.shards[0])
        return [n for n in names if self.columns is None or n in self.columns]

    def resume_at(self, batches: int, batch_size: int) -> None:
        """Make the next iteration start after `batches` batches of `batch_size` (see the module docstring)."""
        self._resume = (check_int(batches, "batches", minimum=0), check_int(batch_size, "batch_size", minimum=1))

    def _read(self, shard: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        return _read_parquet(shard, self.columns) if self.format == "parquet" else _read_tar(shard, self.columns)

    def _samples(self, reader: int, readers: int) -> Iterator[dict[str, Any]]:
        """The samples of one reader, epoch after epoch, each with its key and masking seed."""
        for epoch in itertools.count() if self.epochs is None else range(self.epochs):
            order = np.random.default_rng([self.seed, _ORDER, epoch]).permutation(len(self.shards))
            for shard in order[reader::readers]:
                for key, sample in self._read(self.shards[shard]):
                    yield {**sample, KEY_COLUMN: key, "masking_seed": (self.masking_seed, epoch, sample_index(key))}

    def _shuffled(self, samples: Iterator[dict[str, Any]], reader: int) -> Iterator[dict[str, Any]]:
        rng = np.random.default_rng([self.seed, _BUFFER, reader])
        buffer: list[dict[str, Any]] = []
        for sample in samples:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(sample)
                continue
            slot = int(rng.integers(len(buffer)))
            buffer[slot], sample = sample, buffer[slot]
            yield sample
        for slot in rng.permutation(len(buffer)):
            yield buffer[slot]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        readers = self.world_size * num_workers
        if len(self.shards) < readers:
            raise ValueError(
                f"{len(self.shards)} shards in {self.path!r} for {readers} readers ({self.world_size} processes x "
                f"{num_workers} DataLoader workers): every reader needs at least one shard; write more shards or use "
                "fewer workers."
            )
        batches, batch_size = self._resume
        logical = (worker + batches) % num_workers  # the worker whose turn the next batch is comes first
        done = batches // num_workers + int(logical < batches % num_workers)
        reader = self.rank * num_workers + logical
        samples = self._shuffled(self._samples(reader, readers), reader)
        return itertools.islice(samples, done * batch_size, None)


class StreamingDataLoader(DataLoader):
    """A `DataLoader` over a [`ShardStream`] that resumes mid-epoch: `state_dict()` after some batches,
    `load_state_dict(state)` on a new loader, and its next iteration yields the batches that would have come next."""

    def __init__(self, dataset: ShardStream, batch_size: int = 1, **kwargs: Any):
        if not isinstance(dataset, ShardStream):
            raise TypeError(f"dataset must be a ShardStream, got {type(dataset).__name__}.")
        if kwargs.get("persistent_workers"):
            raise ValueError(
                "persistent_workers keeps the workers of the first iteration, so a resume could not reach them."
            )
        super().__init__(dataset, batch_size=check_int(batch_size, "batch_size", minimum=1), **kwargs)
        self.batches_yielded = 0

    def __iter__(self) -> Iterator[Any]:
        self.dataset.resume_at(self.batches_yielded, self.batch_size)
        for batch in super().__iter__():
            self.batches_yielded += 1
            yield batch

    def _layout(self) -> dict[str, Any]:
        stream = self.dataset
        return {"batch_size": self.batch_size, "num_workers": self.num_workers, "world_size": stream.world_size,
                "rank": stream.rank, "seed": stream.seed, "num_shards": len(stream.shards)}  # fmt: skip

    def state_dict(self) -> dict[str, int]:
        return {"batches": self.batches_yielded, **self._layout()}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        if not isinstance(state, Mapping) or "batches" not in state:
            raise TypeError(f"state must be a StreamingDataLoader.state_dict(), got {state!r:.80}.")
        changed = {k: (state[k], v) for k, v in self._layout().items() if k in state and state[k] != v}
        if changed:
            described = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            raise ValueError(f"cannot resume the stream exactly with a different layout: {described}.")
        self.batches_yielded = check_int(state["batches"], "batches", minimum=0)


class StreamingResumeCallback(TrainerCallback):
    """Starts a [`StreamingDataLoader`] after the batches a resumed `Trainer` run consumed (global step x gradient
    accumulation). Use with `ignore_data_skip=True`: `Trainer`'s own skip would read and collate them again. Each
    checkpoint also gets the loader's layout (`streaming_state.json`: batch size, workers, world size, seed, shards);
    resuming from a checkpoint of `output_dir` with another layout is refused, since it could not continue exactly."""

    def on_save(self, args, state, control, train_dataloader=None, **kwargs):
        if isinstance(train_dataloader, StreamingDataLoader) and state.is_world_process_zero:
            layout = {k: v for k, v in train_dataloader.state_dict().items() if k != "rank"}
            path = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}", STREAMING_STATE_NAME)
            with open(path, "w") as file:
                json.dump(layout, file)

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        if not isinstance(train_dataloader, StreamingDataLoader):
            return
        saved = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}", STREAMING_STATE_NAME)
        layout = {}
        if state.global_step and os.path.isfile(saved):
            with open(saved) as file:
                layout = json.load(file)
        train_dataloader.load_state_dict({**layout, "batches": state.global_step * args.gradient_accumulation_steps})


__all__ = [
    "KEY_COLUMN",
    "SHARD_FORMATS",
    "ShardStream",
    "StreamingDataLoader",
    "StreamingResumeCallback",
    "find_shards",
    "run_parallel",
    "sample_index",
    "write_shard",
    "write_shards",
]
