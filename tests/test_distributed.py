"""Training over two processes (CPU, gloo, `accelerate launch` of the real scripts), DDP and FSDP2, against one
process on the same global batch and seed; checkpoints that resume on another world size; the export of a sharded
checkpoint to one `model.safetensors`.

The 4M loss is a mean over each batch's target tokens, so N data-parallel ranks of batch b compute the gradient of
one process accumulating N micro-batches of b (the official recipe has the same property), not that of one batch of
N x b: the one-process baselines use `gradient_accumulation_steps` = 2. The VQ-VAE loss is a per-pixel mean over
equal halves, so its baseline is one batch of 2 x b.
"""

import gc
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from PIL import Image
from transformers import HfArgumentParser, TrainerState

from conftest import TINY_DECODER, TINY_VIT, imported_script
from distributed_runner import record_masking_seeds
from fourm_hf import FourMConfig, FourMForMaskedModeling, register_modality
from fourm_hf.data.masking import FourMMaskingCollator
from fourm_hf.distributed import (
    DeferredCollator, EpochCallback, collate_during_all_reduce, export_checkpoint, run_forked_ranks, sharded_checkpoint_dir,
)
from fourm_hf.shared_memory import SharedMemorySum
from training.pretrain import FourMPretrainingArguments, run_pretraining

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "tests" / "distributed_runner.py"
MODALITIES = ("tok_semseg@224", "tok_dinov2_global", "caption")
DDP = ["--multi_gpu"]  # without GPUs: CPU processes over gloo (`--cpu` would start a single process)
FSDP = ["--use_fsdp", "--fsdp_version", "2", "--fsdp_transformer_layer_cls_to_wrap"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(mode: list[str], script: Path, dump: Path, argv: list[str]) -> list[dict]:
    """`accelerate launch --num_processes 2` of `script` through the runner; returns each rank's record."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(free_port()), *mode, str(RUNNER), str(script), str(dump),
        *argv,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return [json.loads((dump / f"rank{rank}.json").read_text()) for rank in range(2)]


def step_logs(log_history: list[dict]) -> list[dict]:
    return [entry for entry in log_history if "loss" in entry]


# ---------------------------------------------------------------------------------------------------------------------
# Pre-training


@pytest.fixture(scope="module")
def pretrain_files(tmp_path_factory) -> Path:
    """16 pre-tokenised samples, a 2-component mixture and a tiny FourMConfig, on disk as the script reads them."""
    root = tmp_path_factory.mktemp("pretrain")
    rng = np.random.default_rng(0)
    rows = {
        "tok_semseg@224": [rng.integers(0, 4096, 196) for _ in range(16)],
        "tok_dinov2_global": [rng.integers(0, 8192, 16) for _ in range(16)],
        "caption": [rng.integers(300, 3000, int(rng.integers(5, 30))).tolist() + [3] for _ in range(16)],
    }
    datasets.Dataset.from_dict(rows).save_to_disk(str(root / "data"))
    (root / "mixture.json").write_text(json.dumps({
        "input_tokens": [16, 24], "target_tokens": 24,
        "alphas_mixture": {m: {"input_alphas": [1.0, 0.2], "target_alphas": [1.0, 0.5]} for m in MODALITIES},
    }))
    FourMConfig(
        hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=4,
        encoder_modalities=list(MODALITIES), decoder_modalities=list(MODALITIES),
    ).save_pretrained(root / "config")
    return root


def pretrain_argv(files: Path, output_dir: Path, *extra: str) -> list[str]:
    """6 optimizer steps of global batch 8 (per-process batch 4), a checkpoint every 3 steps."""
    tokens_per_step = (24 + 24) * 8
    return [
        "--train_dataset", str(files / "data"), "--config_name", str(files / "config"),
        "--mixture", str(files / "mixture.json"), "--output_dir", str(output_dir), "--per_device_train_batch_size", "4",
        "--base_learning_rate", "1.0", "--total_tokens", str(6 * tokens_per_step),
        "--warmup_tokens", str(2 * tokens_per_step), "--logging_steps", "1", "--save_steps", "3", "--seed", "0",
        "--disable_tqdm", "true", "--report_to", "none", "--dataloader_num_workers", "0", *extra,
    ]


def one_process(argv: list[str]):
    """`training/pretrain.py` in this process (CPU), returning its trainer."""
    (args,) = HfArgumentParser(FourMPretrainingArguments).parse_args_into_dataclasses(argv + ["--use_cpu"])
    return run_pretraining(args)


@pytest.fixture(scope="module")
def pretraining_runs(pretrain_files) -> dict:
    """One process accumulating 2 micro-batches, DDP and FSDP2 over two processes: 6 steps each, checkpoints at 3
    and 6."""
    root = pretrain_files
    seen: list[list[int]] = []
    collate = FourMMaskingCollator.__call__
    try:
        record_masking_seeds(seen)
        baseline = one_process(pretrain_argv(root, root / "one", "--gradient_accumulation_steps", "2"))
    finally:
        FourMMaskingCollator.__call__ = collate
    script = ROOT / "training" / "pretrain.py"
    ddp = launch(DDP, script, root / "ddp_dump", pretrain_argv(root, root / "ddp"))
    fsdp = launch(FSDP + ["FourMEncoderLayer,FourMDecoderLayer"], script, root / "fsdp_dump", pretrain_argv(root, root / "fsdp"))
    return {"root": root, "one": baseline, "one_seeds": seen, "ddp": ddp, "fsdp": fsdp}


LOGGED = ("loss", *(f"{name}_loss" for name in MODALITIES))


def assert_same_steps(logs: list[dict], expected: list[dict], steps: range) -> None:
    """The loss and every per-modality loss of `steps` agree (float reduction tolerance); a resumed run's history
    also holds the entries of the steps before its checkpoint."""
    by_step = {entry["step"]: entry for entry in logs if entry["step"] >= steps.start}
    assert sorted(by_step) == list(steps), f"logged steps {sorted(by_step)}"
    reference = {entry["step"]: entry for entry in expected}
    for step in steps:
        for key in LOGGED:
            assert by_step[step][key] == pytest.approx(reference[step][key], rel=1e-5, abs=0), (step, key)


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_match_one_process(pretraining_runs, mode):
    runs = pretraining_runs
    expected = step_logs(runs["one"].state.log_history)
    assert [entry["step"] for entry in expected] == [1, 2, 3, 4, 5, 6]
    assert len({entry["loss"] for entry in expected}) == 6  # the steps saw different data and masks
    rank0, rank1 = runs[mode]
    assert rank0["world_size"] == rank1["world_size"] == 2
    # one log entry per step, the same reduced values on both ranks (each modality's loss averaged over ranks)
    assert [entry["step"] for entry in step_logs(rank0["log_history"])] == [1, 2, 3, 4, 5, 6]  # logged once a step
    assert_same_steps(step_logs(rank0["log_history"]), expected, range(1, 7))
    assert step_logs(rank1["log_history"]) == step_logs(rank0["log_history"])
    # every sample masked once per epoch over both ranks, with the seeds (seed, epoch, index) of one process
    seeds = [tuple(seed) for rank in (rank0, rank1) for seed in rank["masking_seeds"]]
    assert sorted(seeds) == sorted(map(tuple, runs["one_seeds"])) == [(0, e, i) for e in range(3) for i in range(16)]
    assert not {tuple(s) for s in rank0["masking_seeds"]} & {tuple(s) for s in rank1["masking_seeds"]}
    final = {name: p.detach() for name, p in runs["one"].model.named_parameters()}
    for rank in range(2):
        state = load_file(str(runs["root"] / f"{mode}_dump" / f"rank{rank}.safetensors"))
        for name, value in final.items():
            # Adam (lr 0.03 here) turns float-rounding differences of near-zero gradients into ~1e-5 weight changes
            torch.testing.assert_close(state[name], value, rtol=0, atol=5e-5, msg=f"rank {rank}: {name}")


def forked_pretraining(root: Path, output_dir: Path, *extra: str) -> list[dict]:
    """`training/pretrain.py` as two forked ranks (`run_forked_ranks`); each rank's world size, threads, log history,
    final weights and how many batches its gradient hook collated."""

    def train(rank: int) -> dict:
        collated_in_hook, shared_sums = [], []
        collate_latest = DeferredCollator.collate_latest
        DeferredCollator.collate_latest = lambda self: collated_in_hook.append(collate_latest(self)) or collated_in_hook[-1]
        all_reduce_ = SharedMemorySum.all_reduce_
        SharedMemorySum.all_reduce_ = lambda self, *a, **k: shared_sums.append(1) or all_reduce_(self, *a, **k)
        (args,) = HfArgumentParser(FourMPretrainingArguments).parse_args_into_dataclasses(
            pretrain_argv(root, output_dir) + ["--use_cpu", "--save_strategy", "no", *extra]
        )
        trainer = run_pretraining(args)
        state = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
        return {"world_size": args.world_size, "threads": torch.get_num_threads(), "log_history": trainer.state.log_history,
                "state": state, "collated_in_hook": sum(collated_in_hook), "shared_sums": len(shared_sums)}  # fmt: skip

    return run_forked_ranks(train, 2)


def test_forked_ranks_train_as_accelerate_launch_does(pretraining_runs, tmp_path):
    """`run_forked_ranks`: two forked processes of this interpreter form the DDP run of `accelerate launch`, with no
    launcher: the same per-step losses as one process accumulating the two micro-batches, and the same weights."""
    runs = pretraining_runs
    rank0, rank1 = forked_pretraining(runs["root"], tmp_path / "forked")
    assert rank0["world_size"] == rank1["world_size"] == 2 and rank0["threads"] == rank1["threads"] == 1
    assert_same_steps(step_logs(rank0["log_history"]), step_logs(runs["one"].state.log_history), range(1, 7))
    for name, value in runs["one"].model.named_parameters():
        for rank in (rank0, rank1):
            torch.testing.assert_close(rank["state"][name], value.detach(), rtol=0, atol=5e-5, msg=name)


def test_collation_during_the_all_reduce_changes_nothing(pretraining_runs, tmp_path):
    """DDP on CPU processes collates each next batch inside the gradient hook of the step before, with the losses and
    weights of collating each batch at the start of its step, to the bit. Here 3 epochs of 2 batches per rank: the
    second batch of each epoch is collated in the hook (an epoch's first batch is fetched after the last step of the
    epoch before). The hook sums the gradients in the ranks' shared memory (a sum per bucket), the direct run through
    DDP's own gloo all-reduce: the same values."""
    root = pretraining_runs["root"]
    deferred = forked_pretraining(root, tmp_path / "deferred")
    direct = forked_pretraining(root, tmp_path / "direct", "--collate_during_all_reduce", "false")
    for rank in range(2):
        assert deferred[rank]["collated_in_hook"] == 3 and direct[rank]["collated_in_hook"] == 0
        assert deferred[rank]["shared_sums"] >= 6 and direct[rank]["shared_sums"] == 0  # each step's buckets
        assert step_logs(deferred[rank]["log_history"]) == step_logs(direct[rank]["log_history"])
        for name, value in direct[rank]["state"].items():
            assert torch.equal(deferred[rank]["state"][name], value), name


def test_deferred_batches_collate_once_in_order_and_keep_errors():
    calls = []

    def collate(samples):
        calls.append(list(samples))
        if "bad" in samples:
            raise ValueError("caption: expected token ids, got 'bad'")
        return {"ids": torch.tensor(samples), "count": len(samples)}

    collator = DeferredCollator(collate)
    first = collator([1, 2])
    assert not first.collated and calls == []  # fetching gathers the samples only
    assert "ids" in first and len(first) == 2 and calls == [[1, 2]]
    assert torch.equal(first["ids"], torch.tensor([1, 2])) and dict(**first)["count"] == 2 and calls == [[1, 2]]
    assert collator.collate_latest() is False  # the latest batch is collated already
    second = collator([3])
    assert collator.collate_latest() is True and calls[-1] == [3] and second.collated
    assert sorted(second.keys()) == ["count", "ids"] and len(calls) == 2
    skipped = collator([4])  # fetched, then dropped unused (a resumed epoch's skipped batches)
    del skipped
    assert collator.collate_latest() is False and len(calls) == 2
    failing = collator(["bad"])
    assert collator.collate_latest() is True  # the error waits for the batch's use
    with pytest.raises(ValueError, match="caption: expected token ids, got 'bad'"):
        failing["ids"]
    with pytest.raises(TypeError, match="DeferredCollator wraps a collator"):
        DeferredCollator(None)
    assert collate_during_all_reduce(torch.nn.Linear(2, 2), collator) is False  # not DDP: no hook


def _all_reduce_rank(rank: int) -> dict:
    torch.distributed.init_process_group("gloo")
    total = torch.tensor([rank + 1.0])
    torch.distributed.all_reduce(total)
    return {"rank": int(os.environ["RANK"]), "world": torch.distributed.get_world_size(), "sum": total.item()}


def _frozen_objects(rank: int) -> int:
    return gc.get_freeze_count()


def _failing_rank(rank: int) -> None:
    torch.distributed.init_process_group("gloo")
    if rank == 1:
        raise ValueError("rank one cannot go on")
    torch.distributed.all_reduce(torch.ones(1))  # waits for rank 1 forever: the parent must stop it


def test_forked_ranks_form_one_process_group_and_report_failures():
    results = run_forked_ranks(_all_reduce_rank, 3)
    assert results == [{"rank": r, "world": 3, "sum": 6.0} for r in range(3)]
    # the parent's objects are out of the ranks' garbage collections, and back in the parent's afterwards
    assert gc.get_freeze_count() == 0 and min(run_forked_ranks(_frozen_objects, 2)) > 1000
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError, match=r"rank 1 of 2 failed:(.|\n)*ValueError: rank one cannot go on"):
        run_forked_ranks(_failing_rank, 2)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="num_processes must be a positive int"):
            run_forked_ranks(_all_reduce_rank, bad)
    with pytest.raises(ValueError, match="threads_per_process must be a positive int"):
        run_forked_ranks(_all_reduce_rank, 2, threads_per_process=0)


