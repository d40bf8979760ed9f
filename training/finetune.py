"""Fine-tune a 4M encoder for image classification, semantic segmentation or depth estimation with `Trainer`.

Works on any `datasets` dataset with an image column and a label column (a class id, a class-id map, or a depth map),
from the Hub or a local directory written by `save_to_disk`. The encoder comes from any 4M checkpoint, native or
official apple/ml-4m layout; the head starts fresh. Images are resized whole (no crop, bilinear) to the resolution of
the model's pixel modality (224 for `rgb@224`) and normalised with the ImageNet statistics by a `FourMImageProcessor`,
which is saved beside the model: `pipeline("image-classification" | "image-segmentation" | "depth-estimation",
model=output_dir)` then preprocesses images exactly as training did. Training images (and label maps) are mirrored
left-right at random, each by a draw from (seed, epoch, sample index), so a run sees the same augmentation on any
number of processes and data loader workers; evaluation images are not mirrored.

    python training/finetune.py --task image-classification --model_name_or_path EPFL-VILAB/4M-7_B_CC12M \
        --dataset_name imagenet-1k --output_dir out --do_train --do_eval --bf16 \
        --layer_decay 0.75 --drop_path_rate 0.1 --learning_rate 1e-3 --num_train_epochs 50

    accelerate launch --num_processes 8 training/finetune.py ...   # same arguments, data-parallel

Options beyond transformers' `TrainingArguments`: `--freeze_encoder`, `--layer_decay`, `--drop_path_rate`,
`--head_hidden_size`, `--lora_r` (LoRA through peft on the encoder's attention and MLP linears), and for the dense
tasks `--do_reduce_labels` (ADE20K: 0 = "other" becomes ignored) and `--depth_scale` (e.g. 1000 for millimetre PNGs).
Gradient checkpointing and bf16 are the usual `--activation_checkpointing` and `--bf16`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from datasets import (
    ClassLabel,
    Dataset,
    DatasetDict,
    Value,
    load_dataset,
    load_from_disk,
)
from PIL import Image
from transformers import HfArgumentParser, TrainingArguments, set_seed
from transformers.image_utils import PILImageResampling

from fourm_hf import (
    LORA_TARGET_MODULES,
    FourMForDepthEstimation,
    FourMForImageClassification,
    FourMForSemanticSegmentation,
    FourMImageProcessor,
    layer_decay_param_groups,
)
from fourm_hf.checks import (
    check_choice,
    check_int,
    check_local_path,
    check_number,
    check_training_arguments,
    close_match,
)
from fourm_hf.cli import fill_missing_help
from fourm_hf.distributed import EpochCallback, ShardingTrainer, end_processes, prepare_launch_environment
from fourm_hf.evaluation.metrics import (
    argmax_logits_for_metrics,
    classification_compute_metrics,
    depth_compute_metrics,
    segmentation_compute_metrics,
)
from fourm_hf.modalities import PIXELS, ModalitySpec

logger = logging.getLogger(__name__)

TASKS = {
    "image-classification": FourMForImageClassification,
    "semantic-segmentation": FourMForSemanticSegmentation,
    "depth-estimation": FourMForDepthEstimation,
}


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "4M checkpoint: Hub id or local dir, native or official layout."})
    task: str = field(default="image-classification", metadata={"help": f"One of {sorted(TASKS)}."})
    freeze_encoder: bool = field(default=False, metadata={"help": "Train the head only."})
    layer_decay: float | None = field(default=None, metadata={"help": "Layer-wise LR decay factor, e.g. 0.75."})
    drop_path_rate: float | None = field(default=None, metadata={"help": "Encoder stochastic depth rate."})
    head_hidden_size: int | None = field(default=None, metadata={"help": "Channels of the dense heads' decoder."})
    num_labels: int | None = field(
        default=None, metadata={"help": "Number of classes, when the label column has no ClassLabel names."}
    )
    lora_r: int = field(default=0, metadata={"help": "LoRA rank; 0 trains without LoRA (needs peft when > 0)."})
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA scaling numerator."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA branch."})

    def __post_init__(self):
        check_choice(self.task, "--task", TASKS)
        check_local_path(self.model_name_or_path, "--model_name_or_path", "checkpoint directory")
        if self.layer_decay is not None:
            check_number(self.layer_decay, "--layer_decay", 0, 1, open_minimum=True)
        if self.drop_path_rate is not None:
            check_number(self.drop_path_rate, "--drop_path_rate", 0, 1, open_maximum=True)
        for name in ("head_hidden_size", "num_labels"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), f"--{name}", minimum=1)
        check_int(self.lora_r, "--lora_r", minimum=0)
        check_number(self.lora_alpha, "--lora_alpha", 0, open_minimum=True)
        check_number(self.lora_dropout, "--lora_dropout", 0, 1, open_maximum=True)


@dataclass
class DataTrainingArguments:
    dataset_name: str = field(metadata={"help": "Hub dataset name or a local `save_to_disk` directory."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset configuration name."})
    image_column_name: str = field(default="image", metadata={"help": "Column holding the images."})
    label_column_name: str = field(default="label", metadata={"help": "Column holding the labels."})
    train_val_split: float = field(
        default=0.15, metadata={"help": "Share of train held out without a validation split."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the evaluation set."})
    image_size: int | None = field(default=None, metadata={"help": "Pixel resolution; defaults to the model's."})
    do_reduce_labels: bool = field(default=False, metadata={"help": "Segmentation: 0 -> 255 (ignored), others - 1."})
    depth_scale: float = field(default=1.0, metadata={"help": "Depth labels are divided by this value."})

    def __post_init__(self):
        check_number(self.train_val_split, "--train_val_split", 0, 1, open_minimum=True, open_maximum=True)
        for name in ("max_train_samples", "max_eval_samples", "image_size"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), f"--{name}", minimum=1)
        check_number(self.depth_scale, "--depth_scale", 0, open_minimum=True)
        check_local_path(self.dataset_name, "--dataset_name", "local dataset directory")


def build_image_processor(pixels: ModalitySpec, size: int) -> FourMImageProcessor:
    """The image processor of the fine-tuned model: the whole image resized to `size` (bilinear, no crop) and
    ImageNet-normalised; saved beside the model for transformers' pipelines."""
    return FourMImageProcessor(
        image_size=size, patch_size=pixels.patch_size, resample=PILImageResampling.BILINEAR, do_center_crop=False
    )


