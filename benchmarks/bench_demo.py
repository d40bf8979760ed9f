"""Where the end-to-end demo (`examples/demo.py`) spends its training time, and three per-step costs it cut.

    PYTHONPATH=. python benchmarks/bench_demo.py [--rows 2000] [--steps 50] [--train_steps 10] [--threads 2]

(a) Reading a batch of 32 pre-tokenised demo rows (64x64 RGB pixels, three 8x8 token grids, a caption and boxes)
    from an Arrow-backed `datasets.Dataset` in numpy format, against the demo's `InMemoryRows`.
(b) One AdamW step over the parameters of the demo's 4M, foreach against fused.
(c) One training step of the demo's 4M (collator, forward, backward, fused AdamW) and of each VQ-VAE, at the quick
    run's shapes: CPU time (all threads; unlike wall time it barely moves when other jobs share the machine), FLOPs
    (`torch.utils.flop_counter`) and FLOPs per CPU second, next to `torch.mm`'s at the 4M's most common matmul
    shape. A rate close to the matmul's says the step is FLOP-bound (fewer FLOPs, not less overhead, make it
    faster); a much lower one says it is bound by per-op overhead.
(d) The 4M's forward + backward on collated demo batches with `skip_padding_slots` off (every decoder slot
    computed) and on (the padding slots' token-wise work skipped), losses checked equal.
(e) The optimizer step of the demo's 4M: fused AdamW against `MuonAdamW` (the demo's groups); then MuonAdamW in two
    forked processes at once, every update on each rank against a share per rank (`split_across_ranks`, the shares
    summed by gloo or in shared memory), for the quick run's 4M and for the `--long` preset's (width 256, 6 + 6
    layers).
(f) A whole 4M training step (collate, forward, backward, optimizer; wall ms, median) in one process with one and
    with two torch threads, against two forked processes of one thread (`run_forked_ranks`, DDP over gloo) that
    each take half of the batch.
(g) The sum of the demo 4M's gradients over two forked processes: gloo's all-reduce against `SharedMemorySum`.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fourm_hf import FourMForMaskedModeling, FourMVQVAE
from fourm_hf.cli import HelpFormatter
from fourm_hf.data.masking import FourMMaskingCollator, MaskingMixture, SeededMaskingDataset
from fourm_hf.data.synthetic import generate_scenes
from fourm_hf.distributed import run_forked_ranks
from fourm_hf.shared_memory import all_reduce_sum_

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def load_demo():
    spec = importlib.util.spec_from_file_location("fourm_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fourm_demo"] = module
    spec.loader.exec_module(module)
    return module


def demo_rows(num_rows: int, seed: int = 0) -> datasets.Dataset:
    """Random rows with the column types and shapes `pretokenize` gives the demo (one crop per scene)."""
    rng = np.random.default_rng(seed)
    ids = datasets.List(datasets.Value("int32"))
    features = {"crop_settings": datasets.Array2D((1, 5), "int32"), "rgb@64": datasets.Array4D((1, 64, 64, 3), "uint8")}
    columns = {
        "crop_settings": np.zeros((num_rows, 1, 5), dtype=np.int32),
        "rgb@64": rng.integers(0, 256, (num_rows, 1, 64, 64, 3), dtype=np.uint8),
    }
    for name in ("tok_rgb@64", "tok_depth@64", "tok_semseg@64"):
        features[name] = datasets.Array2D((1, 64), "int32")
        columns[name] = rng.integers(0, 256, (num_rows, 1, 64), dtype=np.int32)
    features["caption"], features["det"] = ids, datasets.List(ids)
    columns["caption"] = [rng.integers(0, 4412, int(rng.integers(10, 40))).tolist() for _ in range(num_rows)]
    columns["det"] = [
        [rng.integers(0, 4412, 6).tolist() for _ in range(int(rng.integers(1, 5)))] for _ in range(num_rows)
    ]  # one id list per box
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def demo_text_tokenizer(demo, settings, num_scenes: int = 300):
    """The demo's text tokenizer (its reserved-id layout, WordPiece on the captions and box labels of a few scenes)."""
    scenes = list(generate_scenes(0, num_scenes, settings.seed, settings.image_size, settings.image_size))
    return demo.train_text_tokenizer([s["caption"] for s in scenes], [s["det"] for s in scenes], settings.image_size)


