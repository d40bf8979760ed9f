"""fourm_hf against the official apple/ml-4m code: same random 4M-B weights, same inputs, same tokens, times side by side.

    python benchmarks/bench_official.py --official-repo ML4M_DIR --official-python ML4M_PYTHON [--repeats 2]
    python benchmarks/bench_official.py --ours-only            # our side alone (random weights, no checkout needed)

Fetch apple/ml-4m yourself (never commit it) and give its Python: an environment with torch, numpy, einops,
safetensors, tokenizers and huggingface_hub (<0.24, what ml-4m pins) is enough, as `official_worker.py` loads only
the model and sampler modules of the checkout (a full `pip install -e ML4M_DIR` works too).

1. The official side builds a seeded random 4M-B (width 768, 12 + 12 layers, SwiGLU, 4M-7 modalities) and writes it
   as released checkpoints are laid out; ours loads that directory with `from_pretrained` (converted on load).
2. Workloads, each timed once per repeat, official and ours alternating (median of `--repeats`):
   - masked-modeling forward, batch 4, 128 input + 128 target tokens per sample (`bench_forward.make_batch`);
   - the same, forward + backward;
   - RGB -> caption, greedy, 64 tokens, batch 1 (ours: KV-cached);
   - RGB -> depth, MaskGIT 8 cosine steps, guidance scale 2, batch 1, temperature `--depth-temperature` (default 0:
     deterministic, so the tokens must agree).
3. The generated tokens of the two sides are compared; the table gives official / ours (above 1: ours is faster).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_forward import make_batch
from bench_generation import machine
from safetensors.torch import load_file, save_file

from fourm_hf import (
    FourMConfig,
    FourMForMaskedModeling,
    FourMGenerationConfig,
    FourMTargetSchedule,
)
from fourm_hf.cli import HelpFormatter
from fourm_hf.models.fourm.modeling_fourm import default_decoder_attention_mask

WORKER = Path(__file__).resolve().parent / "official_worker.py"
WORKLOADS = {
    "forward": "4M-B masked-modeling forward, batch 4, 128 + 128 tokens",
    "forward_backward": "same, forward + backward",
    "caption": "RGB -> caption, greedy, 64 tokens, batch 1",
    "depth": "RGB -> depth, MaskGIT 8 steps, guidance 2, batch 1",
}


def write_inputs(workdir: Path, config: FourMConfig, depth_temperature: float) -> dict:
    """The inputs both sides read: the masked batch (with the training-default decoder attention masks) and the RGB
    image; and the generation settings."""
    batch = make_batch(4)
    tensors = {"rgb": torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))}
    for name, entry in batch.items():
        if name in config.decoder_modalities:
            entry["decoder_attention_mask"] = default_decoder_attention_mask(config.modality(name), entry["target_mask"])
        for key, value in entry.items():
            tensors[f"batch.{name}.{key}"] = value.contiguous()
    save_file(tensors, str(workdir / "inputs.safetensors"))
    settings = {
        "caption": {"num_tokens": 65, "temperature": 0.0, "guidance_scale": 1.0},  # [S_1] + a 64-token span
        "depth": {"num_tokens": 196, "num_steps": 8, "temperature": depth_temperature, "guidance_scale": 2.0},
    }
    (workdir / "settings.json").write_text(json.dumps(settings))
    return settings


def official(python: str, repo: Path, workdir: Path, stage: str, threads: int) -> None:
    command = [python, str(WORKER), "--repo", str(repo), "--workdir", str(workdir), stage, "--threads", str(threads)]
    subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": ""})


def ours(model: FourMForMaskedModeling, workdir: Path, settings: dict) -> tuple[dict, dict]:
    """Our times and tokens on the same workloads."""
    inputs = load_file(str(workdir / "inputs.safetensors"))
    batch = {}
    for key, value in inputs.items():
        if key.startswith("batch."):
            _, name, field = key.split(".", 2)
            batch.setdefault(name, {})[field] = value
    times, tokens = {}, {}
    start = time.perf_counter()
    with torch.no_grad():
        model(batch, 128, 128)
    times["forward"] = time.perf_counter() - start
    start = time.perf_counter()
    model(batch, 128, 128).loss.backward()
    times["forward_backward"] = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    rgb = {"rgb@224": {"tensor": inputs["rgb"]}}
    for name, target, scheme in (("caption", "caption", "autoregressive"), ("depth", "tok_depth@224", "maskgit")):
        task = settings[name]
        steps = {"num_steps": task["num_steps"]} if "num_steps" in task else {}
        schedule = FourMTargetSchedule(
            target, scheme, num_tokens=task["num_tokens"], temperature=task["temperature"],
            guidance_scale=task["guidance_scale"], **steps,
        )  # fmt: skip
        config = FourMGenerationConfig(conditions=["rgb@224"], targets=[schedule])
        start = time.perf_counter()
        out = model.generate(rgb, config, seed=0, progress_bar=False)
        times[name] = time.perf_counter() - start
        tokens[name] = out[target]["tensor"]
    return times, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--official-repo", type=Path, help="an apple/ml-4m checkout")
    parser.add_argument("--official-python", help="the Python of its environment")
    parser.add_argument("--ours-only", action="store_true", help="run our side alone, on random weights")
    parser.add_argument("--repeats", type=int, default=2, help="alternating repetitions (median reported)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads of both sides")
    parser.add_argument("--depth-temperature", type=float, default=0.0, help="MaskGIT temperature of the depth run")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the checkpoint and inputs here")
    args = parser.parse_args()
    if not args.ours_only and (args.official_repo is None or args.official_python is None):
        parser.error("--official-repo and --official-python are required (or --ours-only)")
    if args.official_repo is not None and not (args.official_repo / "fourm" / "models" / "generate.py").is_file():
        parser.error(f"--official-repo {args.official_repo} is not an apple/ml-4m checkout (no fourm/models/generate.py)")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    torch.set_num_threads(args.threads)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_official_"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(json.dumps({"machine": machine(), "workdir": str(workdir)}), flush=True)
    settings = write_inputs(workdir, FourMConfig(), args.depth_temperature)
    if args.ours_only:
        torch.manual_seed(0)
        model = FourMForMaskedModeling(FourMConfig())
    else:
        if not (workdir / "model.safetensors").is_file():
            official(args.official_python, args.official_repo, workdir, "--init", args.threads)
        model = FourMForMaskedModeling.from_pretrained(str(workdir))
    model.eval()

    official_times, our_times = {k: [] for k in WORKLOADS}, {k: [] for k in WORKLOADS}
    for _ in range(args.repeats):
        if not args.ours_only:
            official(args.official_python, args.official_repo, workdir, "--run", args.threads)
            for key, value in json.loads((workdir / "official_times.json").read_text()).items():
                official_times[key].append(value)
        times, tokens = ours(model, workdir, settings)
        for key, value in times.items():
            our_times[key].append(value)
        print(json.dumps({"official_s": {k: v[-1] for k, v in official_times.items() if v},
                          "ours_s": {k: v[-1] for k, v in our_times.items()}}), flush=True)  # fmt: skip

    same = {}
    if not args.ours_only:
        theirs = load_file(str(workdir / "official_tokens.safetensors"))
        same = {name: torch.equal(tokens[name], theirs[name]) for name in tokens}
    print("\n| work | official (s) | fourm_hf (s) | official / fourm_hf | same tokens |")
    print("|---|---|---|---|---|")
    for key, label in WORKLOADS.items():
        mine = statistics.median(our_times[key])
        theirs_s = statistics.median(official_times[key]) if official_times[key] else None
        theirs_cell, ratio = (f"{theirs_s:.2f}", f"{theirs_s / mine:.2f}") if theirs_s else ("", "")
        print(f"| {label} | {theirs_cell} | {mine:.2f} | {ratio} | {same.get(key, '')} |")
    print(json.dumps({"machine_after": machine()}))
    if same and not all(same.values()):
        sys.exit(f"The generated tokens differ: {same}")


if __name__ == "__main__":
    main()