def to_pixel_values(image_processor: FourMImageProcessor, image, flip: bool) -> np.ndarray:
    """PIL image or array -> (3, size, size) float32, ImageNet-normalised, mirrored when `flip`."""
    image = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    array = image_processor.preprocess_rgb(image)[0]
    return np.ascontiguousarray(array[:, :, ::-1]) if flip else array


def to_label_map(label, size: int, flip: bool, dtype: np.dtype) -> np.ndarray:
    """A (H, W) class or depth map resized with nearest-neighbour sampling (no blending of ids or missing depth)."""
    array = np.asarray(label)
    if array.ndim == 3:  # single-channel images stored as (H, W, 1)
        array = array[..., 0]
    resized = np.asarray(Image.fromarray(array.astype(np.float32)).resize((size, size), Image.Resampling.NEAREST))
    resized = resized[:, ::-1] if flip else resized
    return np.ascontiguousarray(resized).astype(dtype)


class FineTuningTransform:
    """Batched: the image and label columns -> `pixel_values` and `labels` (resized, normalised; label maps resized
    with nearest-neighbour sampling), the samples whose `flips` entry is set mirrored left-right (image and label map
    together). Without `flips` nothing is mirrored: `set_transform` of the evaluation split."""

    def __init__(self, task: str, data_args: DataTrainingArguments, image_processor: FourMImageProcessor):
        self.task, self.data_args, self.image_processor = task, data_args, image_processor

    def __call__(self, batch: dict, flips: np.ndarray | None = None) -> dict:
        images, labels = batch[self.data_args.image_column_name], batch[self.data_args.label_column_name]
        flips = np.zeros(len(images), dtype=bool) if flips is None else flips
        size = self.image_processor.image_size
        out = {"pixel_values": [to_pixel_values(self.image_processor, im, f) for im, f in zip(images, flips)]}
        if self.task == "image-classification":
            out["labels"] = labels
        elif self.task == "semantic-segmentation":
            maps = [to_label_map(label, size, f, np.int64) for label, f in zip(labels, flips)]
            if self.data_args.do_reduce_labels:
                maps = [np.where(m == 0, 255, m - 1) for m in maps]
            out["labels"] = maps
        else:
            scale = self.data_args.depth_scale
            out["labels"] = [to_label_map(label, size, f, np.float32) / scale for label, f in zip(labels, flips)]
        return out