def demo_training_rows(demo, num_rows: int, tokenizer, seed: int = 0):
    """`demo_rows` as `InMemoryRows`, with caption and box id sequences of the demo's lengths and vocabulary (8-21
    caption tokens from the learned word pieces; one to three boxes of four value tokens and a class)."""
    rng = np.random.default_rng(seed)
    rows = demo.InMemoryRows.from_dataset(demo_rows(num_rows, seed).with_format("numpy"))
    vocab = tokenizer.get_vocab()
    values = [vocab[f"v{axis}={n}"] for axis in range(4) for n in range(tokenizer.num_value_bins)]
    last_value = max(values)
    words = [i for t, i in vocab.items() if i > last_value and t not in demo.SHAPES]  # the learned pieces
    rows.columns["caption"] = [rng.choice(words, rng.integers(8, 22)).astype(np.int32) for _ in range(num_rows)]
    rows.columns["det"] = [rng.choice(values, 5 * rng.integers(1, 4)).astype(np.int32) for _ in range(num_rows)]
    return rows


def training_step(model, optimizer, make_batch, loss_of):
    """A step function timing its parts: returns `{part: CPU seconds}` of one call."""

    def step(index: int) -> dict[str, float]:
        start = time.process_time()
        batch = make_batch(index)
        collated = time.process_time()
        loss = loss_of(model, batch)
        forward = time.process_time()
        loss.backward()
        backward = time.process_time()
        optimizer.step()
        optimizer.zero_grad()
        end = time.process_time()
        return {"collate": collated - start, "forward": forward - collated, "backward": backward - forward,
                "optimizer": end - backward}  # fmt: skip

    return step


def step_report(name: str, step, make_batch, model, loss_of, steps: int) -> str:
    """A results row: CPU ms per part, GFLOP of forward + backward, GFLOP per CPU second over the whole step."""
    step(0)  # warm-up
    parts = [step(i + 1) for i in range(steps)]
    mean = {k: sum(p[k] for p in parts) / steps for k in parts[0]}
    counter = FlopCounterMode(display=False)
    with counter:
        loss_of(model, make_batch(0)).backward()
    model.zero_grad()
    gflop = counter.get_total_flops() / 1e9
    total = sum(mean.values())
    cells = " | ".join(f"{mean[k] * 1e3:.0f}" for k in ("collate", "forward", "backward", "optimizer"))
    return f"| {name} | {cells} | **{total * 1e3:.0f}** | {gflop:.1f} | {gflop / total:.0f} |"


def matmul_rate(rows: int, inner: int, cols: int, repeats: int = 50) -> float:
    """GFLOP per CPU second of `torch.mm` at one shape."""
    a, b = torch.randn(rows, inner), torch.randn(inner, cols)
    return 2 * rows * inner * cols / seconds_per_call(lambda: a @ b, repeats, clock=time.process_time) / 1e9


