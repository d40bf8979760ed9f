"""End-to-end 4M on CPU: synthetic scenes -> modality tokenizers -> a small 4M -> any-to-any generation -> metrics.

The whole pipeline of the 4M paper, shrunk to run on a laptop CPU:

1. Data: ray-cast synthetic scenes (`fourm_hf.data.synthetic`) at 64x64 with aligned RGB, depth, semantic
   segmentation (floor, wall, sphere, cube, cylinder), a caption and object boxes. The evaluation scenes are held out
   (scene ids after the training ones).
2. Tokenizers: a WordPiece text tokenizer with the released special-token layout (`FourMTokenizer.train_new`) for
   captions and boxes, and three tiny ViT VQ-VAEs (`FourMVQVAE`, patch 8, an 8x8 token grid) for RGB, depth
   (4M's per-image standardised depth) and segmentation (class ids, cross-entropy), trained with `Trainer`.
3. Pre-tokenisation of the training scenes (`fourm_hf.data.pretokenization.pretokenize`).
4. A small 4M trained with the multimodal masking collator and the official recipe (`training/pretrain.py`) on a
   mixture of RGB -> all, caption -> RGB and all -> all masking.
5. Everything is saved with `save_pretrained` (model, and a `FourMProcessor` holding the text tokenizer and the
   three VQ-VAEs), reloaded, and the reloaded model generates on held-out scenes: RGB -> depth and segmentation
   (one parallel step), RGB -> caption and boxes (autoregressive), caption -> RGB (MaskGIT, decoded by the RGB
   VQ-VAE).
6. `metrics.json` (segmentation mIoU and depth errors next to predicting the training mean, caption object
   accuracy, box recall, the tokenizers' own reconstruction ceiling, timings) and `grid.png` (inputs, predictions,
   ground truth).

    python examples/demo.py                      # --quick (default): 5-11 min on 2 CPU cores
    python examples/demo.py --long               # bigger data, tokenizers and model, many more steps
    python examples/demo.py --steps 3000 --hidden_size 192 --output_dir outputs/demo_big   # any setting

Outputs go to `--output_dir` (default `outputs/demo`): `metrics.json`, `grid.png`, `fourm/` (the 4M),
`processor/` (image processor, text tokenizer, VQ-VAEs in sub-folders), `mixture.json`.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import io
import json
import math
import multiprocessing
import os
import re
import resource
import shutil
import statistics
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def compile_imports_alongside() -> None:
    """Fork a process that imports sympy, datasets, accelerate and transformers' `Trainer`, and leave it to finish
    alone. On the first run after `pip install --no-compile`, Python compiles each module on its first import: ~10 s
    of this script's ~16 s of imports, on one core. The forked process compiles those while this one starts from the
    other end (torch), so their bytecode is cached when this process reaches them: `--help` took 13-15 against 18-19 s
    here. It runs before any thread exists, and does nothing on one core or where no bytecode is written."""
    if sys.dont_write_bytecode or (os.cpu_count() or 1) < 2 or not hasattr(os, "fork"):
        return
    child = os.fork()
    if child:
        os.waitpid(child, 0)  # the child only forks the importer and returns
        return
    try:
        if os.fork() == 0:  # the importer, adopted by init: nobody waits for it
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)  # quiet: warnings of the imports are this process's to print
            os.dup2(devnull, 2)
            import sympy, datasets, accelerate, transformers.trainer  # noqa: F401, E401
    finally:
        os._exit(0)


if __name__ == "__main__":
    compile_imports_alongside()

import torch  # first: the process forked above starts from the other end
import datasets
import numpy as np
from PIL import Image, ImageDraw
from torch.utils.data import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.utils import logging as hf_logging

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the training scripts live next to the package, not inside it

from fourm_hf import (
    FourMConfig,
    FourMForMaskedModeling,
    FourMGenerationConfig,
    FourMImageProcessor,
    FourMProcessor,
    FourMTargetSchedule,
    FourMTokenizer,
    FourMVQVAE,
    FourMVQVAEConfig,
    plot_modalities,
    register_modality,
)
from fourm_hf.checks import check_int, check_number
from fourm_hf.cli import HelpFormatter
from fourm_hf.data.synthetic import COLORS, SHAPES, SYNTHETIC_CLASSES, synthetic_scenes_dataset
from fourm_hf.evaluation.metrics import mean_iou
from fourm_hf.data.pretokenization import ImageColumn, TextColumn, fixed_shape_arrays, pretokenize
from fourm_hf.data.serialization import boxes_to_text
from fourm_hf.data.streaming import run_parallel
from fourm_hf.distributed import run_forked_ranks
from fourm_hf.evaluation.rendering import colorize_semseg
from training.pretrain import FourMPretrainingArguments, run_pretraining

IMAGE_MODALITIES = ("rgb", "depth", "semseg")  # tokenised image modalities, as `tok_<name>@<size>`
NUM_CLASSES = len(SYNTHETIC_CLASSES)
OBJECT_CLASSES = tuple(range(SYNTHETIC_CLASSES.index(SHAPES[0]), NUM_CLASSES))  # sphere, cube, cylinder ids


# ----------------------------------------------------------------------------------------------------------------
# Settings


def setting(default: float, help: str) -> Any:
    """A field of `DemoSettings` with the help text of its command-line flag."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass
