"""Train a 4M VQ model (VQ-VAE or diffusion VQ-VAE) with the transformers Trainer on any `datasets` image
column, with the official objectives: reconstruction loss of the config (`mse`, `l1`, `smooth_l1`, `cross_entropy`,
`cosine`, `cosine_1d`, `binary_cross_entropy`) + codebook_weight x commitment loss for VQ-VAEs; x0 / noise / velocity
regression at uniformly drawn timesteps for DiVAEs. The cosine codebook is EMA-updated in every training forward and
codes whose EMA usage falls below the dead-code threshold are restarted from batch latents.

    python training/train_vq_model.py --dataset cifar10 --image_column img --model vqvae \\
        --config my_vqvae.json --min_size 224 --max_size 448 --size_step 32 \\
        --output_dir runs/rgb_vqvae --max_steps 100000 --per_device_train_batch_size 32 --learning_rate 1e-4

`--dataset`: a Hub dataset name, a directory written by `Dataset.save_to_disk`, or `imagefolder:PATH`.
`--config`: a JSON file of `FourMVQVAEConfig` / `FourMDiVAEConfig` fields (defaults: the released ViT-B layouts);
`--init_from`: a tokenizer to fine-tune instead (native directory, Hub id, official checkpoint or preset name, e.g.
the 224 model before multi-resolution adaptation). Every `TrainingArguments` flag is accepted; the defaults follow
the official recipe (AdamW betas (0.9, 0.99), cosine schedule, gradient clipping at 1.0).

With `--min_size < --max_size`, each batch is resized to a size drawn from range(min_size, max_size + 1, size_step)
(the official multi-resolution adaptation). With `--weight_ema_decay > 0`, an exponential moving average of the
weights is kept and written into the model at the end (the released tokenizers are EMA weights).
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import HfArgumentParser, TrainerCallback, TrainingArguments, set_seed

from fourm_hf import FourMDiVAE, FourMDiVAEConfig, FourMImageProcessor, FourMVQVAE, FourMVQVAEConfig, load_vq_model
from fourm_hf.checks import (
    check_choice,
    check_int,
    check_local_path,
    check_number,
    check_training_arguments,
    close_match,
)
from fourm_hf.cli import fill_missing_help
from fourm_hf.distributed import ShardingTrainer, end_processes, prepare_launch_environment

MODELS = {"vqvae": (FourMVQVAE, FourMVQVAEConfig), "divae": (FourMDiVAE, FourMDiVAEConfig)}


@dataclass
class TokenizerTrainingArguments:
    dataset: str = field(metadata={"help": "Hub dataset, save_to_disk directory, or imagefolder:PATH"})
    dataset_config: str | None = field(default=None, metadata={"help": "dataset configuration name"})
    split: str = field(default="train", metadata={"help": "split to train on"})
    image_column: str = field(default="image", metadata={"help": "column holding PIL images (or arrays)"})
    input_kind: str = field(default="image", metadata={"help": "'image' (scaled to [-1, 1]) or 'class_ids'"})
    label_offset: int = field(default=0, metadata={"help": "class_ids: added to raw uint8 labels (255 + 1 -> 0)"})
    model: str = field(default="vqvae", metadata={"help": "'vqvae' or 'divae'"})
    config: str | None = field(default=None, metadata={"help": "JSON file of config fields"})
    init_from: str | None = field(default=None, metadata={"help": "tokenizer to fine-tune (path, Hub id, preset)"})
    min_size: int = field(default=224, metadata={"help": "smallest training resolution"})
    max_size: int = field(default=224, metadata={"help": "largest training resolution"})
    size_step: int = field(default=32, metadata={"help": "resolution step of multi-resolution training"})
    coef_ema_dead_code: float = field(
        default=32.0, metadata={"help": "dead-code threshold = batch tokens per code / this (unless in --config)"}
    )
    weight_ema_decay: float = field(default=0.0, metadata={"help": "EMA of the weights (0: off)"})
    max_train_samples: int | None = field(default=None, metadata={"help": "truncate the dataset"})

    def __post_init__(self):
        check_choice(self.input_kind, "--input_kind", ("image", "class_ids"))
        check_choice(self.model, "--model", MODELS)
        for name in ("min_size", "max_size", "size_step"):
            check_int(getattr(self, name), f"--{name}", minimum=1)
        if self.min_size > self.max_size:
            raise ValueError(f"--min_size ({self.min_size}) must not exceed --max_size ({self.max_size}).")
        check_int(self.label_offset, "--label_offset", minimum=0, maximum=255)
        check_number(self.coef_ema_dead_code, "--coef_ema_dead_code", 0, open_minimum=True)
        check_number(self.weight_ema_decay, "--weight_ema_decay", 0, 1, open_maximum=True)
        if self.max_train_samples is not None:
            check_int(self.max_train_samples, "--max_train_samples", minimum=1)
        if self.config is not None and not Path(self.config).is_file():
            raise FileNotFoundError(f"--config {self.config!r}: no such JSON file of config fields.")
        check_local_path(self.init_from, "--init_from", "VQ model directory or checkpoint")
        check_local_path(self.dataset, "--dataset", "dataset directory")
        folder = self.dataset.split(":", 1)[1] if self.dataset.startswith("imagefolder:") else None
        if folder is not None and not Path(folder).is_dir():
            raise FileNotFoundError(f"--dataset {self.dataset!r}: no such image folder {folder!r}.")

    def sizes(self) -> list[int]:
        """The training resolutions: range(min_size, max_size + 1, size_step)."""
        return list(range(self.min_size, self.max_size + 1, self.size_step))


# ----------------------------------------------------------------------------------------------------------------
# Data


def load_images(args: TokenizerTrainingArguments):
    """The training split as a `datasets.Dataset`."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    if args.dataset.startswith("imagefolder:"):
        dataset = load_dataset("imagefolder", data_dir=args.dataset.split(":", 1)[1], split=args.split)
    elif any((Path(args.dataset) / name).is_file() for name in ("state.json", "dataset_dict.json")):
        dataset = load_from_disk(args.dataset)
        if isinstance(dataset, DatasetDict):
            dataset = dataset[args.split]
    else:
        dataset = load_dataset(args.dataset, args.dataset_config, split=args.split)
    if args.image_column not in dataset.column_names:
        raise ValueError(
            f"No column {args.image_column!r} in the dataset; columns: {dataset.column_names}."
            f"{close_match(args.image_column, dataset.column_names)}"
        )
    if len(dataset) == 0:
        raise ValueError(f"The {args.split!r} split of {args.dataset!r} has no rows.")
    if args.max_train_samples is not None:
        dataset = dataset.select(range(min(args.max_train_samples, len(dataset))))
    return dataset