def test_sharded_checkpoints_resume_on_any_world_size(pretraining_runs):
    runs, root = pretraining_runs, pretraining_runs["root"]
    expected = step_logs(runs["one"].state.log_history)
    assert sharded_checkpoint_dir(root / "fsdp" / "checkpoint-3").is_dir()
    # 2 -> 1: one process (accumulating 2 micro-batches) continues the FSDP run
    argv = pretrain_argv(root, root / "two_to_one", "--gradient_accumulation_steps", "2")
    shutil.copytree(root / "fsdp" / "checkpoint-3", root / "two_to_one" / "checkpoint-3")
    resumed = one_process(argv)
    assert_same_steps(step_logs(resumed.state.log_history), expected, range(4, 7))
    # 2 -> 2 and 1 -> 2: FSDP over two processes continues the FSDP run and the one-process run
    wrap = FSDP + ["FourMEncoderLayer,FourMDecoderLayer"]
    script = ROOT / "training" / "pretrain.py"
    for source, name in (("fsdp", "two_to_two"), ("one", "one_to_two")):
        shutil.copytree(root / source / "checkpoint-3", root / name / "checkpoint-3")
        rank0, _ = launch(wrap, script, root / f"{name}_dump", pretrain_argv(root, root / name))
        logs = step_logs(rank0["log_history"])
        assert_same_steps(logs, expected, range(4, 7))
        if source == "fsdp":  # the same world size resumes exactly as the run went on
            fsdp = {e["step"]: e["loss"] for e in step_logs(runs["fsdp"][0]["log_history"])}
            resumed_losses = [e["loss"] for e in logs if e["step"] > 3]
            assert resumed_losses == pytest.approx([fsdp[s] for s in (4, 5, 6)], rel=1e-6, abs=0)


