"""Generation speed of a 4M-B-sized random model on CPU: cached caption decoding against the weight-read floor, and
classifier-free guidance with and without padding.

    python benchmarks/bench_generation.py [--tokens 64 256] [--threads N] [--repeats 3] [--skip-uncached] [--bf16]

(a) RGB -> caption, greedy, batch 1, for each `--tokens` budget. The per-token time of the cached `generate` (the
    median interval between two streamed tokens, so everything a step does counts, encoding excluded) is set
    against the weight-read floor: the same threads running, in a tight loop at batch 1, exactly the matrix-vector
    products a cached step must do (each decoder layer's self-attention qkv / out, cross-attention q / out, the MLP,
    then the final norm and the caption head), on the model's own weights. The two are interleaved `--repeats`
    times. The uncached path (the decoder re-run over the whole prefix for every token) runs once and must give the
    same tokens.
(b) RGB -> depth, 196 tokens, MaskGIT 8 cosine steps, temperature 1, guidance scale 2, batch 1: the default
    (every pass encoded at its own length, the decoder runs both passes as one batch and splits only for
    cross-attention), two separate passes (`batch_guidance=False`), and the doubled batch this replaced (the
    unconditional pass padded to the conditional length, rebuilt here for comparison). For each: wall and thread-CPU
    time (CPU time is steadier on a shared machine; exact with `--threads 1`), the tokens
    each encoder pass computes, the matmul / attention FLOPs (`torch.utils.flop_counter`), and the tokens, which
    must be identical.
(c) with `--bf16`: (a) again with the weights in bfloat16 (`model.to(torch.bfloat16)`, the reduced-precision CPU
    path: half the bytes per step), against its own bf16 floor, and the share of its tokens equal to fp32's.
4M-B: width 768, 12 + 12 layers, SwiGLU MLP 2048, the 4M-7 modalities, fp32.
"""

import argparse
import copy
import itertools
import json
import os
import platform
import statistics
import time
from unittest import mock

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from fourm_hf import (
    FourMConfig,
    FourMForMaskedModeling,
    FourMGenerationConfig,
    FourMTargetSchedule,
)
from fourm_hf.cli import HelpFormatter
from fourm_hf.generation import schemes
from fourm_hf.generation.decoding import PassContexts


class TokenClock:
    """A streamer that records when each token arrives, in wall time and in this thread's CPU time."""

    def __init__(self):
        self.times, self.cpu_times = [], []

    def put(self, value):
        self.times.append(time.perf_counter())
        self.cpu_times.append(time.thread_time())

    def end(self):
        pass

    def median_interval_ms(self, cpu: bool = False) -> float:
        times = self.cpu_times if cpu else self.times
        return statistics.median(1000 * (b - a) for a, b in itertools.pairwise(times))


def floor_operands(model: FourMForMaskedModeling, target: str) -> tuple[list, torch.nn.Module, torch.nn.Linear]:
    """(weight, bias, batch-1 input) of every linear a cached step runs, the final norm and the target's head."""
    linears = []
    for layer in model.decoder.layers:
        mlp = layer.mlp
        linears += [layer.self_attn.qkv, layer.self_attn.proj, layer.cross_attn.q, layer.cross_attn.proj]
        linears += [m for m in (mlp.gate_proj, mlp.up_proj, mlp.down_proj) if m is not None]
    operands = [(m.weight, m.bias, torch.randn(1, m.in_features, dtype=m.weight.dtype)) for m in linears]
    return operands, model.decoder.norm, model.decoder.embeddings[target].to_logits


def floor_ms(operands: list, norm: torch.nn.Module, head: torch.nn.Linear, loops: int) -> tuple[float, float]:
    """Median wall and thread-CPU time of the weight-read floor of one step, in ms."""
    x = torch.randn(1, head.in_features, dtype=head.weight.dtype)
    times, cpu_times = [], []
    for _ in range(loops):
        start, cpu_start = time.perf_counter(), time.thread_time()
        for weight, bias, value in operands:
            F.linear(value, weight, bias)
        head(norm(x))
        times.append(1000 * (time.perf_counter() - start))
        cpu_times.append(1000 * (time.thread_time() - cpu_start))
    return statistics.median(times), statistics.median(cpu_times)