def training_steps_table(demo, args, tokenizer) -> None:
    settings = demo.DemoSettings()
    names = demo.register_demo_modalities(settings)
    torch.manual_seed(0)
    model = FourMForMaskedModeling(demo.fourm_config(settings, names, len(tokenizer), max_length=32))
    collator = FourMMaskingCollator(MaskingMixture.from_dict(demo.demo_mixture(settings, names)), config=model.config)
    dataset = SeededMaskingDataset(demo_training_rows(demo, 512, tokenizer), seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05, fused=True)

    def fourm_batch(index: int):
        picks = np.random.default_rng(index).integers(0, len(dataset), settings.batch_size)
        return collator([dataset[int(i)] for i in picks])

    def fourm_loss(model, batch):
        return model(**batch).loss

    print(f"\n| (c) one training step (CPU ms, mean of {args.train_steps}) | collate | forward | backward | optimizer "
          "| step | GFLOP (fwd + bwd) | GFLOP per CPU s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    step = training_step(model, optimizer, fourm_batch, fourm_loss)
    print(step_report(f"4M, batch {settings.batch_size}", step, fourm_batch, model, fourm_loss, args.train_steps))
    for modality in demo.IMAGE_MODALITIES:
        vq = FourMVQVAE(demo.vqvae_config(modality, settings))
        size, batch = settings.image_size, settings.tokenizer_batch_size
        generator = torch.Generator().manual_seed(0)
        if modality == "semseg":
            pixels = torch.randint(0, demo.NUM_CLASSES + 1, (batch, size, size), generator=generator)
        else:
            pixels = torch.randn(batch, 3 if modality == "rgb" else 1, size, size, generator=generator)
        vq_optimizer = torch.optim.AdamW(vq.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.05, fused=True)

        def vq_loss(model, pixels):
            output = model(pixels)
            return output.reconstruction.float().square().mean() + output.quantization_loss

        step = training_step(vq, vq_optimizer, lambda index: pixels, vq_loss)
        row = step_report(f"{modality} VQ-VAE, batch {batch}", step, lambda index: pixels, vq, vq_loss, args.train_steps)
        print(row)
    decoder_padding_table(model, collator, dataset, settings, args.train_steps)
    tokens = settings.batch_size * settings.target_tokens
    print(f"\n`torch.mm` ({tokens} x {settings.hidden_size}) @ ({settings.hidden_size} x {3 * settings.hidden_size}): "
          f"{matmul_rate(tokens, settings.hidden_size, 3 * settings.hidden_size):.0f} GFLOP per CPU s")  # fmt: skip


def decoder_padding_table(model, collator, dataset, settings, steps: int) -> None:
    """(d) The 4M's forward + backward on collated demo batches with `skip_padding_slots` off (every decoder slot
    computed) and on (padding slots' token-wise work skipped), losses checked equal."""
    rng, seconds, valid_share = np.random.default_rng(0), {False: [], True: []}, []
    setting = model.config.skip_padding_slots
    for _ in range(steps + 1):
        batch = collator([dataset[int(i)] for i in rng.integers(0, len(dataset), settings.batch_size)])
        losses = {}
        for skip in (False, True):
            model.config.skip_padding_slots = skip
            start = time.process_time()
            out = model(**batch, return_logits=True)
            out.loss.backward()
            seconds[skip].append(time.process_time() - start)
            losses[skip] = out.loss.detach()
            model.zero_grad()
        torch.testing.assert_close(losses[True], losses[False], atol=1e-5, rtol=1e-5)
        targets = sum(ids.numel() for ids in out.target_ids.values())
        valid_share.append(targets / (settings.batch_size * batch["num_decoder_tokens"]))
    model.config.skip_padding_slots = setting
    padded, packed = (statistics.mean(seconds[skip][1:]) * 1e3 for skip in (False, True))
    print(f"\n| (d) 4M forward + backward, batch {settings.batch_size} (CPU ms, mean of {steps}) | valid decoder slots "
          "| every slot computed | padding skipped | ratio |\n|---|---|---|---|---|")  # fmt: skip
    print(f"| {settings.target_tokens} decoder slots | {statistics.mean(valid_share):.0%} | {padded:.0f} | "
          f"{packed:.0f} | **{padded / packed:.2f}x** |")


def demo_optimizer(model, settings, split_across_ranks: bool = False):
    """The optimizer the demo trains its 4M with (`pretrain.py --muon`), optionally split across DDP ranks."""
    from training.pretrain import muon_optimizer  # importable once `load_demo` put the repository on the path

    return muon_optimizer(
        model, 0.05, lr=1e-4, betas=(0.9, 0.95), update_rms=settings.muon_update_rms,
        split_across_ranks=split_across_ranks,
    )  # fmt: skip


def optimizer_table(demo, model, settings, steps: int) -> None:
    """(e) fused AdamW against MuonAdamW, ms per step with random gradients; then MuonAdamW in two processes of one
    thread at once (as the demo's DDP ranks run it), each computing every update or a share of them, the shares
    summed through gloo or through shared memory (the slower rank reported)."""
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    adamw = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05, fused=True)
    optimizers = {"adamw": adamw, "muon": demo_optimizer(model, settings)}
    times = {name: seconds_per_call(optimizer.step, steps) for name, optimizer in optimizers.items()}

    def pair_step(split: bool, shared_memory: bool = True) -> float:
        def rank_step(rank: int) -> float:
            torch.distributed.init_process_group("gloo")  # the forked ranks hold the same gradients
            return seconds_per_call(demo_optimizer(model, settings, split_across_ranks=split).step, steps)

        return max(run_forked_ranks(rank_step, 2, shared_memory=shared_memory))

    every, gloo, shared = pair_step(False), pair_step(True, shared_memory=False), pair_step(True)
    model.zero_grad(set_to_none=True)
    size = f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters"
    print(f"\n| (e) optimizer step, 4M of {size} | fused AdamW | MuonAdamW | ratio |\n|---|---|---|---|")
    print(f"| ms per step | {times['adamw'] * 1e3:.1f} | {times['muon'] * 1e3:.1f} | "
          f"{times['muon'] / times['adamw']:.0f}x |")  # fmt: skip
    print("\n| MuonAdamW in two processes of one thread at once | every update on each rank | a share per rank, "
          "summed by gloo | a share per rank, summed in shared memory (the demo) | ratio |\n|---|---|---|---|---|")
    print(f"| ms per step | {every * 1e3:.1f} | {gloo * 1e3:.1f} | {shared * 1e3:.1f} | **{every / shared:.2f}x** |")