class RandomFlipDataset(torch.utils.data.Dataset):
    """The training split through a [`FineTuningTransform`], sample `index` mirrored in epoch `epoch` when a
    generator seeded with `(seed, epoch, index)` draws below 0.5.

    A sample's flip so depends on neither the process nor the DataLoader worker that loads it, nor on the order of
    loading: N data-parallel processes see the augmentation of one process accumulating N micro-batches, and a resumed
    run that of the run it continues. `set_epoch` (called by accelerate's data loader and by [`EpochCallback`])
    draws new flips every epoch.
    """

    def __init__(self, dataset: Dataset, transform: FineTuningTransform, seed: int):
        self.dataset, self.transform = dataset, transform
        self.seed = check_int(seed, "seed", minimum=0)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_int(epoch, "epoch", minimum=0)

    def flips(self, indices: list[int]) -> np.ndarray:
        """Whether each of these samples is mirrored in the current epoch."""
        return np.array([np.random.default_rng([self.seed, self.epoch, int(i)]).random() < 0.5 for i in indices])

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """The samples of a batch, read and transformed together (the DataLoader's batched fetch)."""
        columns = self.transform(self.dataset[list(indices)], self.flips(indices))
        return [{name: values[row] for name, values in columns.items()} for row in range(len(indices))]

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])[0]


def load_splits(data_args: DataTrainingArguments, seed: int, task: str) -> DatasetDict:
    if os.path.isdir(data_args.dataset_name) and any(
        os.path.exists(os.path.join(data_args.dataset_name, f)) for f in ("dataset_dict.json", "dataset_info.json")
    ):
        dataset = load_from_disk(data_args.dataset_name)
    else:
        dataset = load_dataset(data_args.dataset_name, data_args.dataset_config_name)
    if not isinstance(dataset, DatasetDict):
        dataset = DatasetDict({"train": dataset})
    if "validation" not in dataset:
        split = dataset["train"].train_test_split(test_size=data_args.train_val_split, seed=seed)
        dataset = DatasetDict({"train": split["train"], "validation": split["test"]})
    for name, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if limit is not None:
            dataset[name] = dataset[name].select(range(min(limit, len(dataset[name]))))
    check_columns(dataset, data_args, task)
    return dataset


def check_columns(dataset: DatasetDict, data_args: DataTrainingArguments, task: str) -> None:
    """Both splits have rows, the image and label columns, and labels of the task's kind (class ids for
    classification, maps for the dense tasks)."""
    for split in ("train", "validation"):
        columns = dataset[split].column_names
        for flag in ("image_column_name", "label_column_name"):
            name = getattr(data_args, flag)
            if name not in columns:
                raise ValueError(
                    f"--{flag} {name!r} is not a column of the {split} split; it has {columns}."
                    f"{close_match(name, columns)}"
                )
        if len(dataset[split]) == 0:
            raise ValueError(f"The {split} split of {data_args.dataset_name!r} has no rows.")
    feature = dataset["train"].features[data_args.label_column_name]
    is_class_id = isinstance(feature, ClassLabel) or (isinstance(feature, Value) and feature.dtype.startswith("int"))
    if (task == "image-classification") != is_class_id:
        classification = task == "image-classification"
        expected = "class ids (a ClassLabel or integers)" if classification else "label maps (images or arrays)"
        raise ValueError(
            f"--label_column_name {data_args.label_column_name!r} holds {feature}; {task} needs {expected}."
        )