def weight_bytes(operands: list, head: torch.nn.Linear) -> int:
    tensors = [t for w, b, _ in operands for t in (w, b) if t is not None] + [head.weight]
    return sum(t.numel() * t.element_size() for t in tensors)


ENCODE_PASSES = schemes.encode_passes  # the default, kept before the benchmark patches it


def padded_encode_passes(model, passes, batched):
    """The doubled batch this benchmark compares against: all passes encoded as one batch, the shorter ones padded
    to the longest, and every pass's decoder cross-attention running over the padded context."""
    if not batched or len(passes) == 1:
        return ENCODE_PASSES(model, passes, batched)
    batch = {name: {key: torch.cat([p[name][key] for p in passes]) for key in passes[0][name]} for name in passes[0]}
    context, cross_mask = model.decoder.context(model.encoder(batch))
    rows = context.shape[0] // len(passes)
    return [PassContexts(model.decoder, list(zip(context.split(rows), cross_mask.split(rows), strict=True)))]


class EncoderTokens:
    """Counts the token slots (padding included) the encoder's layers process, per encoder call."""

    def __init__(self, model):
        self.calls = []
        model.encoder.layers[0].register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.calls.append(int(args[0].shape[0] * args[0].shape[1]))


def machine() -> dict:
    """CPU model, the flags that matter for these kernels, torch threads, load average."""
    name, flags = platform.processor(), []
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    break
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")
    return {
        "cpu": name,
        "flags": [f for f in wanted if f in flags],
        "threads": torch.get_num_threads(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "torch": torch.__version__,
    }


def caption_benchmark(model, rgb, tokens: int, repeats: int, skip_uncached: bool) -> dict:
    config = FourMGenerationConfig(targets=[FourMTargetSchedule("caption", num_tokens=tokens + 1, temperature=0.0)])
    operands, norm, head = floor_operands(model, "caption")
    floors, cpu_floors, steps, cpu_steps, totals = [], [], [], [], []
    for _ in range(repeats):  # interleaved: floor, generate, floor, generate...
        wall, cpu = floor_ms(operands, norm, head, loops=5)
        floors.append(wall)
        cpu_floors.append(cpu)
        clock = TokenClock()
        start = time.perf_counter()
        cached = model.generate(rgb, config, seed=0, progress_bar=False, streamer=clock)
        totals.append(time.perf_counter() - start)
        steps.append(clock.median_interval_ms())
        cpu_steps.append(clock.median_interval_ms(cpu=True))
    median = statistics.median
    result = {
        "tokens": len(clock.times),
        "weights_read_MB": round(weight_bytes(operands, head) / 1e6, 1),
        "floor_ms_per_token": round(median(floors), 2),
        "cached_ms_per_token": round(median(steps), 2),
        "ratio_to_floor": round(median(steps) / median(floors), 3),
        "cpu_floor_ms_per_token": round(median(cpu_floors), 2),
        "cpu_cached_ms_per_token": round(median(cpu_steps), 2),
        "cpu_ratio_to_floor": round(median(cpu_steps) / median(cpu_floors), 3),
        "cached_s": round(median(totals), 2),
        "all_floor_ms": [round(v, 1) for v in floors],
        "all_cached_ms": [round(v, 1) for v in steps],
    }
    result["caption_ids"] = cached["caption"]["tensor"]
    if not skip_uncached:
        start = time.perf_counter()
        uncached = model.generate(rgb, config, seed=0, progress_bar=False, use_cache=False)
        result["uncached_s"] = round(time.perf_counter() - start, 2)
        result["same_tokens_as_uncached"] = torch.equal(cached["caption"]["tensor"], uncached["caption"]["tensor"])
    return result


def identical_share(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of positions where two token sequences agree (the shorter one padded as different)."""
    length = max(a.shape[1], b.shape[1])
    same = (a[:, : b.shape[1]] == b[:, : a.shape[1]]).sum()
    return round(float(same) / (a.shape[0] * length), 3)


def bfloat16_benchmark(model, rgb, tokens: int, repeats: int, reference: torch.Tensor) -> dict:
    """(a) with the weights in bfloat16: ms/token against its own floor, and the share of tokens equal to fp32's."""
    model16 = copy.deepcopy(model).to(torch.bfloat16)
    result = caption_benchmark(model16, rgb, tokens, repeats, skip_uncached=True)
    result["same_tokens_share_vs_fp32"] = identical_share(result.pop("caption_ids"), reference)
    return result


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels, so that wall times on a GPU cover the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def guidance_benchmark(model, rgb, repeats: int) -> dict:
    """(b) on the model's device (CPU here; `bench_gpu.py` runs it on a GPU)."""
    config = FourMGenerationConfig(
        conditions=["rgb@224"],
        targets=[FourMTargetSchedule("tok_depth@224", "maskgit", num_steps=8, temperature=1.0, guidance_scale=2.0)],
    )
    variants = {
        "default (per-pass encoder, one decoder batch)": ({}, schemes.encode_passes),
        "two passes (batch_guidance=False)": ({"batch_guidance": False}, schemes.encode_passes),
        "padded doubled batch (before)": ({}, padded_encode_passes),
    }
    counter = EncoderTokens(model)
    results, outputs = {}, {}
    for name, (kwargs, encode) in variants.items():
        with mock.patch.object(schemes, "encode_passes", encode):
            counter.calls.clear()
            with FlopCounterMode(display=False) as flops:
                outputs[name] = model.generate(rgb, config, seed=0, progress_bar=False, **kwargs)
            results[name] = {"encoder_token_slots": sum(counter.calls), "GFLOP": round(flops.get_total_flops() / 1e9, 1)}
    times, cpu_times = {name: [] for name in variants}, {name: [] for name in variants}
    for _ in range(repeats):  # interleaved
        for name, (kwargs, encode) in variants.items():
            with mock.patch.object(schemes, "encode_passes", encode):
                start, cpu_start = time.perf_counter(), time.thread_time()
                model.generate(rgb, config, seed=0, progress_bar=False, **kwargs)
                synchronize(model.device)
                times[name].append(time.perf_counter() - start)
                cpu_times[name].append(time.thread_time() - cpu_start)
    reference = outputs["two passes (batch_guidance=False)"]["tok_depth@224"]["tensor"]
    for name in variants:
        results[name]["s"] = round(statistics.median(times[name]), 2)
        results[name]["cpu_s"] = round(statistics.median(cpu_times[name]), 2)
        results[name]["all_s"] = [round(v, 2) for v in times[name]]
        results[name]["same_tokens_as_two_passes"] = torch.equal(outputs[name]["tok_depth@224"]["tensor"], reference)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--tokens", type=int, nargs="+", default=[64], help="caption token budgets of (a)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (median reported)")
    parser.add_argument("--skip-uncached", action="store_true", help="skip the uncached token check of (a)")
    parser.add_argument("--skip-guidance", action="store_true", help="skip (b)")
    parser.add_argument("--bf16", action="store_true", help="(a) also with bfloat16 weights (reduced precision)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = FourMForMaskedModeling(FourMConfig()).eval()  # 4M-B defaults: 768 wide, 12 + 12 layers
    rgb = {"rgb@224": {"tensor": torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))}}
    print(json.dumps({"machine": machine()}), flush=True)
    warm = FourMGenerationConfig(targets=[FourMTargetSchedule("caption", num_tokens=5, temperature=0.0)])
    model.generate(rgb, warm, progress_bar=False)

    for tokens in args.tokens:
        result = caption_benchmark(model, rgb, tokens, args.repeats, args.skip_uncached)
        reference = result.pop("caption_ids")
        print(json.dumps({"rgb_to_caption": result}), flush=True)
        if args.bf16:
            result = bfloat16_benchmark(model, rgb, tokens, args.repeats, reference)
            print(json.dumps({"rgb_to_caption_bf16_weights": result}), flush=True)
    if not args.skip_guidance:
        print(json.dumps({"rgb_to_depth_guided": guidance_benchmark(model, rgb, args.repeats)}), flush=True)
    print(json.dumps({"machine_after": machine()}), flush=True)


if __name__ == "__main__":
    main()
