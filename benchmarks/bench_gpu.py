"""GPU table of `benchmarks/README.md`: bf16 training throughput and MFU of 4M-B, and cached caption decoding (CUDA only).

    python benchmarks/bench_gpu.py [--batch 128] [--steps 10] [--peak-tflops 989]

(a) forward + backward + AdamW step of 4M-B (random weights, `bench_forward.make_batch`: 128 input + 128 target
    tokens per sample) in bf16 autocast, eager and `torch.compile`d: samples/s, achieved TFLOP/s (FLOPs of one step
    counted by `torch.utils.flop_counter`) and MFU against `--peak-tflops` (the GPU's dense bf16 peak; default: the
    H100 / H200 SXM figure). Also which SDPA kernels accept our masks (flash, memory-efficient, math).
(b) RGB -> caption, greedy, 64 tokens, KV cache, bf16 weights, batch 1 and 32: tokens/s.
"""

import argparse
import json
import time

import torch
from bench_forward import make_batch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from fourm_hf import (
    FourMConfig,
    FourMForMaskedModeling,
    FourMGenerationConfig,
    FourMTargetSchedule,
)
from fourm_hf.cli import HelpFormatter


def to_device(batch: dict, device: str) -> dict:
    return {name: {k: v.to(device) for k, v in entry.items()} for name, entry in batch.items()}


def train_step(model, optimizer, batch) -> None:
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(batch, 128, 128).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def training(batch_size: int, steps: int, compiled: bool, peak_tflops: float) -> dict:
    torch.manual_seed(0)
    model = FourMForMaskedModeling(FourMConfig()).cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    batch = to_device(make_batch(batch_size), "cuda")
    step = torch.compile(train_step) if compiled else train_step
    start = time.perf_counter()
    for _ in range(3):  # warm-up (and compilation)
        step(model, optimizer, batch)
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - start
    with FlopCounterMode(display=False) as counter:
        train_step(model, optimizer, batch)
    start = time.perf_counter()
    for _ in range(steps):
        step(model, optimizer, batch)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    tflops = counter.get_total_flops() / seconds / 1e12
    return {
        "compiled": compiled, "batch": batch_size, "step_s": round(seconds, 4),
        "samples_per_s": round(batch_size / seconds, 1), "TFLOPs": round(tflops, 1),
        "MFU": round(tflops / peak_tflops, 3), "warmup_s": round(warmup_s, 1),
    }  # fmt: skip


def sdpa_kernels() -> dict:
    """Which SDPA backends run a 4M-B forward with our (float, per-sample) masks."""
    torch.manual_seed(0)
    model = FourMForMaskedModeling(FourMConfig()).cuda().to(torch.bfloat16)
    batch = to_device(make_batch(8), "cuda")
    batch["rgb@224"]["tensor"] = batch["rgb@224"]["tensor"].to(torch.bfloat16)
    result = {}
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
        try:
            with sdpa_kernel(backend), torch.no_grad():
                model(batch, 128, 128)
            result[backend.name] = "runs"
        except RuntimeError as error:
            result[backend.name] = f"refused: {str(error).splitlines()[0][:120]}"
    return result


def decoding(batch_size: int) -> dict:
    torch.manual_seed(0)
    model = FourMForMaskedModeling(FourMConfig()).cuda().to(torch.bfloat16).eval()
    rgb = {"rgb@224": {"tensor": torch.randn(batch_size, 3, 224, 224, device="cuda", dtype=torch.bfloat16)}}
    config = FourMGenerationConfig(targets=[FourMTargetSchedule("caption", num_tokens=65, temperature=0.0)])
    model.generate(rgb, config, seed=0, progress_bar=False)
    torch.cuda.synchronize()
    start = time.perf_counter()
    model.generate(rgb, config, seed=0, progress_bar=False)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"batch": batch_size, "s": round(seconds, 3), "tokens_per_s": round(64 * batch_size / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--batch", type=int, default=128, help="samples per training step")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per variant (after warm-up)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU, TFLOP/s")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU.")
    print(json.dumps({"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}), flush=True)
    print(json.dumps({"sdpa_kernels": sdpa_kernels()}), flush=True)
    for compiled in (False, True):
        print(json.dumps({"training": training(args.batch, args.steps, compiled, args.peak_tflops)}), flush=True)
    for batch_size in (1, 32):
        print(json.dumps({"decoding": decoding(batch_size)}), flush=True)


if __name__ == "__main__":
    main()
