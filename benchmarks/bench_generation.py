"""Generation speed of a 4M-B-sized random model on CPU: KV-cached vs uncached autoregressive decoding, and
classifier-free guidance as one doubled batch vs two forward passes.

    python benchmarks/bench_generation.py [--tokens 256] [--threads N]

(a) RGB -> caption, greedy, a 256-token budget (a blank caption of 257 tokens: `[S_1]` + a 256-token span).
(b) RGB -> depth, 196 tokens, MaskGIT 8 cosine steps, temperature 1, guidance scale 2.
Each variant runs once after a short warm-up, in the same process; the outputs of the two variants are compared
token for token. 4M-B: width 768, 12 + 12 layers, the 4M-7 modalities, batch 1.
"""

import argparse
import json
import time

import torch
from transformers import LogitsProcessor

from fourm_hf import FourMConfig, FourMForMaskedModeling, FourMGenerationConfig, FourMTargetSchedule


class CountSteps(LogitsProcessor):
    """Counts decoding steps (one per generated token for autoregressive targets); leaves the logits alone."""

    def __init__(self):
        self.steps = 0

    def __call__(self, input_ids, scores):
        self.steps += 1
        return scores


def timed(model, inputs, config, **kwargs):
    start = time.perf_counter()
    out = model.generate(inputs, config, seed=0, progress_bar=False, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=256, help="autoregressive token budget of (a)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = FourMForMaskedModeling(FourMConfig()).eval()  # 4M-B defaults: 768 wide, 12 + 12 layers
    rgb = {"rgb@224": {"tensor": torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))}}
    results = {"threads": torch.get_num_threads(), "torch": torch.__version__}

    # (a) cached vs uncached autoregressive decoding
    caption = FourMGenerationConfig(
        conditions=["rgb@224"], targets=[FourMTargetSchedule("caption", num_tokens=args.tokens + 1, temperature=0.0)]
    )
    warm = FourMGenerationConfig(targets=[FourMTargetSchedule("caption", num_tokens=5, temperature=0.0)])
    timed(model, rgb, warm)
    timed(model, rgb, warm, use_cache=False)
    counter = CountSteps()
    cached, cached_s = timed(model, rgb, caption, logits_processor=[counter])
    uncached, uncached_s = timed(model, rgb, caption, use_cache=False)
    generated = counter.steps
    results["rgb_to_caption"] = {
        "tokens": generated,
        "cached_s": cached_s,
        "uncached_s": uncached_s,
        "cached_tokens_per_s": generated / cached_s,
        "uncached_tokens_per_s": generated / uncached_s,
        "speedup": uncached_s / cached_s,
        "same_tokens": torch.equal(cached["caption"]["tensor"], uncached["caption"]["tensor"]),
    }
    print(json.dumps(results["rgb_to_caption"]), flush=True)

    # (b) guidance: one doubled batch vs two passes
    depth = FourMGenerationConfig(
        conditions=["rgb@224"],
        targets=[FourMTargetSchedule("tok_depth@224", "maskgit", num_steps=8, temperature=1.0, guidance_scale=2.0)],
    )
    timed(model, rgb, depth, targets=[FourMTargetSchedule("tok_depth@224", num_steps=1, guidance_scale=2.0)])
    batched, batched_s = timed(model, rgb, depth)
    separate, separate_s = timed(model, rgb, depth, batch_guidance=False)
    results["rgb_to_depth_guided"] = {
        "tokens": 196,
        "doubled_batch_s": batched_s,
        "two_passes_s": separate_s,
        "doubled_batch_tokens_per_s": 196 / batched_s,
        "two_passes_tokens_per_s": 196 / separate_s,
        "speedup": separate_s / batched_s,
        "same_tokens": torch.equal(batched["tok_depth@224"]["tensor"], separate["tok_depth@224"]["tensor"]),
    }
    print(json.dumps(results["rgb_to_depth_guided"]), flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