def all_reduce_table(num_elements: int, repeats: int) -> None:
    """(g) The sum of a float32 tensor of the demo 4M's gradients over two forked processes of one thread: gloo's
    all-reduce (loopback sockets) against the ranks' `SharedMemorySum` (median ms of the slower rank)."""

    def rank_times(rank: int) -> dict[str, float]:
        torch.distributed.init_process_group("gloo")
        tensor = torch.randn(num_elements)
        calls = {"gloo": lambda: torch.distributed.all_reduce(tensor), "shared": lambda: all_reduce_sum_(tensor)}
        medians = {}
        for name, call in calls.items():
            samples = []
            for _ in range(repeats):
                torch.distributed.barrier()
                start = time.perf_counter()
                call()
                samples.append(time.perf_counter() - start)
            medians[name] = statistics.median(samples)
        return medians

    ranks = run_forked_ranks(rank_times, 2)
    gloo, shared = (max(r[name] for r in ranks) for name in ("gloo", "shared"))
    print(f"\n| (g) sum of {num_elements / 1e6:.2f}M float32 over two processes (median ms) | gloo all-reduce | "
          "shared memory (`SharedMemorySum`) | ratio |\n|---|---|---|---|")
    print(f"| ms per sum | {gloo * 1e3:.2f} | {shared * 1e3:.2f} | **{gloo / shared:.1f}x** |")


