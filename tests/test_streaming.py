"""Streaming pre-training data: Parquet and tar shards written, split by rank and worker, shuffled, masked like the
in-memory rows, resumed mid-epoch (through the loader and through a SIGKILLed pre-training process)."""

import gc
import io
import itertools
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fourm_hf import FourMConfig
from fourm_hf.data.masking import FourMMaskingCollator, MaskingMixture, SeededMaskingDataset
from fourm_hf.data.pretokenization import ImageColumn, pretokenize
from fourm_hf.data.streaming import ShardStream, StreamingDataLoader, run_parallel, sample_index, write_shards
from training.pretrain import FourMPretrainingArguments, run_pretraining

REPO = Path(__file__).resolve().parents[1]
FORMATS = ["parquet", "tar"]
MODALITIES = ["tok_semseg@224", "caption", "det"]


def pretokenized_rows(n, num_crops=2):
    """Rows shaped like `pretokenize`'s output: crop settings, per-crop tokens and det sequences, one caption, chunked
    metadata."""
    rng = np.random.default_rng(0)
    features = datasets.Features({
        "crop_settings": datasets.Array2D((num_crops, 5), "int32"),
        "tok_semseg@224": datasets.Array2D((num_crops, 196), "int32"),
        "caption": datasets.List(datasets.Value("int32")),
        "det": datasets.List(datasets.List(datasets.Value("int32"))),
        "metadata": {"chunks": datasets.List(datasets.List(datasets.Value("int32")))},
    })  # fmt: skip
    rows = {
        "crop_settings": [np.tile([0, 0, 64, 64, 0], (num_crops, 1)) for _ in range(n)],
        "tok_semseg@224": [rng.integers(0, 4096, (num_crops, 196)) for _ in range(n)],
        "caption": [rng.integers(300, 3000, int(rng.integers(3, 20))).tolist() + [3] for _ in range(n)],
        "det": [[rng.integers(204, 4204, int(rng.integers(0, 9))).tolist() + [3] for _ in range(num_crops)]
                for _ in range(n)],
        "metadata": [{"chunks": [rng.integers(300, 900, 3).tolist() for _ in range(2)] + [[3]]} for _ in range(n)],
    }  # fmt: skip
    return datasets.Dataset.from_dict(rows, features=features)


def assert_same_sample(streamed, row, where):
    assert set(streamed) - {"__key__", "masking_seed"} == set(row), where
    for column, value in row.items():
        got = streamed[column]
        if column == "metadata":
            got, value = got["chunks"], value["chunks"]
        if column in ("det", "metadata"):
            assert [list(map(int, c)) for c in got] == [list(map(int, c)) for c in value], f"{where}: {column}"
        else:
            np.testing.assert_array_equal(np.asarray(got), np.asarray(value), err_msg=f"{where}: {column}")


def keys_of(batch):
    return [(sample["masking_seed"][1], sample["__key__"]) for sample in batch]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """24 rows written as 8 shards in both formats (two processes writing)."""
    root = tmp_path_factory.mktemp("shards")
    dataset = pretokenized_rows(24)
    return dataset, {fmt: write_shards(dataset, root / fmt, 8, fmt, num_proc=2) for fmt in FORMATS}