class ImageTransform:
    """`datasets` transform: images -> `pixel_values` (C, S, S) in [-1, 1], or class ids -> (S, S) int64."""

    def __init__(self, column: str, size: int, num_channels: int, input_kind: str, label_offset: int = 0):
        if input_kind not in ("image", "class_ids"):
            raise ValueError(f"input_kind must be 'image' or 'class_ids', got {input_kind!r}.")
        self.column, self.size, self.num_channels = column, size, num_channels
        self.input_kind, self.label_offset = input_kind, label_offset
        self.cropper = FourMImageProcessor(image_size=size, patch_size=1)

    def _one(self, image) -> torch.Tensor:
        image = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        if self.input_kind == "class_ids":
            labels = np.asarray(image, dtype=np.uint8)[..., None]
            labels = self.cropper.crop_and_resize(labels, self.size, Image.Resampling.NEAREST, self.column)[..., 0].astype(np.uint8)
            return torch.from_numpy((labels + np.uint8(self.label_offset)).astype(np.int64))  # uint8 wrap-around
        mode = {1: "L", 3: "RGB"}.get(self.num_channels)
        if mode is None:
            raise ValueError(f"Image inputs must have 1 or 3 channels, the config says {self.num_channels}.")
        pixels = np.asarray(image.convert(mode)).reshape(image.height, image.width, self.num_channels)
        pixels = self.cropper.crop_and_resize(pixels, self.size, Image.Resampling.BILINEAR, self.column)
        pixels = torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1)
        return pixels / 127.5 - 1.0

    def __call__(self, batch: dict) -> dict:
        return {"pixel_values": [self._one(image) for image in batch[self.column]]}


