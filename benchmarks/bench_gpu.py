"""GPU table of `benchmarks/README.md`: 4M-B's bf16 training throughput and MFU, SDPA kernels, cached caption
decoding and guided MaskGIT on a CUDA GPU.

    python benchmarks/bench_gpu.py [--only SECTION ...] [--batch 128 ...] [--compile-scope layers]
        [--steps 10] [--peak-tflops 989] [--out DIR]

Every result is one JSON line on stdout (and, with `--out`, in DIR/gpu.jsonl); a section that fails prints its error
and the next one runs. Sections:
  peak      the measured dense bf16 matmul rate (8192^3 products): the practical ceiling beside the data sheet's.
  sdpa      which SDPA backends accept our masks (additive float masks, one per sample) in a bf16 4M-B forward,
            the forward time with each, and which attention kernels the default dispatch launches (profiler).
  train     forward + backward + fused AdamW step of 4M-B (random weights; `bench_forward.make_batch`: 128 input +
            128 target tokens per sample) under bf16 autocast, eager, for each `--batch`: samples/s, TFLOP/s (the
            FLOPs of one step counted by `torch.utils.flop_counter`), MFU against `--peak-tflops` and against
            `peak`, peak memory, and the share of the step the GPU spends in kernels (the profiler's top operators
            of the first batch size go to DIR/profile_eager.txt); then the first batch size again with the model's
            input checks skipped, to see what their device syncs cost.
  compile   the same with `torch.compile`, per `--compile-scope`: each encoder / decoder layer (one graph per stack)
            or the whole forward; the fused optimizer step stays eager. DIR/profile_layers.txt or profile_model.txt.
  decode    RGB -> caption, greedy, 64 tokens, KV cache: bf16 weights at batch 1 and 32 (tokens/s), and fp32 at
            batch 1, whose tokens must equal the uncached path's.
  guidance  `bench_generation.py`'s (b) on this device in fp32: guided MaskGIT RGB -> depth at batch 1, the default
            against two separate passes and the padded doubled batch, with their tokens compared.
`--device cpu --tiny` runs every section on a 2 + 2-layer, 128-wide model: a smoke test of this script.
"""

import argparse
import contextlib
import json
import time
from pathlib import Path
from unittest import mock

import torch
import transformers
from bench_forward import make_batch
from bench_generation import guidance_benchmark, identical_share, synchronize
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from fourm_hf import FourMConfig, FourMForMaskedModeling, FourMGenerationConfig, FourMTargetSchedule
from fourm_hf.cli import HelpFormatter
from fourm_hf.models.fourm import modeling_fourm

SECTIONS = ("peak", "sdpa", "train", "compile", "decode", "guidance")
SDPA_BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                 "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}  # fmt: skip
ATTENTION_NAMES = ("attention", "fmha", "flash", "cudnn")