class DemoSettings:
    """Every size and length of the demo. The defaults are the `--quick` run."""

    image_size: int = setting(64, "scene side in pixels")
    patch_size: int = setting(8, "pixels per token side (tokens per side = image_size / patch_size)")
    num_train: int = setting(10000, "training scenes")
    num_eval: int = setting(500, "held-out scenes the metrics are computed on")
    num_grid: int = setting(6, "held-out scenes shown in grid.png")
    seed: int = setting(0, "seed of the scenes, the training runs and the generation")
    # modality tokenizers (VQ-VAEs)
    tokenizer_hidden_size: int = setting(64, "width of the VQ-VAEs")
    tokenizer_layers: int = setting(
        2, "encoder and decoder layers of the depth and segmentation VQ-VAEs (the RGB one has half, at least one)"
    )
    tokenizer_steps: int = setting(500, "training steps of each VQ-VAE")
    tokenizer_batch_size: int = setting(32, "scenes per training step of the RGB and depth VQ-VAEs")
    semseg_tokenizer_batch_size: int = setting(48, "scenes per training step of the segmentation VQ-VAE")
    tokenizer_learning_rate: float = setting(2e-3, "learning rate of the VQ-VAEs")
    rgb_codebook_size: int = setting(256, "codes of the RGB VQ-VAE")
    depth_codebook_size: int = setting(256, "codes of the depth VQ-VAE")
    semseg_codebook_size: int = setting(256, "codes of the segmentation VQ-VAE")
    rgb_salient_emphasis: float = setting(
        1.5, "extra weight of the RGB VQ-VAE's loss on pixels far from the mean image (0: plain MSE)"
    )
    # the 4M
    hidden_size: int = setting(64, "width of the 4M")
    # depth in the encoder, which reads the pixels, rather than in the decoder: better captions in about the same time
    encoder_layers: int = setting(4, "encoder layers of the 4M")
    decoder_layers: int = setting(2, "decoder layers of the 4M")
    steps: int = setting(1500, "pre-training steps of the 4M")
    batch_size: int = setting(32, "scenes per pre-training step")
    learning_rate: float = setting(2e-3, "peak learning rate of the 4M")
    muon_update_rms: float = setting(
        0.6, "RMS of the Muon updates of the 4M's layer matrices per unit learning rate (0: AdamW for every "
        "parameter, the official recipe; 0.2: AdamW's RMS)"
    )
    adamw_lr_scale: float = setting(
        3.0, "with Muon: learning rate of the 4M's embeddings, heads, norms and biases (AdamW) as a multiple of the "
        "layer matrices' one"
    )
    warmup_fraction: float = setting(0.05, "fraction of the steps spent warming the learning rate up")
    input_tokens: int = setting(64, "encoder tokens per scene in pre-training")
    target_tokens: int = setting(96, "decoder (target) tokens per scene in pre-training")
    # generation
    caption_to_rgb_steps: int = setting(8, "ROAR steps of caption -> RGB generation")
    caption_to_rgb_temperature: float = setting(1.0, "sampling temperature of caption -> RGB")
    caption_to_rgb_guidance: float = setting(3.0, "classifier-free guidance scale of caption -> RGB (0: none)")

    def __post_init__(self):
        """Every setting in range before any work starts: sizes and counts positive (the seed non-negative), rates
        and temperatures positive, fractions and weights in range."""
        non_negative = ("seed", "rgb_salient_emphasis", "caption_to_rgb_guidance", "muon_update_rms")
        for field in dataclasses.fields(self):
            value, name = getattr(self, field.name), f"--{field.name}"
            if field.type == "int":
                check_int(value, name, minimum=0 if field.name in non_negative else 1)
            elif field.name == "warmup_fraction":
                check_number(value, name, 0, 1, open_maximum=True)
            else:
                check_number(value, name, 0, open_minimum=field.name not in non_negative)
        if self.image_size % self.patch_size:
            raise ValueError(
                f"--image_size ({self.image_size}) must be a multiple of --patch_size ({self.patch_size})."
            )
        if max(1, round(self.warmup_fraction * self.steps)) >= self.steps:
            raise ValueError(
                f"--steps ({self.steps}) must leave steps after the warm-up ({self.warmup_fraction:g} of them, at "
                "least one): raise --steps or lower --warmup_fraction."
            )


PRESETS = {
    "quick": DemoSettings(),
    "long": DemoSettings(
        num_train=40000,
        tokenizer_hidden_size=128,
        tokenizer_steps=3000,
        tokenizer_batch_size=64,
        semseg_tokenizer_batch_size=64,
        rgb_codebook_size=512,
        hidden_size=256,
        encoder_layers=6,
        decoder_layers=6,
        steps=20000,
        batch_size=64,
        learning_rate=1e-3,
    ),
}


def parse_args(argv: list[str] | None = None) -> tuple[DemoSettings, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--quick", dest="preset", action="store_const", const="quick", help="the default run")
    preset.add_argument("--long", dest="preset", action="store_const", const="long", help="a longer, better run")
    parser.set_defaults(preset="quick")
    parser.add_argument("--output_dir", default="outputs/demo", help="where the models, metrics and grid go")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch CPU threads (not given: torch's choice, and a 4M trained in one process uses 1 or that many, "
        "the faster)",
    )  # fmt: skip
    parser.add_argument(
        "--processes", type=int, default=None,
        help="processes of one thread the 4M trains in, as DDP ranks (not given: 2 on a CPU machine with 2 cores or "
        "more, else 1)",
    )  # fmt: skip
    parser.add_argument("--keep_cache", action="store_true", help="keep the rendered and pre-tokenised scenes")
    for field in dataclasses.fields(DemoSettings):
        quick, long = getattr(PRESETS["quick"], field.name), getattr(PRESETS["long"], field.name)
        parser.add_argument(
            f"--{field.name}", type={"int": int, "float": float}[field.type], default=argparse.SUPPRESS,
            help=f"{field.metadata['help']} (default: {quick} with --quick, {long} with --long)",
        )
    args = parser.parse_args(argv)
    if args.threads is not None:
        check_int(args.threads, "--threads", minimum=1)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(DemoSettings) if hasattr(args, f.name)}
    settings = dataclasses.replace(PRESETS[args.preset], **overrides)
    return settings, args


def modality_names(settings: DemoSettings) -> dict[str, str]:
    """`{"pixels": "rgb@64", "rgb": "tok_rgb@64", "depth": "tok_depth@64", "semseg": "tok_semseg@64"}`."""
    size = settings.image_size
    return {"pixels": f"rgb@{size}", **{m: f"tok_{m}@{size}" for m in IMAGE_MODALITIES}}


def register_demo_modalities(settings: DemoSettings) -> dict[str, str]:
    """Register the demo's resolution: RGB pixels and three token grids of `image_size / patch_size` per side."""
    names = modality_names(settings)
    patch = settings.patch_size
    register_modality(names["pixels"], patch_size=patch, overwrite=True)
    for modality in IMAGE_MODALITIES:
        vocab = getattr(settings, f"{modality}_codebook_size")
        register_modality(names[modality], vocab_size=vocab, patch_size=patch, overwrite=True)
    return names


def keep_freed_memory() -> None:
    """Keep freed memory in this process's heap (and in the processes it forks later). glibc hands freed blocks over
    128 KB back to the system and maps them afresh, zeroed, on the next allocation: a training step of the demo's
    VQ-VAEs page-faulted 2,000-8,000 times. No effect without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GB of free memory at the top of the heap
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: serve blocks up to 32 MB (its maximum) from the heap
    except (OSError, AttributeError):
        pass


def skip_huge_page_requests() -> None:
    """Stop NumPy asking the kernel for transparent huge pages for its large arrays (`madvise`, on by default on
    Linux). Where the kernel then tries to compact memory at every page fault of such an array (THP `defrag` set to
    `madvise`, a common default) and finds no huge page, the first fill of a new 491 MB array took 2.5 s against 0.3 s
    without the request, and the demo's VQ-VAE inputs 9.3 against 2.7 s. The arrays are the same; only how their
    memory is mapped changes. Forked processes inherit the setting. No effect where NumPy lacks the switch."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage  # NumPy 2
    except ImportError:
        try:
            from numpy.core.multiarray import _set_madvise_hugepage  # NumPy 1
        except ImportError:
            return
    _set_madvise_hugepage(False)


