"""The two per-step costs the end-to-end demo (`examples/demo.py`) cut, each next to what it replaced, in one run.

    PYTHONPATH=. python benchmarks/bench_demo.py [--rows 2000] [--steps 50]

(a) Reading a batch of 32 pre-tokenised demo rows (64x64 RGB pixels, three 8x8 token grids, a caption and boxes)
    from an Arrow-backed `datasets.Dataset` in numpy format, against the demo's `InMemoryRows`.
(b) One AdamW step over the parameters of the demo's 4M (5.0M), foreach against fused.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import torch

from fourm_hf import FourMForMaskedModeling

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


def seconds_per_call(function, repeats: int) -> float:
    function()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
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
    model = FourMForMaskedModeling(demo.fourm_config(settings, names, vocab_size=4412, max_length=64))
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
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