class MultiResolutionCollator:
    """Stack a batch and resize it to a resolution drawn from `sizes` (bilinear; nearest for class ids)."""

    def __init__(self, sizes: list[int], seed: int = 0):
        self.sizes = sizes
        self.rng = random.Random(seed)

    def __call__(self, features: list[dict]) -> dict:
        batch = torch.stack([f["pixel_values"] for f in features])
        size = self.rng.choice(self.sizes)
        if size != batch.shape[-1]:
            if batch.is_floating_point():
                batch = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            else:
                batch = F.interpolate(batch[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
        return {"pixel_values": batch}


# ----------------------------------------------------------------------------------------------------------------
# Model


def build_model(args: TokenizerTrainingArguments, training_args: TrainingArguments):
    """A fresh tokenizer from `--config` (or the defaults), or the `--init_from` one; sets the dead-code threshold
    from the batch size as the official trainer does unless the config gives one."""
    model_class, config_class = MODELS[args.model]
    if args.init_from is not None:
        model = load_vq_model(args.init_from)
        if not isinstance(model, model_class):
            raise ValueError(f"--init_from {args.init_from} is a {type(model).__name__}, not a {model_class.__name__}.")
        return model
    fields = read_config_fields(args.config) if args.config else {}
    if "dead_code_threshold" not in fields:
        patch = fields.get("patch_size", 16)
        tokens_per_image = ((args.min_size + args.max_size) // 2 // patch) ** 2
        batch = training_args.per_device_train_batch_size * max(1, training_args.world_size)
        codes_per_token = batch * tokens_per_image / fields.get("codebook_size", 16384)
        fields["dead_code_threshold"] = codes_per_token / args.coef_ema_dead_code
    return model_class(config_class(**fields))


def read_config_fields(path: str) -> dict:
    """The config fields of a `--config` JSON file (an object)."""
    try:
        fields = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"--config {path!r} is not valid JSON: {error}.") from error
    if not isinstance(fields, dict):
        raise ValueError(f"--config {path!r} must hold a JSON object of config fields, got {type(fields).__name__}.")
    return fields


def check_sizes(args: TokenizerTrainingArguments, patch_size: int) -> None:
    """Every training resolution is a whole number of patches."""
    wrong = [size for size in args.sizes() if size % patch_size]
    if wrong:
        raise ValueError(
            f"Training resolutions {wrong} are not multiples of the model's patch size {patch_size}; choose "
            "--min_size, --max_size and --size_step as multiples of it."
        )


class WeightEMACallback(TrainerCallback):
    """Keep `ema = decay * ema + (1 - decay) * weights` after every optimizer step; load it into the model at the end
    of training."""

    def __init__(self, decay: float):
        self.decay = decay
        self.shadow: dict[str, torch.Tensor] = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def on_step_end(self, args, state, control, model=None, **kwargs):
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)

    @torch.no_grad()
    def on_train_end(self, args, state, control, model=None, **kwargs):
        for name, p in model.named_parameters():
            if name in self.shadow:
                p.copy_(self.shadow[name])


def main(argv: list[str] | None = None):
    prepare_launch_environment()
    parser = HfArgumentParser((TokenizerTrainingArguments, TrainingArguments))
    fill_missing_help(parser, TrainingArguments)
    parser.set_defaults(
        adam_beta2=0.99, max_grad_norm=1.0, lr_scheduler_type="cosine", weight_decay=0.05,
        remove_unused_columns=False, report_to="none",
    )
    args, training_args = parser.parse_args_into_dataclasses(args=argv)
    check_training_arguments(training_args)

    set_seed(training_args.seed)  # the same fresh weights on every process (FSDP does not broadcast them)
    model = build_model(args, training_args)
    config = model.config
    check_sizes(args, config.patch_size)
    if (args.input_kind == "class_ids") != (config.num_classes is not None):
        raise ValueError("--input_kind class_ids needs a tokenizer with num_classes, and only then.")
    dataset = load_images(args).with_transform(
        ImageTransform(args.image_column, args.max_size, config.num_channels, args.input_kind, args.label_offset)
    )
    sizes = args.sizes()
    callbacks = [WeightEMACallback(args.weight_ema_decay)] if args.weight_ema_decay > 0 else []
    trainer = ShardingTrainer(
        model=model, args=training_args, train_dataset=dataset,
        data_collator=MultiResolutionCollator(sizes, seed=training_args.seed), callbacks=callbacks,
    )
    result = trainer.train()
    trainer.save_model(training_args.output_dir)
    print(f"Trained {type(model).__name__} for {result.global_step} steps, final loss {result.training_loss:.4f}; "
          f"saved to {training_args.output_dir}.")
    return trainer


if __name__ == "__main__":
    main(sys.argv[1:])
    end_processes()
