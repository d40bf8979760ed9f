"""Throughput of the streaming loader (Parquet and tar shards) against the in-memory path, and what 4M-B needs.

    PYTHONPATH=. python benchmarks/bench_streaming.py [--samples 512] [--workers 2] [--batch-size 64] [--repeats 3]

Random pre-tokenised samples of the 4M-7 modalities in `pretokenize`'s output format (crop settings, per-crop token
grids, uint8 224 x 224 RGB crops, a caption, a det sequence per crop) are saved three ways: `save_to_disk` (the
in-memory path: memory-mapped Arrow, `SeededMaskingDataset`, a shuffled map-style DataLoader), Parquet shards and
tar shards (`ShardStream`, `StreamingDataLoader`). Each variant reads one epoch with the same DataLoader workers,
either masked by `FourMMaskingCollator` (the training loader) or only read (`collate_fn=list`); the variants are
interleaved and repeated, and the median is reported. Samples/s counts from the first batch on (worker start-up left
out); CPU time per sample counts the main process and the workers. The last lines give the samples/s one GPU consumes
in a 4M-B step at batch 128, estimated from FLOPs, and the CPU cores the masked stream needs to match it.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader

from fourm_hf import FourMConfig, FourMForMaskedModeling
from fourm_hf.cli import HelpFormatter
from fourm_hf.data.masking import FourMMaskingCollator, SeededMaskingDataset
from fourm_hf.data.streaming import ShardStream, StreamingDataLoader, write_shards
from fourm_hf.modalities import get_modality

MIXTURE = "4m7_all2all_rgb2all"
# The estimate of a 4M-B step: bf16 dense peak of one GPU (TFLOP/s, NVIDIA's data sheets) and an assumed utilisation.
GPU_PEAK_TFLOPS = {"A100": 312, "H100": 989}
ASSUMED_MFU = 0.4


def random_rows(num_samples: int, num_crops: int, modalities) -> datasets.Dataset:
    rng = np.random.default_rng(0)
    features, rows = {"crop_settings": datasets.Array2D((num_crops, 5), "int32")}, {"crop_settings": []}
    for name in modalities:
        info = get_modality(name)
        if info.kind == "pixels":
            features[name] = datasets.Array4D((num_crops, info.image_size, info.image_size, 3), "uint8")
        elif info.kind == "image_tokens":
            features[name] = datasets.Array2D((num_crops, info.num_tokens), "int32")
        elif info.family.boxes_follow_crops:
            features[name] = datasets.List(datasets.List(datasets.Value("int32")))
        else:
            features[name] = datasets.List(datasets.Value("int32"))
        rows[name] = []
    for _ in range(num_samples):
        rows["crop_settings"].append(np.tile([0, 0, 224, 224, 0], (num_crops, 1)))
        for name in modalities:
            info = get_modality(name)
            if info.kind == "pixels":
                value = rng.integers(0, 256, (num_crops, info.image_size, info.image_size, 3), dtype=np.uint8)
            elif info.kind == "image_tokens":
                value = rng.integers(0, info.vocab_size, (num_crops, info.num_tokens))
            elif info.family.boxes_follow_crops:
                value = [rng.integers(204, 4284, int(rng.integers(20, 80))).tolist() + [3] for _ in range(num_crops)]
            else:
                value = rng.integers(300, 30000, int(rng.integers(20, 80))).tolist() + [3]
            rows[name].append(value)
    return datasets.Dataset.from_dict(rows, features=datasets.Features(features))


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the DataLoader workers, once joined)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def batch_size_of(batch) -> int:
    return len(batch) if isinstance(batch, list) else len(next(iter(batch["modalities"].values()))["tensor"])


def measure(loader) -> tuple[float, float]:
    """Samples per second after the first batch, and CPU milliseconds per sample over the whole epoch (workers
    included: they are joined when the epoch ends), which the other jobs of a shared machine barely change."""
    cpu = cpu_seconds()
    iterator = iter(loader)
    total = batch_size_of(next(iterator))
    start, samples = time.perf_counter(), 0
    for batch in iterator:
        samples += batch_size_of(batch)
    rate = samples / (time.perf_counter() - start)
    del iterator  # joins the workers
    return rate, 1000 * (cpu_seconds() - cpu) / (total + samples)


def step_samples_per_second(gpu: str) -> float:
    """Samples one GPU trains on per second in a 4M-B step: 6 x non-embedding parameters x (128 + 128) tokens of FLOPs
    per sample, at `ASSUMED_MFU` of the GPU's bf16 peak."""
    with torch.device("meta"):
        model = FourMForMaskedModeling(
            FourMConfig(num_encoder_layers=12, num_decoder_layers=12, hidden_size=768, num_attention_heads=12)
        )
    flops = 6 * model.num_parameters(exclude_embeddings=True) * (128 + 128)
    return GPU_PEAK_TFLOPS[gpu] * 1e12 * ASSUMED_MFU / flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--samples", type=int, default=512, help="random samples written to the shards")
    parser.add_argument("--num-crops", type=int, default=1, help="crops stored per sample")
    parser.add_argument("--shards", type=int, default=2, help="per format; real shards hold 1k-10k samples")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per source (median reported)")
    args = parser.parse_args()
    collator = FourMMaskingCollator(MIXTURE, seed=0)
    modalities = list(collator.mixture.modalities)
    with tempfile.TemporaryDirectory() as root:
        rows = random_rows(args.samples, args.num_crops, modalities)
        rows.save_to_disk(os.path.join(root, "arrow"))
        for fmt in ("parquet", "tar"):
            write_shards(rows, os.path.join(root, fmt), args.shards, fmt, num_proc=args.workers)
        in_memory = SeededMaskingDataset(datasets.load_from_disk(os.path.join(root, "arrow")).with_format("numpy"))
        options = {"batch_size": args.batch_size, "num_workers": args.workers}

        def loader(source: str, collate) -> DataLoader:
            if source == "in-memory (save_to_disk)":
                return DataLoader(in_memory, shuffle=True, collate_fn=collate, **options)
            stream = ShardStream(os.path.join(root, source.split()[0]), shuffle_buffer=256, epochs=1)
            return StreamingDataLoader(stream, collate_fn=collate, **options)

        next(iter(ShardStream(os.path.join(root, "parquet"))))  # load_dataset's first call, inherited by the workers
        variants = [(source, work) for work in ("masked", "read only")
                    for source in ("in-memory (save_to_disk)", "parquet shards", "tar shards")]  # fmt: skip
        results = {variant: [] for variant in variants}
        for _ in range(args.repeats):
            for source, work in variants:
                results[(source, work)].append(measure(loader(source, collator if work == "masked" else list)))
        sizes = {
            fmt: sum(os.path.getsize(os.path.join(folder, f)) for folder, _, files in os.walk(os.path.join(root, fmt))
                     for f in files)
            for fmt in ("arrow", "parquet", "tar")
        }  # fmt: skip
    print(f"{args.samples} samples of {MIXTURE} ({len(modalities)} modalities, {args.num_crops} crop(s)), "
          f"{args.workers} workers, batch {args.batch_size}, median of {args.repeats}; torch threads "
          f"{torch.get_num_threads()}; on disk (MiB): " + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in sizes.items()))
    print("| source | work | samples/s | vs in-memory | CPU ms per sample | vs in-memory |")
    print("|---|---|---|---|---|---|")
    medians = {
        variant: [statistics.median(run[i] for run in runs) for i in (0, 1)] for variant, runs in results.items()
    }  # (samples/s, CPU ms per sample)
    for source, work in variants:
        (rate, cpu), (base_rate, base_cpu) = medians[(source, work)], medians[("in-memory (save_to_disk)", work)]
        print(f"| {source} | {work} | {rate:.0f} | {rate / base_rate:.2f}x | {cpu:.2f} | {cpu / base_cpu:.2f}x |")
    slowest = max(medians[(source, "masked")][1] for source in ("parquet shards", "tar shards"))
    for gpu in GPU_PEAK_TFLOPS:
        needed = step_samples_per_second(gpu)
        print(f"4M-B step on one {gpu} (estimate, {ASSUMED_MFU:.0%} MFU): {needed:.0f} samples/s; the masked stream "
              f"needs {needed * slowest / 1000:.1f} CPU cores for it")


if __name__ == "__main__":
    main()
