"""Quality against training budget of the demo's 4M: one row of the table in `benchmarks/README.md` per run.

    python examples/demo.py --keep_cache                  # once: scenes, text tokenizer and VQ-VAEs
    PYTHONPATH=. python benchmarks/demo_budgets.py --steps 900
    PYTHONPATH=. python benchmarks/demo_budgets.py --steps 1600 --target_tokens 64 --mixture 0.85,0.05,0.10

Re-uses a demo run's processor (text tokenizer and VQ-VAEs) and rendered scenes, so that only the 4M changes:
pre-tokenises the training scenes with that processor (once, kept in `--pretokenized`), trains the 4M with the
demo's settings and the overrides given (any `DemoSettings` field, e.g. `--steps`, `--learning_rate`,
`--target_tokens`), evaluates it on the held-out scenes as the demo does, and prints a Markdown row: the 4M's CPU
seconds of training (all threads) and its metrics.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import datasets
import torch
from transformers import set_seed
from transformers.utils import logging as hf_logging

from fourm_hf import FourMForMaskedModeling, FourMProcessor
from fourm_hf.cli import HelpFormatter

from bench_demo import load_demo  # this folder is on the path of a script run from it


def parse_args(demo) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    parser.add_argument("--demo_dir", default="outputs/demo", help="a demo run's --output_dir, run with --keep_cache")
    parser.add_argument("--pretokenized", default="outputs/demo_budgets/pretokenized", help="pre-tokenised scenes")
    parser.add_argument("--output_dir", default="outputs/demo_budgets/run", help="the 4M's Trainer output folder")
    parser.add_argument("--mixture", default=None, help="sampling weights of RGB -> all, caption -> RGB, all -> all")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (of each process)")
    parser.add_argument("--processes", type=int, default=1, help="processes the 4M trains in (DDP ranks)")
    parser.add_argument(
        "--fourm_seed", type=int, default=None,
        help="seed of the 4M alone (initial weights, masks, data order); default: --seed, as in the demo",
    )  # fmt: skip
    quick = demo.PRESETS["quick"]
    for field in dataclasses.fields(demo.DemoSettings):
        parser.add_argument(
            f"--{field.name}", type={"int": int, "float": float}[field.type], default=getattr(quick, field.name),
            help=field.metadata["help"],
        )  # fmt: skip
    return parser.parse_args()


def main() -> None:
    demo = load_demo()
    args = parse_args(demo)
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    settings = demo.DemoSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(demo.DemoSettings)})
    if args.mixture:
        demo.MIXTURE_WEIGHTS = tuple(float(x) for x in args.mixture.split(","))
    set_seed(settings.seed)
    names = demo.register_demo_modalities(settings)
    size, cache = settings.image_size, str(Path(args.demo_dir) / "cache")
    train = demo.scenes_dataset(0, settings.num_train, size, settings.seed, cache)
    held_out = demo.scenes_dataset(settings.num_train, settings.num_eval, size, settings.seed, cache)
    train_arrays, eval_arrays = demo.scene_arrays(train), demo.scene_arrays(held_out)
    eval_rows = held_out.select_columns(["caption", "det"]).to_list()
    processor_dir = Path(args.demo_dir) / "processor"
    processor = FourMProcessor.from_pretrained(processor_dir)
    text = train.select_columns(["caption", "det"])[:]
    _, max_length = demo.text_lengths(processor.tokenizer, text["caption"], text["det"])
    depth = demo.tokenizer_input(processor.image_processor, train_arrays, "depth", size)
    base = demo.baselines(train_arrays, depth.mean(0).numpy())

    if not Path(args.pretokenized).exists():
        demo.pretokenize_scenes(train, processor, names, settings).save_to_disk(args.pretokenized)
    rows = demo.InMemoryRows.from_dataset(datasets.load_from_disk(args.pretokenized))

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    mixture_path = output_dir / "mixture.json"
    mixture_path.write_text(json.dumps(demo.demo_mixture(settings, names)))
    if args.fourm_seed is not None:  # the scenes and tokenizers above keep --seed
        settings = dataclasses.replace(settings, seed=args.fourm_seed)
        set_seed(settings.seed)
    model = FourMForMaskedModeling(demo.fourm_config(settings, names, len(processor.tokenizer), max_length))
    start = demo.StageTimer.cpu()
    wall = time.perf_counter()
    model, _ = demo.train_fourm(model, rows, settings, mixture_path, processor_dir, output_dir, processes=args.processes)
    cpu_s, wall_s = demo.StageTimer.cpu() - start, time.perf_counter() - wall
    metrics, _ = demo.evaluate_scenes(model.eval(), processor, eval_arrays, eval_rows, base, names, settings)

    seg, depth = metrics["segmentation"]["model"], metrics["depth_standardised"]["model"]
    caption, det = metrics["caption"], metrics["det"]
    captions = "/".join(
        f"{caption[k]:.0%}".rstrip("%") for k in ("most_objects", "exact_objects", "object_recall", "object_precision")
    )
    print(
        f"| {settings.steps} x {settings.batch_size} | {settings.target_tokens} | {settings.learning_rate:g} | "
        f"{'/'.join(f'{w:g}' for w in demo.MIXTURE_WEIGHTS)} | {cpu_s:.0f} | {seg['mean_iou']:.3f} | "
        f"{depth['abs_error']:.4f} | {captions} | {det['recall@0.5']:.0%} / {det['precision@0.5']:.0%} |"
    )
    print(
        f"({args.threads} threads, {wall_s:.0f} s wall, {demo._cpu_model()}, torch kernels "
        f"{torch.backends.cpu.get_cpu_capability()}, load average {demo._load_average()})"
    )


if __name__ == "__main__":
    main()
