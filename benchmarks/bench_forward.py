"""Forward and forward+backward time and peak memory of a 4M-B-sized model on CPU: SDPA vs plain matmul-softmax.

    python benchmarks/bench_forward.py [--repeats 3] [--batch 8]

4M-B: width 768, 12 + 12 layers, the seven 4M-7 modalities (plus RGB pixels as an input), 128 input and 128
target tokens per sample. Timings interleave the two attention paths in one process (median of `--repeats`);
peak memory is the growth of the process's resident high-water mark over one forward+backward, measured in a
fresh subprocess per path.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from fourm_hf import FourMConfig, FourMForMaskedModeling
from fourm_hf.cli import HelpFormatter
from fourm_hf.models.fourm.modeling_fourm import additive_mask
from fourm_hf.models.layers import eager_attention_forward

TOKEN_MODALITIES = ["tok_rgb@224", "tok_depth@224", "tok_normal@224", "tok_semseg@224", "tok_clip@224"]


def build(attn: str, on_meta: bool = False) -> FourMForMaskedModeling:
    torch.manual_seed(0)
    config = FourMConfig(num_encoder_layers=12, num_decoder_layers=12, hidden_size=768, num_attention_heads=12)
    config._attn_implementation = attn
    with torch.device("meta" if on_meta else "cpu"):
        return FourMForMaskedModeling(config)


def make_batch(batch: int, inputs: int = 128, targets: int = 128, seed: int = 0) -> dict:
    """Per sample: 20 input / 20 target tokens in each image-token modality, 14 / 14 in caption and det."""
    g = torch.Generator().manual_seed(seed)
    per_image, per_sequence = 20, 14
    assert 5 * per_image + 2 * per_sequence == inputs == targets
    modalities = {"rgb@224": {"tensor": torch.randn(batch, 3, 224, 224, generator=g),
                              "input_mask": torch.ones(batch, 196, dtype=torch.bool)}}
    for name in TOKEN_MODALITIES:
        vocab = FourMConfig().modality(name).vocab_size
        order = torch.rand(batch, 196, generator=g).argsort(1)
        rank = order.argsort(1)
        modalities[name] = {
            "tensor": torch.randint(0, vocab, (batch, 196), generator=g),
            "input_mask": rank >= per_image,
            "target_mask": (rank < per_image) | (rank >= 2 * per_image),
        }
    length = 2 * (per_sequence + 1)
    position = torch.arange(length).expand(batch, -1)
    for name in ("caption", "det"):
        modalities[name] = {
            "tensor": torch.randint(5, 30000, (batch, length), generator=g),
            "input_mask": position >= per_sequence,
            # targets: a span of per_sequence + 1 tokens (per_sequence decoder slots after the shift)
            "target_mask": (position < per_sequence) | (position >= 2 * per_sequence + 1),
        }
    return modalities


def step(model: FourMForMaskedModeling, batch: dict, backward: bool) -> float:
    start = time.perf_counter()
    if backward:
        model(batch, 128, 128).loss.backward()
        model.zero_grad(set_to_none=True)
    else:
        with torch.no_grad():
            model(batch, 128, 128)
    return time.perf_counter() - start


def resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_memory(attn: str, batch_size: int) -> float:
    """MiB by which one forward+backward raises the process's resident high-water mark above its resident size
    before the step (weights are allocated in place, so building the model leaves no higher mark behind)."""
    config = build(attn, on_meta=True).config
    with torch.device("meta"):
        model = FourMForMaskedModeling(config)
    model = model.to_empty(device="cpu").train()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.normal_(std=0.02)
    batch = make_batch(batch_size)
    before = resident_mib()
    step(model, batch, backward=True)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before


def attention_times(repeats: int, batch: int) -> dict[tuple[str, bool], float]:
    """Median ms of one attention call of 4M-B shape (12 heads of 64, 256 queries and keys, additive
    (B, 1, L, L) mask as the decoder uses), forward and forward+backward, through the model's own dispatch."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(batch, 12, 256, 64, requires_grad=True) for _ in range(3))
    mask = additive_mask(torch.rand(batch, 256, 256) < 0.1, torch.float32)
    module = build("sdpa", on_meta=True).decoder.layers[0].self_attn
    functions = {"sdpa": ALL_ATTENTION_FUNCTIONS["sdpa"], "eager": eager_attention_forward}
    results = {}
    for backward in (False, True):
        for attn, fn in functions.items():
            samples = []
            for _ in range(repeats + 1):  # the first call warms up
                start = time.perf_counter()
                with torch.set_grad_enabled(backward):
                    out, _ = fn(module, q, k, v, mask, scaling=0.125, is_causal=False)
                    if backward:
                        out.sum().backward()
                samples.append(time.perf_counter() - start)
            results[attn, backward] = 1000 * statistics.median(samples[1:])
    return results


def print_attention_table(attention: dict[tuple[str, bool], float]) -> None:
    print("\n| one attention call (B, 12 heads, 256 x 256) | forward (ms) | forward+backward (ms) |")
    print("|---|---|---|")
    for attn in ("sdpa", "eager"):
        print(f"| {attn} | {attention[attn, False]:.1f} | {attention[attn, True]:.1f} |")
    print(f"| eager / sdpa | {attention['eager', False] / attention['sdpa', False]:.2f}x | "
          f"{attention['eager', True] / attention['sdpa', True]:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per path (median reported)")
    parser.add_argument("--batch", type=int, default=8, help="samples per forward pass")
    parser.add_argument("--memory-of", choices=["sdpa", "eager"], help=argparse.SUPPRESS)
    parser.add_argument("--attention-only", action="store_true", help="only time one attention call")
    args = parser.parse_args()
    if args.memory_of:
        print(json.dumps(peak_memory(args.memory_of, args.batch)))
        return

    paths = ("sdpa", "eager")
    if args.attention_only:
        print_attention_table(attention_times(max(args.repeats, 5), args.batch))
        return
    models = {attn: build(attn) for attn in paths}
    batch = make_batch(args.batch)
    params = sum(p.numel() for p in models["sdpa"].parameters()) / 1e6
    print(f"4M-B: {params:.0f}M parameters, batch {args.batch}, 128 + 128 tokens, {torch.get_num_threads()} threads")
    times = {(attn, bwd): [] for attn in paths for bwd in (False, True)}
    for backward in (False, True):
        for attn in paths:  # warm-up
            step(models[attn].train(backward), batch, backward)
        for _ in range(args.repeats):
            for attn in paths:
                times[attn, backward].append(step(models[attn].train(backward), batch, backward))
    memory = {}
    for attn in paths:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-of", attn, "--batch", str(args.batch)],
            capture_output=True, text=True, check=True,
        )
        memory[attn] = float(out.stdout.strip().splitlines()[-1])

    print("| attention | forward (s) | forward+backward (s) | peak memory of fwd+bwd (MiB) |")
    print("|---|---|---|---|")
    for attn in paths:
        fwd, bwd = statistics.median(times[attn, False]), statistics.median(times[attn, True])
        print(f"| {attn} | {fwd:.2f} | {bwd:.2f} | {memory[attn]:.0f} |")
    ratio_f = statistics.median(times["eager", False]) / statistics.median(times["sdpa", False])
    ratio_b = statistics.median(times["eager", True]) / statistics.median(times["sdpa", True])
    print(f"| eager / sdpa | {ratio_f:.2f}x | {ratio_b:.2f}x | {memory['eager'] / memory['sdpa']:.2f}x |")
    print_attention_table(attention_times(max(args.repeats, 5), args.batch))


if __name__ == "__main__":
    main()