def test_tar_shards_follow_the_official_layout(shards):
    dataset, paths = shards
    root = Path(paths["tar"])
    assert sorted(os.listdir(root)) == sorted(dataset.column_names)
    for column in dataset.column_names:
        assert sorted(os.listdir(root / column)) == [f"shard-{i:05d}.tar" for i in range(8)]
    with tarfile.open(root / "tok_semseg@224" / "shard-00001.tar") as tar:
        names = tar.getnames()
        array = np.load(io.BytesIO(tar.extractfile(names[0]).read()), allow_pickle=False)
    assert names == ["000000003.npy", "000000004.npy", "000000005.npy"]  # rows 3-5: 24 rows in 8 contiguous shards
    np.testing.assert_array_equal(array, np.asarray(dataset[3]["tok_semseg@224"]))
    with tarfile.open(root / "det" / "shard-00001.tar") as tar:
        assert tar.getnames()[0] == "000000003.json"
        assert json.loads(tar.extractfile("000000003.json").read()) == dataset[3]["det"]
    assert sorted(os.listdir(paths["parquet"])) == [f"shard-{i:05d}.parquet" for i in range(8)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_two_ranks_by_two_workers_see_every_sample_once_per_epoch(shards, fmt):
    dataset, paths = shards
    seen = {}
    for rank in range(2):
        stream = ShardStream(paths[fmt], seed=5, shuffle_buffer=4, epochs=2, rank=rank, world_size=2)
        loader = StreamingDataLoader(stream, batch_size=2, num_workers=2, collate_fn=keys_of)
        seen[rank] = [key for batch in loader for key in batch]
    everything = seen[0] + seen[1]
    assert len(everything) == len(set(everything)) == 2 * 24  # no sample twice within an epoch
    for epoch in range(2):
        keys = {rank: {k for e, k in seen[rank] if e == epoch} for rank in range(2)}
        assert keys[0] | keys[1] == {f"{i:09d}" for i in range(24)}
        assert keys[0] and keys[1]  # both ranks read (disjoint halves: the total count above)
    first = [k for e, k in seen[0] if e == 0]
    assert first != sorted(first)  # shuffled
    orders = [[k for e, k in seen[0] if e == epoch] for epoch in range(2)]
    assert orders[0] != orders[1]  # reshuffled per epoch


@pytest.mark.parametrize("fmt", FORMATS)
def test_streamed_samples_equal_and_are_masked_like_the_in_memory_rows(shards, fmt):
    dataset, paths = shards
    in_memory = SeededMaskingDataset(dataset.with_format("numpy"), seed=7)
    mixture = MaskingMixture.from_dict({
        "input_tokens": 48, "target_tokens": 48,
        "alphas_mixture": {m: {"input_alphas": [1.0], "target_alphas": [1.0]} for m in MODALITIES},
    })  # fmt: skip
    collator = FourMMaskingCollator(mixture)
    stream = ShardStream(paths[fmt], masking_seed=7, shuffle_buffer=3, epochs=2, rank=1, world_size=2)
    samples = list(stream)
    assert {s["masking_seed"][1] for s in samples} == {0, 1}
    for sample in samples:
        index = int(sample["__key__"])
        in_memory.set_epoch(sample["masking_seed"][1])
        row = in_memory[index]
        assert sample["masking_seed"] == row["masking_seed"] == (7, sample["masking_seed"][1], index)
        assert_same_sample(sample, dataset[index], f"{fmt} sample {index}")
        ours, theirs = collator([sample]), collator([row])
        for name in MODALITIES:
            for key, value in theirs["modalities"][name].items():
                torch.testing.assert_close(ours["modalities"][name][key], value, rtol=0, atol=0, msg=f"{name} {key}")


@pytest.mark.parametrize("fmt", FORMATS)
def test_loader_resumes_mid_epoch_with_the_next_unseen_batch(shards, fmt):
    _, paths = shards

    def loader(batch_size=3):
        stream = ShardStream(paths[fmt], seed=1, shuffle_buffer=5, rank=0, world_size=2)  # endless, as in training
        return StreamingDataLoader(stream, batch_size=batch_size, num_workers=2, collate_fn=keys_of)

    straight = list(itertools.islice(loader(), 13))  # 39 samples: several epochs of the workers' 6 each
    first = loader()
    interrupted = list(itertools.islice(first, 5))  # odd: the next batch is worker 1's
    state = first.state_dict()
    assert state["batches"] == 5
    resumed = loader()
    resumed.load_state_dict(state)
    assert interrupted + list(itertools.islice(resumed, 8)) == straight
    assert {0, 1, 2} <= {e for batch in straight for e, _ in batch}  # resumed across epoch boundaries
    with pytest.raises(ValueError, match="cannot resume the stream exactly with a different layout: batch_size 3 -> 4"):
        loader(batch_size=4).load_state_dict(state)


def test_tars_written_elsewhere_in_the_official_layout_are_read(tmp_path):
    """Tars made with tarfile alone, as 4M's pre-tokenisation output is tarred: int16 token grids, non-numeric keys in
    a sub-folder, the crop settings in their own folder."""
    rng = np.random.default_rng(0)
    keys = [f"cc12m/{name}" for name in ("a7f3", "b0c1", "c2d9", "d4e8")]
    tokens = {key: rng.integers(0, 4096, (3, 196)).astype(np.int16) for key in keys}
    settings = {key: np.array([[0, 0, 64, 64, 0], [4, 2, 50, 50, 1], [1, 1, 60, 60, 0]]) for key in keys}
    for folder, arrays in (("tok_semseg@224", tokens), ("crop_settings", settings)):
        (tmp_path / folder).mkdir()
        for shard, names in enumerate((keys[:2], keys[2:])):
            with tarfile.open(tmp_path / folder / f"shard-{shard:05d}.tar", "w") as tar:
                for key in names:
                    buffer = io.BytesIO()
                    np.save(buffer, arrays[key])
                    info = tarfile.TarInfo(f"{key}.npy")
                    info.size = buffer.tell()
                    tar.addfile(info, io.BytesIO(buffer.getvalue()))
    samples = list(ShardStream(tmp_path, masking_seed=3, shuffle_buffer=1, epochs=1))
    assert sorted(s["__key__"] for s in samples) == keys
    mixture = MaskingMixture.from_dict({
        "input_tokens": 32, "target_tokens": 32,
        "alphas_mixture": {"tok_semseg@224": {"input_alphas": [1.0], "target_alphas": [1.0]}},
    })  # fmt: skip
    collator = FourMMaskingCollator(mixture)
    for sample in samples:
        key = sample["__key__"]
        assert sample["tok_semseg@224"].dtype == np.int16
        np.testing.assert_array_equal(sample["tok_semseg@224"], tokens[key])
        assert sample["masking_seed"] == (3, 0, sample_index(key))
        masked = collator([sample])["modalities"]["tok_semseg@224"]
        ids = masked["tensor"][0]
        crop = [c for c in range(3) if np.array_equal(ids.numpy(), tokens[key][c])]
        assert len(crop) == 1 and masked["tensor"].dtype == torch.int64  # one stored crop, cast to int64


def test_streaming_errors(shards, tmp_path):
    dataset, paths = shards
    with pytest.raises(ValueError, match=r"8 shards in .* for 9 readers \(9 processes x 1 DataLoader workers\)"):
        iter(ShardStream(paths["tar"], rank=0, world_size=9))
    with pytest.raises(ValueError, match=r"columns \['depth'\] are not in the shards"):
        ShardStream(paths["parquet"], columns=["caption", "depth"])
    with pytest.raises(ValueError, match="neither .parquet files nor folders of .tar shards"):
        ShardStream(tmp_path)
    broken = tmp_path / "broken"
    write_shards(dataset.select(range(4)), broken, 2, "tar")
    os.remove(broken / "caption" / "shard-00001.tar")
    with pytest.raises(ValueError, match="must hold the same shards"):
        ShardStream(broken)
    with tarfile.open(broken / "det" / "shard-00001.tar", "w") as tar:  # the samples of another shard
        for key in ("000000000", "000000001"):
            info = tarfile.TarInfo(f"{key}.json")
            info.size = 2
            tar.addfile(info, io.BytesIO(b"[]"))
    os.remove(broken / "caption" / "shard-00000.tar")
    stream = ShardStream(broken, columns=["det", "tok_semseg@224"], shuffle_buffer=1, epochs=1)
    mismatch = "member '000000002.npy' where the other modalities have the sample '000000000'"
    with pytest.raises(ValueError, match=mismatch):
        list(stream)
    options = {"output_dir": str(tmp_path / "run"), "report_to": "none", "use_cpu": True}
    with pytest.raises(ValueError, match="--shuffle_buffer must be >= 1, got 0"):
        FourMPretrainingArguments(**options, shuffle_buffer=0)
    args = FourMPretrainingArguments(
        **options, streaming=True, train_dataset=paths["parquet"], input_tokens="8", target_tokens="8",
        total_tokens=1e4, warmup_tokens=0,
    )  # fmt: skip
    columns = r"\(it has \['crop_settings', 'tok_semseg@224', 'caption', 'det', 'metadata'\]\)"
    with pytest.raises(ValueError, match=r"masks \[.*\], which the dataset has no column for " + columns):
        run_pretraining(args)
    assert sample_index("000000042") == 42
    hashed = {sample_index(f"cc12m/{name}") for name in ("a", "b", "c", "d")}
    assert len(hashed) == 4 and all(0 <= h < 2**63 for h in hashed)


@pytest.mark.parametrize("fmt", FORMATS)
def test_pretokenize_writes_shards_that_stream_back_the_in_memory_dataset(tmp_path, fmt):
    rng = np.random.default_rng(0)
    source = datasets.Dataset.from_dict({"semseg": [rng.integers(0, 5, (40, 48)).astype(np.uint8) for _ in range(7)]})

    def tokenizer(batch):  # stand-in VQ model: one id per 16x16 patch, from the patch's mean class
        return torch.nn.functional.avg_pool2d(batch[:, None].float(), 16)[:, 0].round().long().clamp(0, 4095)

    out = pretokenize(
        source, [ImageColumn("semseg", "tok_semseg@224", tokenizer)], num_crops=3, num_shards=3, num_proc=2,
        output_dir=tmp_path / "shards", shard_format=fmt,
    ).with_format("numpy")
    assert len(out) == 7 and out[0]["tok_semseg@224"].shape == (3, 196)
    streamed = list(ShardStream(tmp_path / "shards", shuffle_buffer=1, epochs=1))
    assert sorted(int(s["__key__"]) for s in streamed) == list(range(7))
    for sample in streamed:
        assert_same_sample(sample, out[int(sample["__key__"])], f"row {sample['__key__']}")
    straight = pretokenize(source, [ImageColumn("semseg", "tok_semseg@224", tokenizer)], num_crops=3)
    np.testing.assert_array_equal(np.asarray(straight["tok_semseg@224"]), out["tok_semseg@224"])


# ---------------------------------------------------------------------------------------------------------------------
# Pre-training from shards, killed and resumed

HANG_AFTER_STEP_4 = """
import json, sys, time
from transformers import TrainerCallback
from training.pretrain import FourMPretrainingArguments, run_pretraining

class Hang(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 4:
            print("STEP 4 DONE", flush=True)
            time.sleep(600)

run_pretraining(FourMPretrainingArguments(**json.loads(sys.argv[1])), callbacks=[Hang()])
"""


def streaming_run(tmp_path, name, shard_dir):
    """Arguments of a 6-step streamed run: 4 shards of 16 rows, batch 4, 2 DataLoader workers, checkpoints every 3."""
    rng = np.random.default_rng(0)
    rows = datasets.Dataset.from_dict({
        "tok_semseg@224": [rng.integers(0, 4096, 196) for _ in range(16)],
        "caption": [rng.integers(300, 3000, int(rng.integers(5, 30))).tolist() + [3] for _ in range(16)],
    })  # fmt: skip
    if not shard_dir.exists():
        write_shards(rows, shard_dir, 4, "parquet")
    mixture, config = tmp_path / "mixture.json", tmp_path / "config"
    mixture.write_text(json.dumps({
        "input_tokens": [16, 24], "target_tokens": 24,
        "alphas_mixture": {m: {"input_alphas": [1.0, 0.2], "target_alphas": [1.0, 0.5]} for m in rows.column_names},
    }))  # fmt: skip
    FourMConfig(
        hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=4,
        encoder_modalities=rows.column_names, decoder_modalities=rows.column_names,
    ).save_pretrained(config)  # fmt: skip
    tokens_per_step = (24 + 24) * 4
    return {
        "output_dir": str(tmp_path / name), "train_dataset": str(shard_dir), "streaming": True, "shuffle_buffer": 3,
        "config_name": str(config), "mixture": str(mixture), "per_device_train_batch_size": 4,
        "base_learning_rate": 1.0, "total_tokens": 6 * tokens_per_step, "warmup_tokens": 2 * tokens_per_step,
        "logging_steps": 1, "save_steps": 3, "use_cpu": True, "seed": 0, "disable_tqdm": True,
        "dataloader_num_workers": 2, "report_to": "none",
    }  # fmt: skip


def test_streamed_pretraining_killed_after_a_checkpoint_resumes_exactly(tmp_path):
    shard_dir = tmp_path / "shards"
    killed = streaming_run(tmp_path, "killed", shard_dir)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", HANG_AFTER_STEP_4, json.dumps(killed)], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    output, deadline = [], time.monotonic() + 300
    try:
        while not any("STEP 4 DONE" in line for line in output):
            ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = process.stdout.readline() if ready else ""
            assert line, "the training process ended or stalled before step 4:\n" + "".join(output[-30:])
            output.append(line)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the process and its DataLoader workers
        process.wait()
    assert process.returncode == -signal.SIGKILL
    checkpoints = sorted(p.name for p in Path(killed["output_dir"]).glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-3"]  # 3 batches consumed: the 2 workers resume out of phase

    saved = json.loads((Path(killed["output_dir"]) / "checkpoint-3" / "streaming_state.json").read_text())
    assert saved == {"batches": 3, "batch_size": 4, "num_workers": 2, "world_size": 1, "seed": 0, "num_shards": 4}
    changed = "cannot resume the stream exactly with a different layout: num_workers 2 -> 1"
    with pytest.raises(ValueError, match=changed):
        run_pretraining(FourMPretrainingArguments(**{**killed, "dataloader_num_workers": 1}))
    resumed = run_pretraining(FourMPretrainingArguments(**killed))
    straight = run_pretraining(FourMPretrainingArguments(**streaming_run(tmp_path, "straight", shard_dir)))
    assert resumed.state.global_step == straight.state.global_step == 6

    def losses(trainer):
        return {e["step"]: (e["loss"], e["caption_loss"]) for e in trainer.state.log_history if "loss" in e}

    assert sorted(losses(resumed)) == list(range(1, 7))
    for step in range(4, 7):
        assert losses(resumed)[step] == pytest.approx(losses(straight)[step], rel=1e-6, abs=0), f"step {step}"
    assert len({loss for loss, _ in losses(straight).values()}) == 6  # the steps saw different data and masks
    for (name, p), q in zip(straight.model.named_parameters(), resumed.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)


def test_two_process_streamed_run_resumed_from_a_checkpoint_repeats_its_last_step(tmp_path):
    """DDP over gloo (2 CPU processes, 2 workers each: every one of the 4 shards has one reader): a run resumed from
    its step-2 checkpoint in a fresh output_dir takes step 3 as the uninterrupted run did."""
    args = streaming_run(tmp_path, "straight", tmp_path / "shards")  # 4 x 2 samples per step: 3 steps
    args.update(save_steps=2)

    def launch(output_dir):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        flags = [f"--{k}={v}" for k, v in {**args, "output_dir": str(output_dir)}.items()]
        command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no", "--multi_gpu", "--main_process_port", str(port),
                   "training/pretrain.py", *flags]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
        return json.loads((output_dir / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]

    straight = launch(tmp_path / "straight")
    saved = json.loads((tmp_path / "straight" / "checkpoint-2" / "streaming_state.json").read_text())
    assert saved == {"batches": 2, "batch_size": 4, "num_workers": 2, "world_size": 2, "seed": 0, "num_shards": 4}
    shutil.copytree(tmp_path / "straight" / "checkpoint-2", tmp_path / "resumed" / "checkpoint-2")
    resumed = launch(tmp_path / "resumed")
    keys = ("loss", "grad_norm", "caption_loss", "tok_semseg@224_loss")
    steps = [{e["step"]: [e[k] for k in keys] for e in log if "loss" in e} for log in (straight, resumed)]
    assert sorted(steps[0]) == sorted(steps[1]) == [1, 2, 3]  # the resumed log starts with the checkpoint's
    assert steps[1][3] == pytest.approx(steps[0][3], rel=1e-6, abs=0)
    assert steps[0][2] != steps[0][3]
    weights = [load_file(str(tmp_path / run / "model.safetensors")) for run in ("straight", "resumed")]
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, rtol=0, atol=1e-6, msg=name)


def _job(value: int) -> tuple[int, int]:
    return value * value, gc.get_freeze_count()


def test_run_parallel_forks_with_the_parent_frozen_out_of_collections():
    results = run_parallel(_job, [(v,) for v in range(4)], 2)
    assert [square for square, _ in results] == [0, 1, 4, 9]  # in the order of the jobs
    assert all(frozen > 1000 for _, frozen in results)  # the parent's objects: not scanned by the workers' collections
    assert gc.get_freeze_count() == 0  # and back in the parent's