def test_sharded_checkpoint_exports_to_one_safetensors_file(pretraining_runs, tmp_path):
    root = pretraining_runs["root"]
    gathered = load_file(str(root / "fsdp" / "model.safetensors"))  # the FSDP run's final weights, gathered live
    with imported_script(ROOT / "training" / "export_checkpoint.py", "export_checkpoint_script") as module:
        module.main([str(root / "fsdp" / "checkpoint-6"), str(tmp_path / "exported")])
    exported = load_file(str(tmp_path / "exported" / "model.safetensors"))
    assert exported.keys() == gathered.keys()
    assert all(torch.equal(exported[key], gathered[key]) for key in gathered)
    model = FourMForMaskedModeling.from_pretrained(tmp_path / "exported")
    assert all(torch.equal(value, gathered[key]) for key, value in model.state_dict().items())
    with pytest.raises(FileNotFoundError, match="holds no sharded model state"):
        export_checkpoint(tmp_path / "exported", tmp_path / "again", FourMForMaskedModeling)


# ---------------------------------------------------------------------------------------------------------------------
# VQ-VAE training: the codebook EMA and dead-code restarts


@pytest.fixture(scope="module")
def vq_files(tmp_path_factory) -> Path:
    """16 RGB gradients (40x36) saved with save_to_disk and a tiny VQ-VAE config (16 codes, restarts below 0.25)."""
    root = tmp_path_factory.mktemp("vq")
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 40, dtype=np.float32)[None, :, None]
    images = [
        Image.fromarray((np.broadcast_to(ramp, (36, 40, 3)) * rng.uniform(0, 1, (1, 1, 3))).astype(np.uint8))
        for _ in range(16)
    ]
    datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()})).save_to_disk(
        str(root / "data")
    )
    (root / "config.json").write_text(json.dumps({**TINY_VIT, **TINY_DECODER, "dead_code_threshold": 0.25}))
    return root


