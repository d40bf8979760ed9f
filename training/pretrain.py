"""Pre-train 4M with `transformers.Trainer` and the official recipe.

The recipe (apple/ml-4m `run_training_4m.py`): AdamW with betas (0.9, 0.95), eps 1e-8 and weight decay 0.05, no decay on
LayerNorm parameters and biases; learning rate `base_learning_rate x total batch / 256`; linear warm-up from 0, then a
cosine decay to `min_base_learning_rate x total batch / 256`; length and warm-up given in tokens (encoder + decoder
budget per sample x total batch per optimizer step); no gradient clipping; the 'mod' loss (mean of per-modality
losses), each per-modality loss logged as `<modality>_loss`. Batches come from [`FourMMaskingCollator`] on a
pre-tokenised dataset (see `fourm_hf.data.pretokenization`), held as a `save_to_disk` directory or, with `--streaming`,
read from Parquet / webdataset tar shards split by rank and worker (see `fourm_hf.data.streaming`); masks are seeded per
sample, so a run resumed from a checkpoint continues exactly as if it had never stopped.

Beyond the recipe: `--lr_decay linear` decays the learning rate linearly instead of along the cosine; `--muon` trains
the Transformer layers' matrices with Muon (`fourm_hf.optimization`), and `--adamw_lr_scale` then sets the other
parameters' learning rate as a multiple of theirs (the demo's 4M uses all three and holds its metrics in 1,400
steps instead of 1,800).

    python training/pretrain.py --train_dataset path/to/pretokenized --config_name config.json \
        --mixture 4m7_all2all_rgb2all --output_dir runs/4m7-b --per_device_train_batch_size 128 --bf16 \
        --total_tokens 500e9 --warmup_tokens 10e9
    accelerate launch --config_file training/accelerate_configs/multi_gpu.yaml training/pretrain.py ...

Over several processes or machines (DDP or FSDP2, also on CPU processes without GPUs) the run is the one of a
single process accumulating one micro-batch per rank; checkpoints resume on any number of processes and
`training/export_checkpoint.py` turns one into a `model.safetensors` (README, "Training on many GPUs / machines").
Under DDP on CPU processes each rank masks its next batch while the gradients' all-reduce is in flight
(`--collate_during_all_reduce`, on by default; the same batches).

Options are those of `TrainingArguments` (output_dir, per_device_train_batch_size, bf16, gradient_checkpointing,
save_steps, resume_from_checkpoint, ...) plus the fields of `FourMPretrainingArguments` below.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import datasets
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from transformers import HfArgumentParser, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import logging

from fourm_hf import FourMConfig, FourMForMaskedModeling, FourMGenerationConfig, FourMTokenizer
from fourm_hf.checks import (
    check_choice, check_int, check_local_path, check_number, check_training_arguments, close_match,
)
from fourm_hf.cli import fill_missing_help
from fourm_hf.data.masking import FourMMaskingCollator, SeededMaskingDataset, load_mixture
from fourm_hf.data.streaming import ShardStream, StreamingDataLoader, StreamingResumeCallback
from fourm_hf.distributed import (
    DeferredBatch, DeferredCollator, EpochCallback, ShardingTrainer, collate_during_all_reduce, end_processes,
    prepare_launch_environment,
)
from fourm_hf.models.fourm.modeling_fourm import FourMDecoderLayer, FourMEncoderLayer
from fourm_hf.optimization import MuonAdamW, muon_adamw, transformer_matrix_names

logger = logging.get_logger(__name__)


@dataclass
class FourMPretrainingArguments(TrainingArguments):
    """`TrainingArguments` with 4M's defaults and token-based budgets.

    `learning_rate`, `max_steps` and `warmup_steps` are derived: from `base_learning_rate` and the total batch, and
    from `total_tokens` / `warmup_tokens` and the tokens per optimizer step.
    """

    train_dataset: str | None = field(default=None, metadata={"help": "Pre-tokenised dataset (`save_to_disk` dir)."})
    streaming: bool = field(default=False, metadata={"help": "--train_dataset is a dir of Parquet / tar shards."})
    shuffle_buffer: int = field(default=1000, metadata={"help": "Samples in each streaming reader's shuffle buffer."})
    mixture: str = field(default="4m7_all2all_rgb2all", metadata={"help": "Mixture preset name or .json/.yaml file."})
    input_tokens: str | None = field(default=None, metadata={"help": "Encoder budget override: 'n' or 'min,max'."})
    target_tokens: str | None = field(default=None, metadata={"help": "Decoder budget override: 'n' or 'min,max'."})
    model_name_or_path: str | None = field(default=None, metadata={"help": "Initial weights (native or official)."})
    config_name: str | None = field(default=None, metadata={"help": "FourMConfig (dir or json) for a fresh model."})
    text_tokenizer: str | None = field(default=None, metadata={"help": "FourMTokenizer dir: [PAD] and sentinel ids."})
    base_learning_rate: float = field(default=1e-4, metadata={"help": "lr = base_learning_rate x total batch / 256."})
    min_base_learning_rate: float = field(default=0.0, metadata={"help": "Final lr of the decay, per 256 samples."})
    lr_decay: str = field(
        default="cosine",
        metadata={"help": "Decay after the warm-up: 'cosine' (the official recipe) or 'linear'.",
                  "choices": ["cosine", "linear"]},
    )  # fmt: skip
    total_tokens: float = field(default=500e9, metadata={"help": "Training length in tokens (input + target)."})
    warmup_tokens: float = field(default=10e9, metadata={"help": "Linear warm-up length in tokens."})
    masking_seed: int = field(default=0, metadata={"help": "Seed of the per-sample masking."})
    random_crop: bool = field(default=True, metadata={"help": "Draw one of the stored crops per sample (else crop 0)."})
    auto_resume: bool = field(default=True, metadata={"help": "Resume from the last checkpoint in output_dir."})
    muon: bool = field(
        default=False,
        metadata={"help": "Muon for the Transformer blocks' weight matrices, AdamW for the rest, one schedule (not "
                  "the official recipe; not with FSDP)."},
    )  # fmt: skip
    muon_update_rms: float = field(
        default=0.2, metadata={"help": "With --muon: RMS of a Muon update per unit lr (0.2: AdamW's)."}
    )
    adamw_lr_scale: float = field(
        default=1.0,
        metadata={"help": "With --muon: the lr of the AdamW parameters (embeddings, heads, norms, biases) as a "
                  "multiple of the Muon matrices' lr."},
    )  # fmt: skip
    collate_during_all_reduce: bool = field(
        default=True,
        metadata={"help": "DDP on CPU processes (map-style data, no loader workers): mask the next step's batch while "
                  "the gradients' all-reduce is in flight, the time a rank waits for the slowest, rather than at "
                  "the start of its step. The same batches."},
    )  # fmt: skip
    muon_split_across_ranks: bool = field(
        default=False,
        metadata={"help": "With --muon under DDP: each rank orthogonalises a share of the matrices, one all-reduce "
                  "gathers the updates. Pays for wide matrices (1.8x faster optimizer steps at width 256 on two CPU "
                  "processes), and for narrow ones where the all-reduce is cheap: between ranks of run_forked_ranks "
                  "it sums in shared memory (the demo)."},
    )  # fmt: skip
    # the official recipe's values as defaults
    weight_decay: float = 0.05
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 0.0
    optim: str = "adamw_torch"
    remove_unused_columns: bool = False

    def __post_init__(self):
        super().__post_init__()
        self.check_arguments()
        defaults = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}
        for name in ("learning_rate", "max_steps", "warmup_steps"):
            if getattr(self, name) != defaults[name]:
                logger.warning(f"{name} is derived from the token budgets and base_learning_rate; the value given is ignored.")
        self.total_batch_size = self.per_device_train_batch_size * self.gradient_accumulation_steps * self.world_size
        self.learning_rate = self.base_learning_rate * self.total_batch_size / 256
        mixture = self.load_mixture()
        self.tokens_per_step = (mixture.input_tokens[1] + mixture.target_tokens[1]) * self.total_batch_size
        self.max_steps = max(1, math.ceil(self.total_tokens / self.tokens_per_step))
        self.warmup_steps = math.ceil(self.warmup_tokens / self.tokens_per_step)
        if self.warmup_steps >= self.max_steps:
            raise ValueError(
                f"warmup_tokens ({self.warmup_tokens:g}) must be less than total_tokens ({self.total_tokens:g}): "
                f"{self.warmup_steps} warm-up steps of {self.max_steps}."
            )

    def check_arguments(self) -> None:
        """The 4M fields and the `TrainingArguments` that would fail later (or train on nothing), checked before any
        model or dataset is loaded."""
        check_training_arguments(self, derived=("learning_rate", "max_steps"))
        check_number(self.base_learning_rate, "--base_learning_rate", 0, open_minimum=True)
        check_number(self.min_base_learning_rate, "--min_base_learning_rate", 0, self.base_learning_rate)
        check_number(self.total_tokens, "--total_tokens", 0, open_minimum=True)
        check_number(self.warmup_tokens, "--warmup_tokens", 0)
        check_number(self.muon_update_rms, "--muon_update_rms", 0, open_minimum=True)
        check_number(self.adamw_lr_scale, "--adamw_lr_scale", 0, open_minimum=True)
        if self.adamw_lr_scale != 1.0 and not self.muon:
            raise ValueError(
                f"--adamw_lr_scale {self.adamw_lr_scale:g} scales the AdamW parameters' lr against the Muon ones': it "
                "needs --muon (without it every parameter trains with AdamW at --base_learning_rate)."
            )
        check_choice(self.lr_decay, "--lr_decay", LR_DECAYS)
        check_int(self.masking_seed, "--masking_seed", minimum=0)
        check_int(self.shuffle_buffer, "--shuffle_buffer", minimum=1)
        if self.train_dataset is not None and not os.path.isdir(self.train_dataset):
            raise FileNotFoundError(
                f"--train_dataset {self.train_dataset!r} is not a directory; give a pre-tokenised dataset written with "
                "Dataset.save_to_disk."
            )
        for name in ("input_tokens", "target_tokens"):
            self.token_budget(name)
        if self.model_name_or_path is not None and self.config_name is not None:
            raise ValueError(
                "Give --model_name_or_path (initial weights) or --config_name (a fresh model), not both: the config "
                "would be ignored."
            )
        check_local_path(self.model_name_or_path, "--model_name_or_path", "checkpoint directory")
        check_local_path(self.config_name, "--config_name", "FourMConfig file or directory")
        check_local_path(self.text_tokenizer, "--text_tokenizer", "FourMTokenizer directory")

    def token_budget(self, name: str) -> int | tuple[int, int] | None:
        """`--input_tokens` / `--target_tokens` as a budget: 'n' or 'min,max' (positive integers, min <= max)."""
        value = getattr(self, name)
        if value is None:
            return None
        parts = str(value).split(",")
        if len(parts) > 2 or not all(part.strip().isdigit() and int(part) > 0 for part in parts):
            raise ValueError(f"--{name} must be 'n' or 'min,max' with positive integers, got {value!r}.")
        budget = tuple(int(part) for part in parts)
        if budget[0] > budget[-1]:
            raise ValueError(f"--{name}: min must not exceed max, got {value!r}.")
        return budget if len(budget) > 1 else budget[0]

    def load_mixture(self):
        overrides = {name: self.token_budget(name) for name in ("input_tokens", "target_tokens")}
        return load_mixture(self.mixture, **{k: v for k, v in overrides.items() if v is not None})


def _cosine(progress: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * progress))


def _linear(progress: float) -> float:
    return 1 - progress


LR_DECAYS = {"cosine": _cosine, "linear": _linear}  # the share of the way from the minimum to the peak, by progress


def warmup_decay_factor(
    step: int, warmup_steps: int, total_steps: int, min_ratio: float, decay: str = "cosine"
) -> float:
    """The schedule as a factor of the peak lr: `linspace(0, 1, warmup_steps)` over the warm-up steps, then for the
    i-th step after it, with `p = i / (total_steps - warmup_steps)`, `min_ratio + (1 - min_ratio) d(p)`:
    `d(p) = (1 + cos(pi p)) / 2` for the official 'cosine', `1 - p` for 'linear'."""
    if step < warmup_steps:
        return step / (warmup_steps - 1) if warmup_steps > 1 else 0.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1 - min_ratio) * LR_DECAYS[decay](progress)


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Parameters the official recipe does not decay: LayerNorm weights and biases, every bias, layer-scale `gamma`,
    plus the model's own `no_weight_decay()` names. Embeddings, modality embeddings and the mask token are decayed."""
    names = set(getattr(model, "no_weight_decay", lambda: ())())
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if isinstance(module, nn.LayerNorm) or name in ("bias", "gamma"):
                names.add(full)
    return names