class Bench:
    """The device, the model size and where results go."""

    def __init__(self, device: str, tiny: bool, out: Path | None):
        self.device = torch.device(device)
        self.tiny = tiny
        self.out = out
        self.measured_peak_tflops: float | None = None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)

    def emit(self, record: dict) -> None:
        line = json.dumps(record)
        print(line, flush=True)
        if self.out is not None:
            with open(self.out / "gpu.jsonl", "a") as f:
                f.write(line + "\n")

    def write(self, name: str, text: str) -> None:
        if self.out is not None:
            (self.out / name).write_text(text)

    def model(self, dtype: torch.dtype = torch.float32) -> FourMForMaskedModeling:
        torch.manual_seed(0)
        config = FourMConfig(hidden_size=128, num_encoder_layers=2, num_decoder_layers=2, num_attention_heads=2) \
            if self.tiny else FourMConfig()  # 4M-B: 768 wide, 12 + 12 layers, SwiGLU
        return FourMForMaskedModeling(config).to(self.device, dtype)

    def batch(self, size: int, dtype: torch.dtype = torch.float32) -> dict:
        batch = {name: {k: v.to(self.device) for k, v in entry.items()} for name, entry in make_batch(size).items()}
        batch["rgb@224"]["tensor"] = batch["rgb@224"]["tensor"].to(dtype)
        return batch

    def rgb(self, size: int, dtype: torch.dtype = torch.float32) -> dict:
        pixels = torch.randn(size, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        return {"rgb@224": {"tensor": pixels.to(self.device, dtype)}}

    def sync(self) -> None:
        synchronize(self.device)

    def profile(self) -> profile:
        """A profiler of the host and, on a GPU, its kernels."""
        cuda = [ProfilerActivity.CUDA] if self.device.type == "cuda" else []
        return profile(activities=[ProfilerActivity.CPU, *cuda])

    def kernel_tables(self, prof: profile, rows: int = 30) -> str:
        """The profiler's top operators by device time (on a GPU) and by host time."""
        keys = (["self_device_time_total"] if self.device.type == "cuda" else []) + ["self_cpu_time_total"]
        return "\n\n".join(f"by {key}:\n" + prof.key_averages().table(sort_by=key, row_limit=rows) for key in keys)


def kernel_seconds(prof: profile) -> float:
    """Seconds the GPU spent in kernels during a profiled region (user-annotated ranges such as the optimizer's step
    also carry device time: left out, since their kernels are counted already)."""
    events = [
        e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA and not e.is_user_annotation
    ]
    return sum(e.self_device_time_total for e in events) / 1e6


def peak(bench: Bench) -> dict:
    n = 512 if bench.tiny else 8192
    a, b = (torch.randn(n, n, device=bench.device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    bench.sync()
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    bench.sync()
    tflops = 10 * 2 * n**3 / (time.perf_counter() - start) / 1e12
    bench.measured_peak_tflops = tflops
    return {"size": n, "TFLOPs": round(tflops, 1)}


def sdpa(bench: Bench, batch_size: int = 32) -> dict:
    model = bench.model(torch.bfloat16).eval()
    batch = bench.batch(batch_size, torch.bfloat16)
    backends = {}
    for backend in SDPA_BACKENDS.values():
        try:
            with sdpa_kernel(backend), torch.no_grad():
                model(batch, 128, 128)
                bench.sync()
                start = time.perf_counter()
                for _ in range(3):
                    model(batch, 128, 128)
                bench.sync()
            backends[backend.name] = f"runs: {1000 * (time.perf_counter() - start) / 3:.1f} ms per forward"
        except RuntimeError as error:
            backends[backend.name] = f"refused: {str(error).strip().splitlines()[0][:160]}"
    with bench.profile() as prof, torch.no_grad():
        model(batch, 128, 128)
        bench.sync()
    launched = sorted({e.key for e in prof.key_averages() if any(n in e.key.lower() for n in ATTENTION_NAMES)})
    return {"batch": batch_size, "backends": backends, "default_dispatch_runs": launched}


def train(bench: Bench, batch_size: int, steps: int, compiled: str | None, peak_tflops: float, profiled: bool,
          validation: bool = True) -> dict:
    """One configuration of the training step; `compiled`: None, "model" (the whole forward) or "layers" (each
    encoder and decoder layer on its own, one graph shared by the layers of a stack)."""
    model = bench.model().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    batch = bench.batch(batch_size)

    def step(module) -> None:
        with torch.autocast(bench.device.type, dtype=torch.bfloat16):
            loss = module(batch, 128, 128).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as counter:  # counted eagerly, before any compilation
        step(model)
    forward = model
    if compiled == "model":
        forward = torch.compile(model)
    elif compiled == "layers":
        for layer in (*model.encoder.layers, *model.decoder.layers):
            layer.compile()
    skipped = mock.patch.object(modeling_fourm, "check_modalities", lambda *a, **k: None)
    with contextlib.nullcontext() if validation else skipped:  # without: what the checks (and their syncs) cost
        start = time.perf_counter()
        for _ in range(3):  # warm-up (and compilation)
            step(forward)
        bench.sync()
        warmup_s = time.perf_counter() - start
        if bench.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(steps):
            step(forward)
        bench.sync()
        seconds = (time.perf_counter() - start) / steps
        tflops = counter.get_total_flops() / seconds / 1e12
        result = {
            "compiled": compiled, "validation": validation, "batch": batch_size, "step_s": round(seconds, 4),
            "samples_per_s": round(batch_size / seconds, 1),
            "TFLOP_per_step": round(counter.get_total_flops() / 1e12, 3), "TFLOPs": round(tflops, 1),
            "MFU": round(tflops / peak_tflops, 3), "warmup_s": round(warmup_s, 1),
        }  # fmt: skip
        if bench.measured_peak_tflops:
            result["MFU_of_measured_peak"] = round(tflops / bench.measured_peak_tflops, 3)
        if bench.device.type == "cuda":
            result["peak_memory_GiB"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        if profiled:
            with bench.profile() as prof:
                for _ in range(2):
                    step(forward)
                bench.sync()
            if bench.device.type == "cuda":
                result["gpu_busy_share"] = round(kernel_seconds(prof) / 2 / seconds, 3)
            bench.write(f"profile_{compiled or 'eager'}.txt", bench.kernel_tables(prof))
    return result


def decode(bench: Bench, dtype: torch.dtype, batch_size: int, check_uncached: bool) -> dict:
    model = bench.model(dtype).eval()
    rgb = bench.rgb(batch_size, dtype)
    config = FourMGenerationConfig(targets=[FourMTargetSchedule("caption", num_tokens=65, temperature=0.0)])
    start = time.perf_counter()
    model.generate(rgb, config, seed=0, progress_bar=False)  # the first call: warm-up (and kernel plans)
    bench.sync()
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    cached = model.generate(rgb, config, seed=0, progress_bar=False)["caption"]["tensor"]
    bench.sync()
    seconds = time.perf_counter() - start
    result = {
        "dtype": str(dtype).removeprefix("torch."), "batch": batch_size, "tokens": cached.shape[1],
        "first_call_s": round(first_s, 3), "s": round(seconds, 3),
        "ms_per_step": round(1000 * seconds / cached.shape[1], 2),
        "tokens_per_s": round(cached.shape[1] * batch_size / seconds, 1),
    }  # fmt: skip
    if check_uncached:
        start = time.perf_counter()
        uncached = model.generate(rgb, config, seed=0, progress_bar=False, use_cache=False)["caption"]["tensor"]
        bench.sync()
        result["uncached_s"] = round(time.perf_counter() - start, 3)
        result["same_tokens_as_uncached"] = torch.equal(cached, uncached)
        result["same_token_share"] = identical_share(cached.cpu(), uncached.cpu())
    return result


def run(bench: Bench, section: str, args: argparse.Namespace) -> None:
    try:
        backend = SDPA_BACKENDS.get(args.sdpa_backend)
        with contextlib.nullcontext() if backend is None else sdpa_kernel(backend):
            run_section(bench, section, args)
    except Exception as error:  # one failing section must not cost the others on a one-shot machine
        bench.emit({"section": section, "error": f"{type(error).__name__}: {error}"[:2000]})


def run_section(bench: Bench, section: str, args: argparse.Namespace) -> None:
    if section == "peak":
        bench.emit({"peak_bf16_matmul": peak(bench)})
    elif section == "sdpa":
        bench.emit({"sdpa": sdpa(bench)})
    elif section == "train":
        for i, batch_size in enumerate(args.batch):
            bench.emit({"training": train(bench, batch_size, args.steps, None, args.peak_tflops, i == 0)})
        result = train(bench, args.batch[0], args.steps, None, args.peak_tflops, False, validation=False)
        bench.emit({"training": result})
    elif section == "compile":
        for i, batch_size in enumerate(args.batch):
            result = train(bench, batch_size, args.steps, args.compile_scope, args.peak_tflops, i == 0)
            bench.emit({"training": result})
    elif section == "decode":
        for dtype, batch_size in ((torch.float32, 1), (torch.bfloat16, 1), (torch.bfloat16, 32)):
            bench.emit({"decoding": decode(bench, dtype, batch_size, check_uncached=batch_size == 1)})
    elif section == "guidance":
        model = bench.model().eval()
        bench.emit({"rgb_to_depth_guided": guidance_benchmark(model, bench.rgb(1), repeats=3)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--batch", type=int, nargs="+", default=[128], help="samples per training step")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per variant (after warm-up)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU, TFLOP/s")
    parser.add_argument("--compile-scope", choices=["model", "layers"], default="layers",
                        help="what `compile` compiles: the whole forward, or each encoder / decoder layer")
    parser.add_argument("--sdpa-backend", choices=["default", *SDPA_BACKENDS], default="default",
                        help="restrict SDPA to one backend for every section (default: torch's own choice)")
    parser.add_argument("--device", default="cuda", help="torch device (cpu only for a smoke test)")
    parser.add_argument("--tiny", action="store_true", help="a 2 + 2-layer model instead of 4M-B (smoke test)")
    parser.add_argument("--out", type=Path, default=None, help="folder for gpu.jsonl and the profiler tables")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU (or --device cpu --tiny for a smoke test).")
    bench = Bench(args.device, args.tiny, args.out)
    name = torch.cuda.get_device_name() if bench.device.type == "cuda" else "cpu"
    bench.emit({"device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
                "transformers": transformers.__version__, "sections": args.only,
                "sdpa_backend": args.sdpa_backend})  # fmt: skip
    for section in args.only:
        run(bench, section, args)


if __name__ == "__main__":
    main()