def vq_argv(files: Path, output_dir: Path, batch: int) -> list[str]:
    return [
        "--dataset", str(files / "data"), "--config", str(files / "config.json"), "--output_dir", str(output_dir),
        "--min_size", "32", "--max_size", "32", "--per_device_train_batch_size", str(batch), "--max_steps", "5",
        "--learning_rate", "1e-3", "--logging_steps", "1", "--save_strategy", "no", "--seed", "0",
        "--dataloader_num_workers", "0", "--report_to", "none", "--disable_tqdm", "true",
    ]


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_vq_codebook_stays_identical_across_ranks_and_matches_one_process(vq_files, mode):
    script = ROOT / "training" / "train_vq_model.py"
    with imported_script(script, "train_vq_model") as module:
        one = module.main(vq_argv(vq_files, vq_files / "one", 8) + ["--use_cpu"])
    expected = step_logs(one.state.log_history)
    wrap = DDP if mode == "ddp" else FSDP + ["FourMVQVAEViTLayer"]
    ranks = launch(wrap, script, vq_files / f"{mode}_dump", vq_argv(vq_files, vq_files / mode, 4))
    logs = step_logs(ranks[0]["log_history"])
    assert [e["step"] for e in logs] == [e["step"] for e in expected] == [1, 2, 3, 4, 5]
    assert [e["loss"] for e in logs] == pytest.approx([e["loss"] for e in expected], rel=1e-5, abs=0)
    states = [load_file(str(vq_files / f"{mode}_dump" / f"rank{rank}.safetensors")) for rank in range(2)]
    assert float(one.model.quantize.cluster_size.min()) < 0.25  # some codes were dead: restarts happened
    for name in ("quantize.codebook", "quantize.cluster_size"):
        assert torch.equal(states[0][name], states[1][name]), name  # bit-identical on both ranks
        torch.testing.assert_close(states[0][name], one.model.state_dict()[name], rtol=0, atol=1e-5, msg=name)
    for name, value in one.model.state_dict().items():
        torch.testing.assert_close(states[0][name], value, rtol=0, atol=5e-5, msg=name)