def muon_optimizer(model: nn.Module, weight_decay: float, **options: Any) -> MuonAdamW:
    """`--muon`'s optimizer: the encoder and decoder layers' matrices on Muon, the rest on AdamW, with the official
    weight-decay exclusions. `options` (lr, betas, eps, update_rms...) go to `MuonAdamW`."""
    muon = transformer_matrix_names(model, (FourMEncoderLayer, FourMDecoderLayer))
    return muon_adamw(model, muon, no_weight_decay_names(model), weight_decay, **options)


class FourMPretrainer(ShardingTrainer):
    """`Trainer` with 4M's weight-decay groups, warm-up + cosine schedule and per-modality loss logging."""

    loss_is_scaled_for_ga = False  # the 'mod' loss is a per-batch mean: Trainer divides it by the accumulation steps

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._modality_loss_sums: dict[str, torch.Tensor] = {}
        self._modality_loss_first_step = 0
        self._deferred_collator: DeferredCollator | None = None
        self._hooked_model: nn.Module | None = None
        if isinstance(self.train_dataset, SeededMaskingDataset):
            self.add_callback(EpochCallback(self.train_dataset))
        if isinstance(self.train_dataset, ShardStream):
            self.add_callback(StreamingResumeCallback())

    def get_train_dataloader(self):
        """Streams get a resumable loader of their own: they split the data by rank themselves. With
        `collate_during_all_reduce` under DDP on CPU processes, the loader's batches are `DeferredBatch`es, collated
        during the previous step's gradient all-reduce (see `training_step`)."""
        args = self.args
        if isinstance(self.train_dataset, ShardStream):
            return StreamingDataLoader(
                self.train_dataset, self._train_batch_size, collate_fn=self.data_collator,
                num_workers=args.dataloader_num_workers, pin_memory=args.dataloader_pin_memory,
                prefetch_factor=args.dataloader_prefetch_factor, drop_last=args.dataloader_drop_last,
            )  # fmt: skip
        if not self._defers_collation():
            return super().get_train_dataloader()
        collator = self.data_collator
        if self._deferred_collator is None:  # one per trainer: the gradient hook holds it
            self._deferred_collator = DeferredCollator(collator)
        self._deferred_collator.collator = collator
        self.data_collator = self._deferred_collator
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = collator

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        excluded = no_weight_decay_names(model)
        return [name for name, _ in model.named_parameters() if name not in excluded]

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """AdamW as `Trainer` builds it, or with `--muon` a `MuonAdamW` over the same weight-decay groups, the
        encoder and decoder layers' matrices in Muon groups."""
        if not self.args.muon or self.optimizer is not None:
            return super().create_optimizer(model)
        if self.is_fsdp_enabled:
            raise ValueError("--muon orthogonalises whole weight matrices, which FSDP shards: train with DDP instead.")
        self.optimizer = muon_optimizer(
            self.model if model is None else model, self.args.weight_decay, lr=self.args.learning_rate,
            betas=(self.args.adam_beta1, self.args.adam_beta2), eps=self.args.adam_epsilon,
            update_rms=self.args.muon_update_rms, split_across_ranks=self.args.muon_split_across_ranks,
            adamw_lr_scale=self.args.adamw_lr_scale,
        )  # fmt: skip
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None) -> LambdaLR:
        if self.lr_scheduler is None:
            min_ratio = self.args.min_base_learning_rate / self.args.base_learning_rate
            factor = functools.partial(
                warmup_decay_factor, warmup_steps=self.args.warmup_steps, total_steps=num_training_steps,
                min_ratio=min_ratio, decay=self.args.lr_decay,
            )
            self.lr_scheduler = LambdaLR(optimizer or self.optimizer, factor)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def _defers_collation(self) -> bool:
        """Collation can wait for the all-reduce: DDP (not FSDP) over CPU processes, collating in the main process."""
        args = self.args
        return (
            args.collate_during_all_reduce and args.world_size > 1 and args.device.type == "cpu"
            and args.dataloader_num_workers == 0 and not self.is_fsdp_enabled
        )  # fmt: skip

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._deferred_collator is not None and self._hooked_model is not model:  # the DDP model, once
            self._hooked_model = model
            collate_during_all_reduce(model, self._deferred_collator)
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if isinstance(inputs, DeferredBatch):
            inputs = inputs.collate()
        outputs = model(**inputs)
        if model.training and outputs.modality_losses:
            if not self._modality_loss_sums:  # a new logging window starts after the last completed step
                self._modality_loss_first_step = self.state.global_step
            scale = 1.0 / self.current_gradient_accumulation_steps
            for name, value in outputs.modality_losses.items():
                total = self._modality_loss_sums.get(name, 0.0)
                self._modality_loss_sums[name] = total + value.detach().float() * scale
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """6 x (encoder + decoder tokens) x non-embedding parameters (Trainer's estimate reads a tensor input)."""
        batch = next(iter(inputs["modalities"].values()))["tensor"].shape[0]
        tokens = batch * (inputs["num_encoder_tokens"] + inputs["num_decoder_tokens"])
        return 6 * tokens * self._non_embedding_parameters

    @functools.cached_property
    def _non_embedding_parameters(self) -> int:
        """Counted once: walking the parameters every step cost ~1 ms a step for the demo's 4M."""
        return self.model.num_parameters(exclude_embeddings=True)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._modality_loss_sums:
            steps = max(1, self.state.global_step - self._modality_loss_first_step)
            for name, total in sorted(self._modality_loss_sums.items()):
                logs[f"{name}_loss"] = self.accelerator.reduce(total, reduction="mean").item() / steps
            self._modality_loss_sums = {}
            tokens = self.state.global_step * self.args.tokens_per_step
            logs["total_tokens_seen_b"] = tokens / 1e9
        super().log(logs, start_time)