def processes_table(demo, tokenizer, steps: int) -> None:
    """(f) wall ms per 4M training step: one process with one / two threads, two processes of one thread (DDP)."""
    settings = demo.DemoSettings()
    names = demo.register_demo_modalities(settings)

    def median_step_ms(rank: int = 0, world: int = 1) -> float:
        torch.manual_seed(0)
        model = FourMForMaskedModeling(demo.fourm_config(settings, names, len(tokenizer), max_length=32))
        collator = FourMMaskingCollator(MaskingMixture.from_dict(demo.demo_mixture(settings, names)), config=model.config)
        dataset = SeededMaskingDataset(demo_training_rows(demo, 512, tokenizer), seed=0)
        optimizer = demo_optimizer(model, settings)
        if world > 1:
            torch.distributed.init_process_group("gloo")
            model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)  # as Trainer
        rng, seconds = np.random.default_rng(rank), []
        for _ in range(steps + 3):
            start = time.perf_counter()
            batch = collator([dataset[int(i)] for i in rng.integers(0, len(dataset), settings.batch_size // world)])
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            seconds.append(time.perf_counter() - start)
        return statistics.median(seconds[3:]) * 1e3

    threads = torch.get_num_threads()
    rows = {}
    for count in (1, 2):
        torch.set_num_threads(count)
        rows[f"one process, {count} thread{'s' * (count > 1)}"] = median_step_ms()
    torch.set_num_threads(threads)
    rows["two processes of one thread (DDP)"] = max(run_forked_ranks(lambda rank: median_step_ms(rank, 2), 2))
    best = rows["one process, 2 threads"]
    print(f"\n| (f) 4M training step, batch {settings.batch_size} (wall ms, median of {steps}) | ms | against two threads |")
    print("|---|---|---|")
    for name, ms in rows.items():
        print(f"| {name} | {ms:.0f} | {best / ms:.2f}x |")


def seconds_per_call(function, repeats: int, clock=time.perf_counter) -> float:
    function()  # warm-up
    start = clock()
    for _ in range(repeats):
        function()
    return (clock() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--rows", type=int, default=2000, help="pre-tokenised rows read in (a)")
    parser.add_argument("--steps", type=int, default=50, help="timed batches of (a) and optimizer steps of (b)")
    parser.add_argument("--train_steps", type=int, default=10, help="timed training steps per model in (c)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (None: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    demo = load_demo()
    datasets.disable_progress_bars()

    arrow = demo_rows(args.rows).with_format("numpy")
    memory = demo.InMemoryRows.from_dataset(arrow)
    rng = np.random.default_rng(0)

    def batch(rows):
        return lambda: [rows[int(i)] for i in rng.integers(0, args.rows, 32)]

    arrow_s, memory_s = seconds_per_call(batch(arrow), args.steps), seconds_per_call(batch(memory), args.steps)
    print("| (a) 32 rows | Arrow (numpy format) | InMemoryRows | ratio |\n|---|---|---|---|")
    print(f"| ms per batch | {arrow_s * 1e3:.2f} | {memory_s * 1e3:.3f} | **{arrow_s / memory_s:.0f}x** |")

    settings = demo.DemoSettings()
    names = demo.register_demo_modalities(settings)
    tokenizer = demo_text_tokenizer(demo, settings)
    model = FourMForMaskedModeling(demo.fourm_config(settings, names, len(tokenizer), max_length=32))
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    times = {}
    for variant in ("foreach", "fused"):
        optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05, **{variant: True})
        times[variant] = seconds_per_call(optimizer.step, args.steps)
    print(f"\n| (b) AdamW step, {sum(p.numel() for p in params) / 1e6:.2f}M parameters | foreach | fused | ratio |")
    print("|---|---|---|---|")
    print(
        f"| ms per step | {times['foreach'] * 1e3:.1f} | {times['fused'] * 1e3:.1f} | "
        f"**{times['foreach'] / times['fused']:.1f}x** |"
    )
    training_steps_table(demo, args, tokenizer)
    optimizer_table(demo, model, settings, args.steps)
    all_reduce_table(sum(p.numel() for p in params), 10 * args.steps)
    long = demo.PRESETS["long"]
    long_model = FourMForMaskedModeling(
        demo.fourm_config(long, demo.register_demo_modalities(long), len(tokenizer), max_length=32)
    )
    optimizer_table(demo, long_model, long, 5)
    processes_table(demo, tokenizer, args.train_steps)
    print(
        f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, {demo._cpu_model()} (torch kernels: "
        f"{torch.backends.cpu.get_cpu_capability()}), load average {demo._load_average()}"
    )


if __name__ == "__main__":
    main()