# ---------------------------------------------------------------------------------------------------------------------
# Fine-tuning


FINETUNE = ROOT / "training" / "finetune.py"


@pytest.fixture(scope="module")
def finetune_files(tmp_path_factory) -> Path:
    """16 random 40x40 images with 3-class segmentation maps whose first 2k columns (sample k) are ignored (255),
    and a tiny 4M model on `rgb@32`, on disk as the script reads them."""
    root = tmp_path_factory.mktemp("finetune")
    rng = np.random.default_rng(0)
    maps = rng.integers(0, 3, (16, 40, 40)).astype(np.uint8)
    for k, label_map in enumerate(maps):
        label_map[:, : 2 * k] = 255
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Image()})
    images = list(rng.integers(0, 256, (16, 40, 40, 3), dtype=np.uint8))
    datasets.Dataset.from_dict({"image": images, "label": list(maps)}, features=features).save_to_disk(
        str(root / "data")
    )
    register_modality("rgb@32", patch_size=8)  # saved with the model's config, which the launched processes read
    config = FourMConfig(
        hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=2,
        encoder_modalities=["rgb@32"], decoder_modalities=["caption"],
    )
    FourMForMaskedModeling(config).save_pretrained(root / "model")
    return root


def finetune_argv(files: Path, output_dir: Path, *extra: str) -> list[str]:
    """Semantic segmentation, 12 training samples in 6 steps of global batch 4 (2 epochs), 4 validation samples."""
    return [
        "--model_name_or_path", str(files / "model"), "--dataset_name", str(files / "data"),
        "--task", "semantic-segmentation", "--num_labels", "3", "--head_hidden_size", "8",
        "--output_dir", str(output_dir), "--do_train", "--do_eval", "--max_steps", "6", "--learning_rate", "1e-3",
        "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2", "--train_val_split", "0.25",
        "--logging_steps", "1", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true",
        "--seed", "0", "--dataloader_num_workers", "0", *extra,
    ]