# ---------------------------------------------------------------------------------------------------------------------
# Building the pieces


def build_model(args: FourMPretrainingArguments) -> FourMForMaskedModeling:
    if args.model_name_or_path is not None:
        return FourMForMaskedModeling.from_pretrained(args.model_name_or_path)
    if args.config_name is None:
        raise ValueError("Give --model_name_or_path (initial weights) or --config_name (a FourMConfig).")
    return FourMForMaskedModeling(FourMConfig.from_pretrained(args.config_name))


def build_collator(
    args: FourMPretrainingArguments, config: FourMConfig, tokenizer: FourMTokenizer | None = None
) -> FourMMaskingCollator:
    mixture = args.load_mixture()
    known = set(config.encoder_modalities) | set(config.decoder_modalities)
    unknown = [name for name in mixture.modalities if name not in known]
    if unknown:
        raise ValueError(f"The mixture masks {unknown}, which the model has no embedding for (it knows {sorted(known)}).")
    options = {"config": config, "random_crop": args.random_crop}
    if tokenizer is not None:
        return FourMMaskingCollator.from_tokenizer(mixture, tokenizer, **options)
    return FourMMaskingCollator(mixture, **options)


def check_dataset(dataset: Any, args: FourMPretrainingArguments) -> None:
    """The dataset has rows and a column for every modality the mixture masks."""
    if isinstance(dataset, datasets.DatasetDict):
        raise ValueError(f"--train_dataset holds the splits {list(dataset)}; give the directory of one split.")
    if not isinstance(dataset, ShardStream) and len(dataset) == 0:
        raise ValueError("The training dataset has no rows.")
    columns = getattr(dataset, "column_names", None)
    if columns is None:
        return
    missing = [name for name in args.load_mixture().modalities if name not in columns]
    if missing:
        raise ValueError(
            f"The mixture {args.mixture!r} masks {missing}, which the dataset has no column for "
            f"(it has {columns}).{close_match(missing[0], columns)} Pre-tokenise them or choose a mixture without them."
        )