class StageTimer:
    """Wall-clock and CPU time (all threads and child processes) of each named stage."""

    def __init__(self):
        self.stages: dict[str, dict[str, float]] = {}
        self.start_wall, self.start_cpu = time.perf_counter(), self.cpu()

    @staticmethod
    def cpu() -> float:
        """CPU seconds of this process and of its finished children (the scene-rendering processes)."""
        usages = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
        return sum(u.ru_utime + u.ru_stime for u in usages)

    @contextmanager
    def __call__(self, name: str):
        print(f"\n== {name}", flush=True)
        wall, cpu = time.perf_counter(), self.cpu()
        yield
        self.stages[name] = {"wall_s": time.perf_counter() - wall, "cpu_s": self.cpu() - cpu}
        print(
            f"   {name}: {self.stages[name]['wall_s']:.0f} s wall, {self.stages[name]['cpu_s']:.0f} s CPU", flush=True
        )

    def summary(self) -> dict[str, Any]:
        return {
            "stages": {k: {m: round(v, 1) for m, v in s.items()} for k, s in self.stages.items()},
            "total_wall_s": round(time.perf_counter() - self.start_wall, 1),
            "total_cpu_s": round(self.cpu() - self.start_cpu, 1),
            "torch_threads": torch.get_num_threads(),
            "load_average_1_5_15min": [round(x, 2) for x in _load_average()],
            "cpu_model": _cpu_model(),
            "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        }


def _load_average() -> tuple[float, ...]:
    try:
        with open("/proc/loadavg") as file:
            return tuple(float(x) for x in file.read().split()[:3])
    except OSError:
        return ()


def _cpu_model() -> str:
    """The CPU's model name as Linux reports it ("" elsewhere)."""
    try:
        with open("/proc/cpuinfo") as file:
            return next((line.split(":", 1)[1].strip() for line in file if line.startswith("model name")), "")
    except OSError:
        return ""


def stage_table(elapsed: dict[str, Any]) -> str:
    """The stage times of `StageTimer.summary()` as aligned text lines, the total and the machine last."""
    width = max(len(name) for name in elapsed["stages"])
    lines = [f"  {'stage'.ljust(width)}  wall s   CPU s"]
    for name, stage in elapsed["stages"].items():
        lines.append(f"  {name.ljust(width)}  {stage['wall_s']:6.0f}  {stage['cpu_s']:6.0f}")
    lines.append(f"  {'total'.ljust(width)}  {elapsed['total_wall_s']:6.0f}  {elapsed['total_cpu_s']:6.0f}")
    lines.append(
        f"  on {elapsed['cpu_model'] or 'an unknown CPU'} (torch kernels: {elapsed['aten_cpu_capability']}), "
        f"{elapsed['torch_threads']} torch threads, load average {elapsed['load_average_1_5_15min']}"
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Data and text


SCENE_COLUMNS = ("rgb", "depth", "semseg", "caption", "det")


def scenes_dataset(start: int, count: int, size: int, seed: int, cache_dir: str) -> datasets.Dataset:
    """Synthetic scenes `start, ..., start + count - 1` with the columns the demo uses (normals left out), rendered by
    two processes (one for small sets)."""
    return synthetic_scenes_dataset(
        count, size, size, seed=seed, start=start, cache_dir=cache_dir, columns=SCENE_COLUMNS,
        num_proc=2 if count >= 200 else 1,
    )  # fmt: skip


def det_text(det: dict, num_bins: int) -> str:
    """A scene's boxes (4M's det format) as the text the det modality is trained on."""
    instances = det["instances"]
    return boxes_to_text([i["boxes"] for i in instances], [i["class_name"] for i in instances], num_bins=num_bins)


def train_text_tokenizer(captions: list[str], dets: list[dict], image_size: int) -> FourMTokenizer:
    """WordPiece on the training captions and box labels, with 4M's layout of reserved ids: [PAD], [UNK], [SOS],
    [EOS] and 200 sentinels at their released ids (generation's defaults apply unchanged), then value tokens and
    object classes sized for the scenes: `image_size + 1` coordinate bins per axis (box edges lie on the pixel grid,
    so every edge has its own bin) and the three shapes. With the released 1,000 bins and 80 COCO classes the
    vocabulary would be 4,380 tokens instead of ~560, and the 4M's text heads would cost more than its decoder."""
    labels = [" ".join(i["class_name"] for i in det["instances"]) for det in dets]
    bins = image_size + 1
    reserved = 4 + 200 + 4 * bins + len(SHAPES)
    return FourMTokenizer.train_new(
        captions + labels, vocab_size=reserved + 128, num_value_bins=bins, object_classes=SHAPES
    )


def text_lengths(tokenizer: FourMTokenizer, captions: list[str], dets: list[dict]) -> tuple[int, int]:
    """The longest caption or box sequence in tokens, and the 4M's `max_length` for them (a multiple of 8 with room
    for [EOS] and the closing sentinel)."""
    lengths = [len(tokenizer(t).input_ids) for t in captions]
    lengths += [len(tokenizer(det_text(d, tokenizer.num_value_bins)).input_ids) for d in dets]
    return max(lengths), 8 * math.ceil((max(lengths) + 2) / 8)


def scene_arrays(dataset, columns: tuple[str, ...] = IMAGE_MODALITIES) -> dict[str, np.ndarray]:
    """RGB (N, H, W, 3) uint8, depth (N, H, W) float32 and segmentation (N, H, W) uint8 of a scenes dataset (those of
    `columns`): depth and segmentation as stored, read from Arrow in one piece (`fixed_shape_arrays`), RGB decoded
    from its PNG bytes. `datasets`' numpy formatting builds each row's arrays and images one by one, 3x slower here."""
    arrays = {}
    if "rgb" in columns:
        pngs = dataset.select_columns(["rgb"]).with_format("arrow")[:].column("rgb").combine_chunks().field("bytes")
        arrays["rgb"] = np.stack([np.asarray(Image.open(io.BytesIO(png))) for png in pngs.to_pylist()])
    stored = [name for name in columns if name != "rgb"]
    return arrays | (fixed_shape_arrays(dataset.select_columns(stored)) if stored else {})


# ----------------------------------------------------------------------------------------------------------------
# Modality tokenizers


class InMemoryRows(Dataset):
    """Rows of equal-length columns held in memory: `rows[i] = {name: column[i]}`. Reading a row from an Arrow-backed
    `datasets.Dataset` costs ~1 ms of formatting; the 4M steps of this demo take ~300 ms for 32 rows, so the
    pre-tokenised scenes are loaded once (a few hundred MB for the quick run) and indexed from memory."""

    def __init__(self, columns: dict[str, Any]):
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise ValueError(f"InMemoryRows needs columns of one length, got lengths {sorted(lengths)}")
        self.columns = columns

    @classmethod
    def from_dataset(cls, dataset: datasets.Dataset) -> InMemoryRows:
        """The columns of a dataset, as `datasets`' numpy format gives them (variable-length ones as lists of arrays);
        fixed-shape arrays are read from Arrow in one piece, in their stored dtypes (`fixed_shape_arrays`: 1.4
        against 8.3 s for the demo's 10,000 pre-tokenised scenes)."""
        columns = fixed_shape_arrays(dataset)
        others = [name for name in dataset.column_names if name not in columns]
        if others:
            arrays = dataset.with_format("numpy", columns=others)[:]
            columns |= {name: list(arrays[name]) if arrays[name].dtype == object else arrays[name] for name in others}
        return cls({name: columns[name] for name in dataset.column_names})

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {name: column[index] for name, column in self.columns.items()}


def tokenizer_input(
    processor: FourMImageProcessor, arrays: dict[str, np.ndarray], modality: str, size: int
) -> torch.Tensor:
    """The VQ-VAE input of one image modality, normalised as 4M's tokenizers expect: RGB in [-1, 1], standardised
    depth (B, 1, S, S), shifted class ids (B, S, S) with 0 = void."""
    if modality == "rgb":
        return torch.from_numpy(processor.preprocess_rgb(list(arrays["rgb"]), "tokenizer", size))
    if modality == "depth":
        return torch.from_numpy(processor.preprocess_depth(list(arrays["depth"]), size))
    return torch.from_numpy(processor.preprocess_semseg(list(arrays["semseg"]), size))


def tokenizer_inputs(
    processor: FourMImageProcessor, arrays: dict[str, np.ndarray], size: int
) -> dict[str, torch.Tensor]:
    """`tokenizer_input` of every image modality."""
    return {modality: tokenizer_input(processor, arrays, modality, size) for modality in IMAGE_MODALITIES}


def vqvae_batch_size(modality: str, settings: DemoSettings) -> int:
    """Scenes per training step of a VQ-VAE: `semseg_tokenizer_batch_size` for segmentation, else
    `tokenizer_batch_size`. (Trained on steps of 32, the segmentation VQ-VAE round-tripped about as well as on 48,
    0.845 against 0.854 mIoU, but the 4M learned its tokens worse: its final loss on them 0.88 against 0.57, mIoU
    0.737 against 0.745.)"""
    return settings.semseg_tokenizer_batch_size if modality == "semseg" else settings.tokenizer_batch_size


def vqvae_config(modality: str, settings: DemoSettings) -> FourMVQVAEConfig:
    """A tiny ViT VQ-VAE: mse for RGB, l1 for depth, cross-entropy over class ids for segmentation (each class
    embedded in 8 channels: 32 cost 20% more time for the same round trip, mIoU 0.852 against 0.850)."""
    codebook = getattr(settings, f"{modality}_codebook_size")
    batch_tokens = vqvae_batch_size(modality, settings) * (settings.image_size // settings.patch_size) ** 2
    per_modality = {
        "rgb": {"num_channels": 3, "reconstruction_loss": "mse"},
        "depth": {"num_channels": 1, "reconstruction_loss": "l1"},
        "semseg": {"num_classes": NUM_CLASSES + 1, "num_channels": 8, "reconstruction_loss": "cross_entropy"},
    }[modality]
    width, layers = settings.tokenizer_hidden_size, settings.tokenizer_layers
    if modality == "rgb":  # its round trip is as good with half the layers (see benchmarks/README.md)
        layers = max(1, layers // 2)
    return FourMVQVAEConfig(
        image_size=settings.image_size, patch_size=settings.patch_size,
        encoder_hidden_size=width, encoder_num_layers=layers, encoder_num_heads=4,
        decoder_hidden_size=width, decoder_num_layers=layers, decoder_num_heads=4,
        codebook_size=codebook, latent_dim=32,
        dead_code_threshold=batch_tokens / codebook / 32,  # the official formula (coef_ema_dead_code = 32)
        **per_modality,
    )  # fmt: skip


class SalientPixelTrainer(Trainer):
    """`Trainer` for a VQ-VAE whose reconstruction error is weighted per pixel by `1 + emphasis * d / mean(d)`, with
    `d` the pixel's distance to the training set's mean image: objects cover ~7% of a synthetic scene, and with a plain
    MSE a small RGB tokenizer spends its codes on shades of floor and wall and washes the objects' colours out."""

    def __init__(self, *args: Any, mean_image: torch.Tensor, emphasis: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.mean_image, self.emphasis = mean_image, emphasis

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        pixels = inputs["pixel_values"]
        outputs = model(pixels)
        distance = (pixels - self.mean_image.to(pixels.device)).abs().mean(1, keepdim=True)
        weight = 1 + self.emphasis * distance / distance.mean().clamp(min=1e-6)
        error = (weight * (outputs.reconstruction - pixels) ** 2).mean() / weight.mean()
        loss = error + model.config.codebook_weight * outputs.quantization_loss
        return (loss, outputs) if return_outputs else loss


def train_vqvae(modality: str, inputs: torch.Tensor, settings: DemoSettings, output_dir: Path) -> FourMVQVAE:
    """Train one VQ-VAE with `Trainer` and the tokenizer recipe of `training/train_vq_model.py` (AdamW betas
    (0.9, 0.99), weight decay 0.05, gradient clipping at 1) with a linear decay after the warm-up, where that recipe
    has a cosine (as good in 500 steps of 32 scenes as the cosine in 500 of 48); the RGB one with salient pixels
    emphasised (see `SalientPixelTrainer`)."""
    set_seed(settings.seed)  # the same model whichever process trains it, and in whatever order
    model = FourMVQVAE(vqvae_config(modality, settings))
    args = TrainingArguments(
        output_dir=str(output_dir / "runs" / f"vqvae_{modality}"),
        per_device_train_batch_size=vqvae_batch_size(modality, settings),
        max_steps=settings.tokenizer_steps,
        learning_rate=settings.tokenizer_learning_rate,
        warmup_steps=max(1, settings.tokenizer_steps // 20),
        lr_scheduler_type="linear", adam_beta2=0.99, weight_decay=0.05, max_grad_norm=1.0,
        logging_steps=max(1, settings.tokenizer_steps // 4), save_strategy="no", report_to="none",
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, seed=settings.seed,
    )  # fmt: skip
    options = {"model": model, "args": args, "train_dataset": InMemoryRows({"pixel_values": inputs})}
    if modality == "rgb" and settings.rgb_salient_emphasis > 0:
        trainer = SalientPixelTrainer(**options, mean_image=inputs.mean(0), emphasis=settings.rgb_salient_emphasis)
    else:
        trainer = Trainer(**options)
    trainer.train()
    return model.eval().cpu()  # pre-tokenisation and generation run on the CPU


def _trained_vqvae_state(
    modality: str, scenes: datasets.Dataset, processor: FourMImageProcessor, settings: DemoSettings, output_dir: Path
) -> dict:
    """`train_vqvae` on the `tokenizer_input` of the scenes' `modality` column, in a worker process: the weights, the
    per-pixel mean of the inputs (None for class ids) and the CPU seconds go back to the parent, not the module or
    the inputs."""
    start = StageTimer.cpu()
    inputs = tokenizer_input(processor, scene_arrays(scenes, (modality,)), modality, settings.image_size)
    state = train_vqvae(modality, inputs, settings, output_dir).state_dict()
    mean = inputs.mean(0).numpy() if inputs.is_floating_point() else None
    return {"state": state, "mean_input": mean, "cpu_s": StageTimer.cpu() - start}


def train_vqvaes(
    scenes: datasets.Dataset, processor: FourMImageProcessor, settings: DemoSettings, output_dir: Path, num_proc: int
) -> tuple[dict[str, FourMVQVAE], dict[str, dict]]:
    """The three VQ-VAEs, trained side by side in up to `num_proc` processes of one torch thread each (tiny models
    use one core far better than they share two), the slowest first, each process reading its modality from the
    `scenes` and building its model's inputs itself. On two cores the demo runs two processes: the segmentation
    VQ-VAE (the longest) in one, depth then RGB in the other, which together take about as long; three processes
    would make the segmentation one share a core for most of its run. Returns the models by modality and, for each,
    the per-pixel mean of its inputs (`mean_input`, None for segmentation's class ids) and the CPU seconds it took
    (`cpu_s`)."""
    order = sorted(IMAGE_MODALITIES, key=lambda m: ["semseg", "depth", "rgb"].index(m))  # the slowest first
    jobs = [(m, scenes, processor, settings, output_dir) for m in order]
    if num_proc <= 1 or torch.cuda.is_available():
        results = [_trained_vqvae_state(*job) for job in jobs]
    else:
        results = run_parallel(_trained_vqvae_state, jobs, num_proc)
    models, details = {}, {}
    for modality, result in zip(order, results):
        models[modality] = FourMVQVAE(vqvae_config(modality, settings))
        models[modality].load_state_dict(result.pop("state"))
        models[modality].eval()
        details[modality] = result
    return models, details


def pretokenize_scenes(
    scenes: datasets.Dataset, processor: FourMProcessor, names: dict[str, str], settings: DemoSettings
) -> datasets.Dataset:
    """RGB pixels, the three token grids (through the processor's VQ-VAEs), captions and boxes of the scenes, in two
    processes of one torch thread each where there are two cores."""
    workers = min(2, os.cpu_count() or 1)
    image_columns = [ImageColumn("rgb", names["pixels"])] + [
        ImageColumn(m, names[m], tokenizer=processor.vq_models[names[m]]) for m in IMAGE_MODALITIES
    ]
    text_columns = [TextColumn("caption", "caption"), TextColumn("det", "det")]
    return pretokenize(
        scenes, image_columns, text_columns, text_tokenizer=processor.tokenizer,
        image_processor=processor.image_processor, image_size=settings.image_size, num_crops=1, seed=settings.seed,
        batch_size=256, num_shards=workers, num_proc=workers,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# The 4M


def fourm_config(settings: DemoSettings, names: dict[str, str], vocab_size: int, max_length: int) -> FourMConfig:
    """A small 4M over RGB pixels, the three token grids, captions and boxes (the text modalities with the demo
    tokenizer's vocabulary and a short maximum length)."""
    inputs = [names["pixels"], names["rgb"], names["depth"], names["semseg"], "caption", "det"]
    sequence = {"kind": "sequence", "vocab_size": vocab_size, "max_length": max_length, "max_tokens": max_length}
    return FourMConfig(
        hidden_size=settings.hidden_size,
        num_encoder_layers=settings.encoder_layers,
        num_decoder_layers=settings.decoder_layers,
        num_attention_heads=max(1, settings.hidden_size // 32),
        encoder_modalities=inputs,
        decoder_modalities=inputs[1:],
        modality_specs={"caption": sequence, "det": sequence},
        skip_padding_slots=True,  # a third of the decoder slots hold no target: ~10% faster steps
    )


MIXTURE_WEIGHTS = (0.85, 0.05, 0.1)  # RGB -> all, caption -> RGB, all -> all


def demo_mixture(settings: DemoSettings, names: dict[str, str]) -> dict[str, Any]:
    """Three masking strategies (in the official alphas layout), sampled with `MIXTURE_WEIGHTS`: RGB pixels -> depth,
    segmentation, caption and boxes; the whole caption -> RGB tokens; and all -> all with random splits (what
    multi-step decoding needs)."""
    big, half = 1000.0, 0.5
    entries = {
        names["pixels"]: {"input_alphas": [big, 0.0, half], "target_alphas": [0.0, 0.0, 0.0]},
        names["rgb"]: {"input_alphas": [0.0, 0.0, half], "target_alphas": [0.0, 1.0, half]},
        names["depth"]: {"input_alphas": [0.0, 0.0, half], "target_alphas": [half, 0.0, half]},
        names["semseg"]: {"input_alphas": [0.0, 0.0, half], "target_alphas": [half, 0.0, half]},
        "caption": {"input_alphas": [0.0, big, half], "target_alphas": [half, 0.0, half],
                    "keep": ["random", "all", "random"]},
        "det": {"input_alphas": [0.0, 0.0, half], "target_alphas": [half, 0.0, half]},
    }  # fmt: skip
    return {
        "name": "demo_rgb2all_caption2rgb_all2all",
        "description": "Synthetic-scenes demo: RGB -> all, caption -> RGB, all -> all.",
        "input_tokens": settings.input_tokens,
        "target_tokens": settings.target_tokens,
        "sampling_weights": list(MIXTURE_WEIGHTS),
        "alphas_mixture": entries,
    }


class ThreadChooser(TrainerCallback):
    """Runs training steps with each candidate number of torch threads in turn, keeps the fastest, and measures again
    every `every` steps.

    Two threads nearly halve a 4M step on an idle 2-core machine (0.11 against 0.19 s here), but when the second core
    is busy, or is a hyperthread of the first, OpenMP threads wait on each other and one thread can be several times
    faster. The probe steps are ordinary training steps: the first of each candidate's `probe_steps` is not timed
    (the thread pool changes size), the median of the others is compared.
    """

    def __init__(self, candidates: list[int], probe_steps: int = 4, every: int = 300):
        self.candidates, self.probe_steps, self.every = candidates, probe_steps, every
        self.times: dict[int, list[float]] = {}
        self.choices: list[dict[str, Any]] = []  # one per measurement: step, threads, median seconds per candidate
        self.start = 0  # the step training started (or resumed) at: measuring periods count from there
        self.last_end = 0.0

    def _prepare(self, step: int) -> None:
        """Set the threads of the step after `step`."""
        phase, probing = (step - self.start) % self.every, self.probe_steps * len(self.candidates)
        if phase == 0:
            self.times = {c: [] for c in self.candidates}
        if phase < probing:
            torch.set_num_threads(self.candidates[phase // self.probe_steps])
        elif phase == probing:
            medians = {c: statistics.median(t) for c, t in self.times.items()}
            best = min(medians, key=medians.get)
            torch.set_num_threads(best)
            self.choices.append({"step": step, "threads": best, "median_step_s": medians})
            print(f"   step {step}: {best} torch threads (" + ", ".join(
                f"{c}: {m:.2f} s per step" for c, m in medians.items()) + ")", flush=True)  # fmt: skip

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = state.global_step
        self._prepare(state.global_step)
        self.last_end = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        if self.choices:  # not a probe's count: what was measured fastest last
            torch.set_num_threads(self.choices[-1]["threads"])

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        done = (state.global_step - 1 - self.start) % self.every  # the phase of the step that just ended
        if done < self.probe_steps * len(self.candidates) and done % self.probe_steps:
            self.times[self.candidates[done // self.probe_steps]].append(now - self.last_end)
        self._prepare(state.global_step)
        self.last_end = time.perf_counter()


def check_processes(settings: DemoSettings, processes: int) -> None:
    check_int(processes, "--processes", minimum=1)
    if settings.batch_size % processes:
        raise ValueError(
            f"--batch_size ({settings.batch_size}) must be a multiple of --processes ({processes}): every process "
            "trains on an equal share of each batch."
        )


def train_fourm(
    model, dataset, settings: DemoSettings, mixture_path: Path, tokenizer_dir: Path, output_dir: Path,
    callbacks: list | None = None, processes: int = 1,
) -> tuple[FourMForMaskedModeling, list[dict]]:  # fmt: skip
    """Pre-train with `training/pretrain.py` (official weight-decay groups, masking collator; warm-up, then a linear
    decay rather than the official cosine; Muon for the layer matrices unless `settings.muon_update_rms` is 0, the
    other parameters on AdamW at `settings.adamw_lr_scale` times the lr) and save the 4M to `output_dir/fourm`. With
    `processes > 1`, in that many forked CPU processes of one torch thread each (DDP over gloo, `batch_size /
    processes` scenes per process and step: the same samples, masks and learning rate per step as one process;
    gradients and Muon's updates summed in shared memory, each process orthogonalising a share of the matrices);
    `callbacks` then run in every process. Returns the trained 4M and the log history."""
    check_processes(settings, processes)
    tokens_per_step = (settings.input_tokens + settings.target_tokens) * settings.batch_size
    save_dir = output_dir / "fourm"

    def train(rank: int = 0) -> list[dict]:
        args = FourMPretrainingArguments(
            output_dir=str(output_dir / "runs" / "fourm"),
            mixture=str(mixture_path),
            text_tokenizer=str(tokenizer_dir),
            per_device_train_batch_size=settings.batch_size // processes,
            base_learning_rate=settings.learning_rate * 256 / settings.batch_size,
            total_tokens=settings.steps * tokens_per_step,
            warmup_tokens=max(1, round(settings.warmup_fraction * settings.steps)) * tokens_per_step,
            logging_steps=max(1, settings.steps // 10), save_strategy="no", report_to="none", auto_resume=False,
            use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
            seed=settings.seed, masking_seed=settings.seed,
            optim="adamw_torch_fused",  # the official AdamW, one fused kernel (4x faster steps on CPU than foreach)
            ddp_broadcast_buffers=False,  # DDP: the only buffers are fixed position tables, one collective less a step
            # every parameter gets a gradient from every batch (a modality without targets adds 0 x its logits), so
            # DDP need not search the autograd graph for unused ones after each forward (~4% of a step)
            ddp_find_unused_parameters=False,
            lr_decay="linear",
            # with Muon, each process orthogonalises half of the matrices (the sums in shared memory make it pay)
            **({"muon": True, "muon_update_rms": settings.muon_update_rms, "adamw_lr_scale": settings.adamw_lr_scale,
                "muon_split_across_ranks": processes > 1} if settings.muon_update_rms else {}),
        )  # fmt: skip
        trainer = run_pretraining(args, model=model, train_dataset=dataset, callbacks=callbacks)
        if rank == 0:
            trainer.model.save_pretrained(save_dir)
        return trainer.state.log_history

    if processes == 1:
        return model, train()
    log_history = run_forked_ranks(train, processes)[0]
    return FourMForMaskedModeling.from_pretrained(save_dir), log_history


# ----------------------------------------------------------------------------------------------------------------
# Metrics

_OBJECT_PATTERN = re.compile(r"\b(" + "|".join(COLORS) + r")\s+(" + "|".join(SHAPES) + r")\b")


def objects_in_caption(caption: str) -> list[tuple[str, str]]:
    """The `(colour, shape)` pairs a caption names, in order: 'a small red sphere and a blue cube ...' ->
    [('red', 'sphere'), ('blue', 'cube')]."""
    return _OBJECT_PATTERN.findall(caption.lower())


def caption_metrics(predicted: list[str], reference: list[str]) -> dict[str, Any]:
    """How well generated captions name a scene's objects (as multisets of (colour, shape) pairs).

    `exact_objects`: share of scenes whose caption names exactly the right objects; `exact_shapes`: the same for
    shapes alone; `most_objects`: share of scenes where more than half of the objects are named right (colour and
    shape); `object_precision` / `object_recall`: over all scenes' (colour, shape) pairs; `shape_confusion`:
    `"reference -> predicted"` counts over the objects of captions that name as many objects as the reference,
    paired in caption order.
    """
    exact = shapes = most = hits = num_predicted = num_reference = 0
    confusion = Counter()
    for pred, ref in zip(predicted, reference, strict=True):
        pred_list, ref_list = objects_in_caption(pred), objects_in_caption(ref)
        pred_objects, ref_objects = Counter(pred_list), Counter(ref_list)
        right = sum((pred_objects & ref_objects).values())
        exact += pred_objects == ref_objects
        shapes += Counter(s for _, s in pred_list) == Counter(s for _, s in ref_list)
        most += right > len(ref_list) / 2 or pred_objects == ref_objects
        hits += right
        num_predicted += len(pred_list)
        num_reference += len(ref_list)
        if len(pred_list) == len(ref_list):
            confusion.update(f"{r} -> {p}" for (_, r), (_, p) in zip(ref_list, pred_list))
    count = max(len(reference), 1)
    return {
        "exact_objects": exact / count,
        "exact_shapes": shapes / count,
        "most_objects": most / count,
        "object_precision": hits / num_predicted if num_predicted else 0.0,
        "object_recall": hits / num_reference if num_reference else 1.0,
        "shape_confusion": dict(sorted(confusion.items())),
    }


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """IoU of two (xmin, ymin, xmax, ymax) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


def detection_metrics(predicted: list[dict], reference: list[dict], threshold: float = 0.5) -> dict[str, float]:
    """Greedy one-to-one matching of boxes with the same label (highest IoU first): recall and precision at
    IoU >= `threshold`, and the mean IoU of the matched reference boxes (0 for unmatched ones)."""
    matched = num_predicted = num_reference = 0
    ious = []
    for pred, ref in zip(predicted, reference, strict=True):
        pairs = sorted(
            ((box_iou(p, r), i, j) for i, (p, pl) in enumerate(zip(pred["boxes"], pred["labels"]))
             for j, (r, rl) in enumerate(zip(ref["boxes"], ref["labels"])) if pl == rl),
            reverse=True,
        )  # fmt: skip
        used_pred, used_ref, best = set(), set(), {}
        for iou, i, j in pairs:
            if i not in used_pred and j not in used_ref:
                used_pred.add(i), used_ref.add(j)
                best[j] = iou
        matched += sum(iou >= threshold for iou in best.values())
        ious += [best.get(j, 0.0) for j in range(len(ref["boxes"]))]
        num_predicted += len(pred["boxes"])
        num_reference += len(ref["boxes"])
    return {
        f"recall@{threshold}": matched / num_reference if num_reference else 1.0,
        f"precision@{threshold}": matched / num_predicted if num_predicted else 0.0,
        "mean_iou_of_reference_boxes": float(np.mean(ious)) if ious else 1.0,
    }


def segmentation_metrics(predicted: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """mIoU over the five classes; a predicted void pixel (255) counts as an error."""
    predicted = np.where(predicted == 255, (reference + 1) % NUM_CLASSES, predicted)
    result = mean_iou(predicted, reference, num_labels=NUM_CLASSES, ignore_index=None)
    per_class = dict(zip(SYNTHETIC_CLASSES, np.round(result["per_category_iou"], 4).tolist()))
    objects = [per_class[SYNTHETIC_CLASSES[c]] for c in OBJECT_CLASSES]
    return {
        "mean_iou": result["mean_iou"], "object_mean_iou": float(np.nanmean(objects)),
        "pixel_accuracy": result["overall_accuracy"], "per_class_iou": per_class,
    }  # fmt: skip


def depth_errors(predicted: np.ndarray, reference: np.ndarray, objects: np.ndarray) -> dict[str, float]:
    """Mean absolute error and RMSE of standardised depth, over all pixels and over object pixels."""
    error = predicted - reference
    return {
        "abs_error": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "object_abs_error": float(np.abs(error[objects]).mean()),
    }


def baselines(arrays: dict[str, np.ndarray], mean_depth: np.ndarray) -> dict[str, np.ndarray]:
    """Predict-the-training-set predictors: the per-pixel mean standardised depth map (`mean_depth`, the mean of the
    depth VQ-VAE's inputs) and the per-pixel majority class."""
    counts = np.stack([(arrays["semseg"] == c).sum(0) for c in range(NUM_CLASSES)])
    return {"depth": mean_depth.reshape(counts.shape[1:]), "semseg": counts.argmax(0)}


# ----------------------------------------------------------------------------------------------------------------
# Generation and evaluation


def rgb_to_x(model, processor, images: list[np.ndarray], names: dict[str, str], batch_size: int = 50) -> dict:
    """RGB -> depth and segmentation (one parallel step, argmax), RGB -> caption and boxes (greedy autoregressive),
    each target from the RGB pixels alone. Returns the decoded outputs of each target."""
    targets = {
        names["depth"]: FourMTargetSchedule(names["depth"], "maskgit", num_steps=1, temperature=0.0),
        names["semseg"]: FourMTargetSchedule(names["semseg"], "maskgit", num_steps=1, temperature=0.0),
        "caption": FourMTargetSchedule("caption", temperature=0.0),
        "det": FourMTargetSchedule("det", temperature=0.0),
    }
    decoded = {name: [] for name in targets}
    for start in range(0, len(images), batch_size):
        inputs = processor(images=images[start : start + batch_size])
        for name, schedule in targets.items():
            output = model.generate(inputs, FourMGenerationConfig(targets=[schedule]), seed=0, progress_bar=False)
            values = processor.postprocess(output, names=[name])[name]
            decoded[name] += list(values)
    return {name: np.stack(v) if not isinstance(v[0], (str, dict)) else v for name, v in decoded.items()}


def caption_to_rgb(model, processor, captions: list[str], names: dict[str, str], settings: DemoSettings) -> np.ndarray:
    """Caption -> RGB tokens -> RGB through the VQ-VAE: ROAR (random order, cosine schedule), temperature decaying
    linearly, classifier-free guidance on the caption. (With the quick run's model, MaskGIT's most-confident-first
    order fills the grid with background tokens and rarely draws an object.)"""
    schedule = FourMTargetSchedule(
        names["rgb"], "roar", num_steps=settings.caption_to_rgb_steps,
        temperature=settings.caption_to_rgb_temperature, temperature_schedule="linear",
        guidance_scale=settings.caption_to_rgb_guidance,
    )  # fmt: skip
    conditions = ["caption"] if settings.caption_to_rgb_guidance != 1.0 else None
    config = FourMGenerationConfig(targets=[schedule], conditions=conditions)
    output = model.generate(processor(text=captions), config, seed=settings.seed)
    return processor.postprocess(output, names=[names["rgb"]])[names["rgb"]]


def tokenizer_round_trip(processor, arrays: dict[str, np.ndarray], names: dict[str, str]) -> dict[str, np.ndarray]:
    """Ground truth encoded and decoded by each VQ-VAE: the best any token prediction can do."""
    inputs = {names[m]: arrays[m] for m in IMAGE_MODALITIES}
    return processor.postprocess({n: processor.encode_modality(n, v) for n, v in inputs.items()})


def evaluate_scenes(model, processor, eval_arrays, eval_rows, base, names, settings) -> tuple[dict, dict]:
    """Every metric on the held-out scenes; returns (metrics, predictions)."""
    size = settings.image_size
    reference_depth = processor.image_processor.preprocess_depth(list(eval_arrays["depth"]), size)[:, 0]
    reference_semseg = eval_arrays["semseg"].astype(np.int64)
    objects = np.isin(reference_semseg, OBJECT_CLASSES)
    reference_captions = [row["caption"] for row in eval_rows]
    reference_det = [
        {"boxes": [tuple(i["boxes"]) for i in row["det"]["instances"]],
         "labels": [i["class_name"] for i in row["det"]["instances"]]}
        for row in eval_rows
    ]  # fmt: skip

    predictions = rgb_to_x(model, processor, list(eval_arrays["rgb"]), names)
    ceiling = tokenizer_round_trip(processor, eval_arrays, names)
    n = len(reference_semseg)
    mean_depth = np.broadcast_to(base["depth"], reference_depth.shape)
    majority = np.broadcast_to(base["semseg"], reference_semseg.shape)
    metrics = {
        "num_eval_scenes": n,
        "segmentation": {
            "model": segmentation_metrics(predictions[names["semseg"]], reference_semseg),
            "baseline_training_majority": segmentation_metrics(majority, reference_semseg),
            "tokenizer_round_trip": segmentation_metrics(ceiling[names["semseg"]], reference_semseg),
        },
        "depth_standardised": {
            "model": depth_errors(predictions[names["depth"]], reference_depth, objects),
            "baseline_training_mean": depth_errors(mean_depth, reference_depth, objects),
            "tokenizer_round_trip": depth_errors(ceiling[names["depth"]], reference_depth, objects),
        },
        "caption": caption_metrics(predictions["caption"], reference_captions),
        "det": detection_metrics(predictions["det"], reference_det),
        "examples": [
            {"reference": r, "generated": p} for r, p in zip(reference_captions[:10], predictions["caption"][:10])
        ],
    }
    predictions["reference_det"], predictions["reference_depth"] = reference_det, reference_depth
    predictions["ceiling_rgb"] = ceiling[names["rgb"]]
    return metrics, predictions


def draw_grid(eval_arrays, eval_rows, predictions, generated_rgb, names, settings, path: Path) -> Image.Image:
    """One row per held-out scene: input, depth / segmentation / boxes / caption (truth, then prediction), and the
    image generated from the true caption."""
    size = settings.image_size
    rows = []
    for i in range(len(generated_rgb)):
        depth = predictions["reference_depth"][i : i + 1]
        tiles = {  # titles are "<modality family>@<role>": the family picks the renderer
            "rgb@input": eval_arrays["rgb"][i : i + 1],
            "tok_depth@truth": depth,
            # the colour map spans each tile's own range: clip predictions to the truth's for comparable colours
            "tok_depth@predicted": np.clip(predictions[names["depth"]][i : i + 1], depth.min(), depth.max()),
            "tok_semseg@truth": eval_arrays["semseg"][i : i + 1],
            "tok_semseg@predicted": predictions[names["semseg"]][i : i + 1],
            "det@truth": predictions["reference_det"][i : i + 1],
            "det@predicted": predictions["det"][i : i + 1],
            "caption@truth": [eval_rows[i]["caption"]],
            "caption@predicted": [predictions["caption"][i]],
            "tok_rgb@from true caption": generated_rgb[i : i + 1],
        }
        rows.append(plot_modalities(tiles, tile_size=2 * size + 16, columns=len(tiles)))
    header = 52
    grid = Image.new("RGB", (rows[0].width, header + sum(r.height for r in rows)), "white")
    draw = ImageDraw.Draw(grid)
    draw.text(
        (6, 4),
        "Held-out synthetic scenes. Predictions: RGB -> depth / segmentation (1 step), RGB -> boxes / caption "
        "(autoregressive).\nLast column: RGB generated from the true caption (ROAR, "
        f"{settings.caption_to_rgb_steps} steps, guidance {settings.caption_to_rgb_guidance:g}) and decoded by the RGB "
        "VQ-VAE. Depth: near = blue, far = red.",
        fill="black",
    )
    left = 6
    draw.text((left, 36), "Segmentation:", fill="black")
    left += 80
    for class_id, color in enumerate(colorize_semseg(np.arange(NUM_CLASSES))):
        draw.rectangle([left, 36, left + 10, 46], fill=tuple(int(c) for c in color))
        draw.text((left + 14, 36), SYNTHETIC_CLASSES[class_id], fill="black")
        left += 80
    top = header
    for row in rows:
        grid.paste(row, (0, top))
        top += row.height
    grid.save(path)
    return grid


# ----------------------------------------------------------------------------------------------------------------
# The pipeline


def default_processes(settings: DemoSettings) -> int:
    """The processes the 4M trains in by default: two where there is no GPU, this process may run on two cores or
    more, processes can be forked and the batch splits in two; else one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    forkable = "fork" in multiprocessing.get_all_start_methods()
    usable = cores >= 2 and forkable and settings.batch_size % 2 == 0 and not torch.cuda.is_available()
    return 2 if usable else 1


def run_demo(
    settings: DemoSettings, output_dir: str | Path, keep_cache: bool = False, choose_threads: bool = True,
    processes: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run every stage and return the metrics (also written to `output_dir/metrics.json`). The datasets cache
    (`output_dir/cache`) is deleted at the end unless `keep_cache`. The 4M trains in `processes` processes of one
    thread each (None: `default_processes`); in one process with `choose_threads`, with whichever of one thread and
    torch's default runs its steps faster (`ThreadChooser`)."""
    processes = default_processes(settings) if processes is None else processes
    check_processes(settings, processes)
    keep_freed_memory()
    skip_huge_page_requests()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    timer = StageTimer()
    set_seed(settings.seed)
    names = register_demo_modalities(settings)
    size = settings.image_size

    with timer("data: render synthetic scenes"):
        cache = str(output_dir / "cache")
        train = scenes_dataset(0, settings.num_train, size, settings.seed, cache)
        held_out = scenes_dataset(settings.num_train, settings.num_eval, size, settings.seed, cache)  # later scenes
        eval_arrays = scene_arrays(held_out)  # the VQ-VAE processes read the training scenes' images themselves
        eval_rows = held_out.select_columns(["caption", "det"]).to_list()
        print(f"   {len(train)} training and {len(held_out)} held-out scenes of {size}x{size}")

    with timer("text tokenizer"):
        text_columns = train.select_columns(["caption", "det"])[:]
        tokenizer = train_text_tokenizer(text_columns["caption"], text_columns["det"], size)
        longest, max_length = text_lengths(tokenizer, text_columns["caption"], text_columns["det"])
        print(f"   vocabulary {len(tokenizer)}, longest caption / box sequence {longest} tokens")

    image_processor = FourMImageProcessor(
        image_size=size, patch_size=settings.patch_size, do_center_crop=False, num_semseg_classes=NUM_CLASSES + 1
    )
    with timer("tokenizers: the three VQ-VAEs and their inputs, side by side"):
        trained, details = train_vqvaes(
            train, image_processor, settings, output_dir, num_proc=min(3, os.cpu_count() or 1)
        )
        vq_models = {names[m]: trained[m] for m in IMAGE_MODALITIES}
        print("   CPU s per VQ-VAE: " + ", ".join(f"{m} {d['cpu_s']:.0f}" for m, d in details.items()))
        base = baselines(scene_arrays(train, ("semseg",)), details["depth"]["mean_input"])

    processor = FourMProcessor(image_processor, tokenizer, vq_models=vq_models)
    processor.save_pretrained(output_dir / "processor")

    with timer("pre-tokenise the training scenes"):
        pretokenized = InMemoryRows.from_dataset(pretokenize_scenes(train, processor, names, settings))

    with timer("4M pre-training"):
        mixture_path = output_dir / "mixture.json"
        mixture_path.write_text(json.dumps(demo_mixture(settings, names), indent=2))
        set_seed(settings.seed)  # the same initial 4M whatever the stages before drew
        model = FourMForMaskedModeling(fourm_config(settings, names, len(tokenizer), max_length))
        print(
            f"   4M with {model.num_parameters() / 1e6:.2f}M parameters "
            f"({model.num_parameters(exclude_embeddings=True) / 1e6:.2f}M without embeddings)"
        )
        threads = torch.get_num_threads()
        chooser = None
        if processes == 1 and choose_threads and threads > 1 and not torch.cuda.is_available():
            chooser = ThreadChooser(sorted({1, threads}))
        print(f"   training in {processes} process{'es' * (processes > 1)}")
        model, log_history = train_fourm(
            model, pretokenized, settings, mixture_path, output_dir / "processor", output_dir,
            callbacks=[chooser] if chooser else None, processes=processes,
        )  # fmt: skip
        final_losses = {k: round(v, 4) for k, v in log_history[-2].items() if k.endswith("loss")}

    with timer("reload and evaluate on held-out scenes"):
        model = FourMForMaskedModeling.from_pretrained(output_dir / "fourm").eval()
        processor = FourMProcessor.from_pretrained(output_dir / "processor")
        metrics, predictions = evaluate_scenes(model, processor, eval_arrays, eval_rows, base, names, settings)

    with timer("caption -> RGB and the grid"):
        shown = min(settings.num_grid, len(eval_rows))
        generated_rgb = caption_to_rgb(model, processor, [r["caption"] for r in eval_rows[:shown]], names, settings)
        draw_grid(eval_arrays, eval_rows, predictions, generated_rgb, names, settings, output_dir / "grid.png")

    shutil.rmtree(output_dir / "runs", ignore_errors=True)
    if not keep_cache:
        shutil.rmtree(output_dir / "cache", ignore_errors=True)  # rendered and pre-tokenised scenes (~1 GB)
    metrics = {
        **metrics,
        "final_training_losses": final_losses,
        "settings": dataclasses.asdict(settings),
        "parameters": {"fourm": model.num_parameters(), **{n: m.num_parameters() for n, m in vq_models.items()}},
        "time": {
            **timer.summary(), "4m_processes": processes, "4m_thread_choices": chooser.choices if chooser else [],
        },
    }
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def print_summary(metrics: dict[str, Any], output_dir: str | Path) -> None:
    seg, depth = metrics["segmentation"], metrics["depth_standardised"]
    caption, det, elapsed = metrics["caption"], metrics["det"], metrics["time"]
    print(
        f"\nHeld-out scenes: {metrics['num_eval_scenes']}\n"
        f"  RGB -> segmentation mIoU  {seg['model']['mean_iou']:.3f}   (training majority {seg['baseline_training_majority']['mean_iou']:.3f}, "
        f"tokenizer round trip {seg['tokenizer_round_trip']['mean_iou']:.3f}); objects only {seg['model']['object_mean_iou']:.3f}\n"
        f"  RGB -> depth abs error    {depth['model']['abs_error']:.3f}   (training mean {depth['baseline_training_mean']['abs_error']:.3f}, "
        f"tokenizer round trip {depth['tokenizer_round_trip']['abs_error']:.3f}) in standardised depth units\n"
        f"  RGB -> caption: more than half of the objects right in {caption['most_objects']:.0%} of scenes, exactly the "
        f"right objects in {caption['exact_objects']:.0%}, right shapes in {caption['exact_shapes']:.0%}; "
        f"object recall {caption['object_recall']:.0%}, precision {caption['object_precision']:.0%}\n"
        f"  RGB -> boxes: recall@0.5 {det['recall@0.5']:.0%}, precision@0.5 {det['precision@0.5']:.0%}\n"
        f"{stage_table(elapsed)}\n"
        f"Wrote {Path(output_dir) / 'metrics.json'}, {Path(output_dir) / 'grid.png'}, saved models in {output_dir}."
    )  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    settings, args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_warning()
    metrics = run_demo(
        settings, args.output_dir, keep_cache=args.keep_cache, choose_threads=args.threads is None,
        processes=args.processes,
    )
    print_summary(metrics, args.output_dir)
    return metrics


if __name__ == "__main__":
    main()