@pytest.fixture(scope="module")
def finetune_one_process(finetune_files) -> Path:
    """The baseline: one process accumulating 2 micro-batches of 2."""
    argv = finetune_argv(finetune_files, finetune_files / "one", "--gradient_accumulation_steps", "2", "--use_cpu")
    with imported_script(FINETUNE, "finetune_one_process") as module:
        module.main(argv)
    return finetune_files / "one"


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_finetune_on_two_processes_matches_one_process(finetune_files, finetune_one_process, mode):
    """Per-sample flips (seed, epoch, index) and per-micro-batch losses: 2 ranks of batch 2 follow one process
    accumulating 2 micro-batches of 2, step by step (the segmentation loss is a mean over each micro-batch's
    non-ignored pixels, whose number differs between samples here). Before, flips were drawn per process: the run of
    the issue (FSDP2 on CPU processes dying with "Cannot copy out of meta tensor") trains, but differed from one
    process."""
    wrap = DDP if mode == "ddp" else FSDP + ["FourMEncoderLayer"]
    argv = finetune_argv(finetune_files, finetune_files / mode)
    ranks = launch(wrap, FINETUNE, finetune_files / f"{mode}_dump", argv)
    assert [rank["world_size"] for rank in ranks] == [2, 2]
    one = json.loads((finetune_one_process / "trainer_state.json").read_text())
    two = json.loads((finetune_files / mode / "trainer_state.json").read_text())
    expected, logs = step_logs(one["log_history"]), step_logs(two["log_history"])
    assert [e["step"] for e in logs] == [e["step"] for e in expected] == [1, 2, 3, 4, 5, 6]
    assert len({e["loss"] for e in expected}) == 6
    assert [e["loss"] for e in logs] == pytest.approx([e["loss"] for e in expected], rel=1e-5, abs=0)
    # evaluation: each rank one batch of 2, as the baseline's 2 batches; the gathered metrics agree on both ranks
    baseline = json.loads((finetune_one_process / "eval_results.json").read_text())
    assert ranks[0]["metrics"]["eval_loss"] == pytest.approx(baseline["eval_loss"], rel=1e-5, abs=0)
    assert ranks[0]["metrics"]["eval_mean_iou"] == ranks[1]["metrics"]["eval_mean_iou"]
    final = load_file(str(finetune_one_process / "model.safetensors"))
    state = load_file(str(finetune_files / mode / "model.safetensors"))  # gathered by rank 0 under FSDP
    assert state.keys() == final.keys()
    for name, value in final.items():
        torch.testing.assert_close(state[name], value, rtol=0, atol=5e-5, msg=name)


