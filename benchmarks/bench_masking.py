"""Throughput of the multimodal masking collator (CPU work per training sample in the data loader).

    PYTHONPATH=. python benchmarks/bench_masking.py [--samples 2000] [--batch-size 64]

Samples are random pre-tokenised data with the shapes of the real modalities: full token grids, captions and boxes
of 20-80 tokens, 4M-21's metadata chunks, palettes, poses, SAM sequences and 77 x 4096 T5 features. RGB pixels are
uint8 224 x 224 crops, normalised by the collator.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fourm_hf.cli import HelpFormatter
from fourm_hf.data.masking import FourMMaskingCollator, SeededMaskingDataset
from fourm_hf.modalities import get_modality


def random_sample(rng: np.random.Generator, modalities) -> dict:
    sample = {}
    for name in modalities:
        info = get_modality(name)
        if info.kind == "pixels":
            sample[name] = rng.integers(0, 256, (info.image_size, info.image_size, 3), dtype=np.uint8)
        elif info.kind == "image_tokens":
            sample[name] = rng.integers(0, info.vocab_size, info.num_tokens)
        elif name == "metadata":
            sample[name] = {"chunks": [rng.integers(204, 2204, 2).tolist() for _ in range(12)] + [[3]]}
        elif info.kind == "sequence":
            sample[name] = rng.integers(300, 30000, int(rng.integers(20, min(80, info.max_tokens)))).tolist() + [3]
        else:
            sample[name] = rng.standard_normal((77, info.embedding_dim)).astype(np.float32)
    return sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--samples", type=int, default=2000, help="random pre-tokenised samples collated per mixture")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per collated batch")
    args = parser.parse_args()
    print("| mixture | modalities | budgets (in / out) | samples/s | ms per batch of", args.batch_size, "|")
    print("|---|---|---|---|---|")
    for preset in ("4m7_all2all_rgb2all", "4m21_all2allmix_rgb2all_capT5bias"):
        collator = FourMMaskingCollator(preset, seed=0)
        rng = np.random.default_rng(0)
        pool = SeededMaskingDataset([random_sample(rng, collator.mixture.modalities) for _ in range(64)], seed=0)
        collator([pool[i] for i in range(args.batch_size)])  # warm-up
        start = time.perf_counter()
        for first in range(0, args.samples, args.batch_size):
            collator([pool[i % len(pool)] for i in range(first, first + args.batch_size)])
        elapsed = time.perf_counter() - start
        batches = -(-args.samples // args.batch_size)
        mixture = collator.mixture
        print(
            f"| {preset} | {len(mixture.modalities)} | {mixture.input_tokens[1]} / {mixture.target_tokens[1]} | "
            f"{batches * args.batch_size / elapsed:.0f} | {1000 * elapsed / batches:.0f} |"
        )


if __name__ == "__main__":
    main()