def run_pretraining(
    args: FourMPretrainingArguments,
    model: FourMForMaskedModeling | None = None,
    train_dataset: Any = None,
    callbacks: list | None = None,
) -> FourMPretrainer:
    """Train (resuming from the last checkpoint of `output_dir` when `auto_resume`) and return the trainer."""
    set_seed(args.seed)
    if train_dataset is None:
        if args.train_dataset is None:
            raise ValueError("Give --train_dataset (a pre-tokenised dataset saved with save_to_disk).")
        if args.streaming:
            train_dataset = ShardStream(
                args.train_dataset, seed=args.data_seed if args.data_seed is not None else args.seed,
                masking_seed=args.masking_seed, shuffle_buffer=args.shuffle_buffer, rank=args.process_index,
                world_size=args.world_size,
            )  # fmt: skip
        else:
            train_dataset = datasets.load_from_disk(args.train_dataset).with_format("numpy")
    check_dataset(train_dataset, args)
    streamed = isinstance(train_dataset, ShardStream)
    if streamed:
        args.ignore_data_skip = True  # the stream skips what was consumed itself (StreamingResumeCallback)
    model = model if model is not None else build_model(args)
    tokenizer = FourMTokenizer.from_pretrained(args.text_tokenizer) if args.text_tokenizer is not None else None
    if tokenizer is not None and isinstance(model.generation_config, FourMGenerationConfig):
        # saved with the model, so that generate() reads and writes text with this tokenizer's [PAD], [EOS], sentinels
        model.generation_config.special_tokens = tokenizer.special_tokens
    trainer = FourMPretrainer(
        model=model,
        args=args,
        train_dataset=train_dataset if streamed else SeededMaskingDataset(train_dataset, seed=args.masking_seed),
        data_collator=build_collator(args, model.config, tokenizer),
        callbacks=callbacks,
    )
    checkpoint = args.resume_from_checkpoint
    if checkpoint is None and args.auto_resume and os.path.isdir(args.output_dir):
        checkpoint = get_last_checkpoint(args.output_dir)
    if checkpoint is not None:
        logger.info(f"Resuming from {checkpoint}.")
    trainer.train(resume_from_checkpoint=checkpoint)
    return trainer


def main(argv: list[str] | None = None) -> FourMPretrainer:
    prepare_launch_environment()
    parser = fill_missing_help(HfArgumentParser(FourMPretrainingArguments), TrainingArguments)
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        (args,) = parser.parse_yaml_file(argv[0]) if not argv[0].endswith(".json") else parser.parse_json_file(argv[0])
    else:
        (args,) = parser.parse_args_into_dataclasses(argv)
    if args.process_index == 0:
        print(
            f"lr {args.learning_rate:.3g} (total batch {args.total_batch_size}), {args.max_steps} steps, "
            f"{args.warmup_steps} warm-up steps, {args.tokens_per_step} tokens per step"
        )
    trainer = run_pretraining(args)
    trainer.save_model()
    return trainer


if __name__ == "__main__":
    main()
    end_processes()