def test_finetune_resumed_mid_epoch_continues_with_the_same_flips(finetune_files, finetune_one_process):
    """A checkpoint after step 4 (epoch 1, one of its 3 steps done) resumes with the losses of the uninterrupted run:
    the resumed epoch is flipped with the draws of epoch 1, not of epoch 0."""
    one = json.loads((finetune_one_process / "trainer_state.json").read_text())
    expected = {e["step"]: e["loss"] for e in step_logs(one["log_history"])}
    extra = ("--gradient_accumulation_steps", "2", "--use_cpu", "--save_strategy", "steps", "--save_steps", "4")
    with imported_script(FINETUNE, "finetune_resume") as module:
        module.main(finetune_argv(finetune_files, finetune_files / "saved", *extra))
        shutil.copytree(finetune_files / "saved" / "checkpoint-4", finetune_files / "resumed" / "checkpoint-4")
        resume = ("--resume_from_checkpoint", str(finetune_files / "resumed" / "checkpoint-4"))
        module.main(finetune_argv(finetune_files, finetune_files / "resumed", *extra, *resume))
    resumed = json.loads((finetune_files / "resumed" / "trainer_state.json").read_text())
    losses = {e["step"]: e["loss"] for e in step_logs(resumed["log_history"]) if e["step"] > 4}
    assert sorted(losses) == [5, 6]
    assert [losses[5], losses[6]] == pytest.approx([expected[5], expected[6]], rel=1e-6, abs=0)


def test_finetune_flips_depend_on_seed_epoch_and_index_only(finetune_files):
    """A sample's flip is the same in any order, batch or DataLoader worker; image and label map flip together;
    about half the samples flip, differently each epoch; evaluation never flips."""
    with imported_script(FINETUNE, "finetune_flips") as module:
        (data_args,) = HfArgumentParser(module.DataTrainingArguments).parse_args_into_dataclasses(
            ["--dataset_name", str(finetune_files / "data")]
        )
        processor = module.build_image_processor(register_modality("rgb@32", patch_size=8), 32)
        transform = module.FineTuningTransform("semantic-segmentation", data_args, processor)
        data = datasets.load_from_disk(str(finetune_files / "data"))
        plain = transform(data[:16])  # the evaluation transform
        dataset = module.RandomFlipDataset(data, transform, seed=0)
        in_order = dataset.__getitems__(list(range(16)))
        flips = []
        for index, sample in enumerate(in_order):
            image, label = plain["pixel_values"][index], plain["labels"][index]
            flipped = not np.array_equal(sample["pixel_values"], image)
            expected = (image[:, :, ::-1], label[:, ::-1]) if flipped else (image, label)
            np.testing.assert_array_equal(sample["pixel_values"], expected[0])
            np.testing.assert_array_equal(sample["labels"], expected[1])
            flips.append(flipped)
        assert 4 <= sum(flips) <= 12 and list(dataset.flips(range(16))) == flips
        # another process: a fresh dataset read in reverse order, batches of 3, by 2 DataLoader workers
        other = module.RandomFlipDataset(data, transform, seed=0)
        order = list(range(15, -1, -1))
        loader = torch.utils.data.DataLoader(other, batch_size=3, sampler=order, num_workers=2, collate_fn=list)
        for index, sample in zip(order, [s for batch in loader for s in batch]):
            np.testing.assert_array_equal(sample["pixel_values"], in_order[index]["pixel_values"])
            np.testing.assert_array_equal(sample["labels"], in_order[index]["labels"])
        # the epoch, set by the callback at every epoch start (also mid-epoch after a resume), draws new flips
        callback = EpochCallback(dataset)
        callback.on_epoch_begin(None, TrainerState(epoch=1.5), None)
        assert dataset.epoch == 1
        later = list(dataset.flips(range(16)))
        assert later != flips and 4 <= sum(later) <= 12
        assert 0.45 < np.mean(dataset.flips(range(2000))) < 0.55


def test_slurm_script_is_valid_bash():
    script = ROOT / "training" / "slurm" / "pretrain.sbatch"
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    text = script.read_text()
    assert "#SBATCH --nodes=2" in text and "training/accelerate_configs/fsdp_multinode.yaml" in text