def build_model(model_args: ModelArguments, dataset: DatasetDict, label_column: str):
    overrides = {}
    if model_args.drop_path_rate is not None:
        overrides["encoder_drop_path_rate"] = model_args.drop_path_rate
    if model_args.head_hidden_size is not None:
        overrides["head_hidden_size"] = model_args.head_hidden_size
    if model_args.task != "depth-estimation":
        feature = dataset["train"].features[label_column]
        names = getattr(feature, "names", None) or getattr(getattr(feature, "feature", None), "names", None)
        if model_args.num_labels is not None:
            overrides["num_labels"] = model_args.num_labels
        elif names:
            overrides["id2label"] = dict(enumerate(names))
        elif model_args.task == "image-classification":
            overrides["num_labels"] = int(max(dataset["train"][label_column])) + 1
        else:
            raise ValueError("Segmentation needs --num_labels (label maps carry no class names).")
    model = TASKS[model_args.task].from_pretrained(model_args.model_name_or_path, **overrides)
    if model_args.freeze_encoder:
        model.freeze_encoder()
    if model_args.lora_r > 0:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as error:
            raise ImportError("--lora_r needs peft: pip install 'fourm_hf[peft]'.") from error
        lora = LoraConfig(
            r=model_args.lora_r,
            lora_alpha=model_args.lora_alpha,
            lora_dropout=model_args.lora_dropout,
            target_modules=LORA_TARGET_MODULES,
            modules_to_save=list(model.head_module_names),
        )
        model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(f"{type(model).__name__}: {trainable:,} of {model.num_parameters():,} parameters trainable.")
    return model


def pixel_modality(model) -> ModalitySpec:
    """The spec of the model's first pixel input (e.g. `rgb@224`)."""
    config = model.config
    for name in config.encoder_modalities:
        info = config.modality(name)
        if info.kind == PIXELS:
            return info
    raise ValueError(f"The model has no pixel modality; its encoder takes {config.encoder_modalities}.")


def main(argv: list[str] | None = None) -> dict[str, float]:
    prepare_launch_environment()
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, TrainingArguments))
    fill_missing_help(parser, TrainingArguments)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    check_training_arguments(training_args)
    training_args.remove_unused_columns = False  # the transforms read the raw image and label columns
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)
    set_seed(training_args.seed)

    dataset = load_splits(data_args, training_args.seed, model_args.task)
    model = build_model(model_args, dataset, data_args.label_column_name)
    pixels = pixel_modality(model)
    image_processor = build_image_processor(pixels, data_args.image_size or pixels.image_size)
    transform = FineTuningTransform(model_args.task, data_args, image_processor)
    train_dataset = RandomFlipDataset(dataset["train"], transform, training_args.seed)
    dataset["validation"].set_transform(transform)  # evaluation without flips

    metrics_kwargs = {"compute_metrics": classification_compute_metrics}
    if model_args.task == "semantic-segmentation":
        metrics_kwargs = {
            "compute_metrics": segmentation_compute_metrics(
                model.config.num_labels, model.config.semantic_loss_ignore_index
            ),
            "preprocess_logits_for_metrics": argmax_logits_for_metrics,
        }
    elif model_args.task == "depth-estimation":
        metrics_kwargs = {"compute_metrics": depth_compute_metrics}
    optimizer_kwargs = {}
    if model_args.layer_decay is not None:
        groups = layer_decay_param_groups(
            model, training_args.learning_rate, training_args.weight_decay, model_args.layer_decay
        )
        betas = (training_args.adam_beta1, training_args.adam_beta2)
        optimizer_kwargs["optimizer_cls_and_kwargs"] = (
            torch.optim.AdamW,
            {"params": groups, "betas": betas, "eps": training_args.adam_epsilon},
        )

    trainer = ShardingTrainer(
        model=model,
        args=training_args,
        processing_class=image_processor,  # saved beside the model (and in checkpoints) for the pipelines
        train_dataset=train_dataset if training_args.do_train else None,
        eval_dataset=dataset["validation"] if training_args.do_eval else None,
        **metrics_kwargs,
        **optimizer_kwargs,
    )
    trainer.add_callback(EpochCallback(train_dataset))
    metrics: dict[str, float] = {}
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.save_model()
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
        metrics.update(result.metrics)
    if training_args.do_eval:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    return metrics


if __name__ == "__main__":
    main()
    end_processes()
