"""Task heads on the 4M encoder: image classification, semantic segmentation and depth estimation.

Each head model holds the 4M encoder under the attribute `encoder` (the same key names as `FourMForMaskedModeling`),
so `from_pretrained` on any 4M checkpoint, native or official apple/ml-4m layout, fills the encoder and leaves the
head freshly initialised. Pixels enter through the config's pixel modality of matching resolution (`rgb@224` takes
ImageNet-normalised (B, 3, 224, 224) pixels); other encoder modalities can be added as extra inputs.

Head options live on the config (any `FourMConfig` works; missing fields take the defaults of
`TASK_CONFIG_DEFAULTS` and are saved with the model):
    head_hidden_size (`int`, defaults to 256): channels of the convolutional decoder of the dense heads.
    semantic_loss_ignore_index (`int`, defaults to 255): label value the segmentation loss and mIoU skip.
    depth_loss (`str`, defaults to `"silog"`): `"silog"` (scale-invariant log loss, as on NYUv2) or `"l1"`.
"""

from __future__ import annotations

import copy
import os
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedConfig
from transformers import initialization as init
from transformers.modeling_outputs import DepthEstimatorOutput, ImageClassifierOutput, SemanticSegmenterOutput
from transformers.utils import logging

from ...checks import check_bool, check_choice, check_int, check_number
from ...conversion.hub import hub_kwargs
from ...modalities import PIXELS
from ..modeling_utils import check_finite
from .configuration_fourm import FourMConfig
from .modeling_fourm import FourMEncoder, FourMEncoderOutput, FourMPreTrainedModel, check_modalities

logger = logging.get_logger(__name__)

TASK_CONFIG_DEFAULTS: dict[str, Any] = {
    "head_hidden_size": 256,
    "semantic_loss_ignore_index": 255,
    "depth_loss": "silog",
}
DEPTH_LOSSES = ("silog", "l1")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
# Variance weight of the scale-invariant log loss (the value of the BTS / AdaBins NYUv2 recipes).
SILOG_VARIANCE_FOCUS = 0.85

# peft `target_modules` for LoRA on the encoder: attention and MLP linears of every layer (`gate_proj` exists only
# in gated-MLP models; peft skips names it does not find as long as one matches).
LORA_TARGET_MODULES = ["qkv", "self_attn.proj", "gate_proj", "up_proj", "down_proj"]

_LABEL_KEYS = ("id2label", "label2id", "num_labels", "problem_type")


def _config_override_keys() -> set[str]:
    own = set(FourMConfig.__dataclass_fields__) - set(PreTrainedConfig.__dataclass_fields__)
    return own | set(_LABEL_KEYS) | set(TASK_CONFIG_DEFAULTS)


def _apply_config_overrides(config: FourMConfig, overrides: dict[str, Any]) -> None:
    """Set config fields given to `from_pretrained`; labels first so that `num_labels` and `id2label` agree."""
    if "id2label" in overrides:
        if not isinstance(overrides["id2label"], dict):
            raise TypeError(f"id2label must be a dict {{class id: name}}, got {type(overrides['id2label']).__name__}.")
        config.id2label = {int(k): v for k, v in overrides.pop("id2label").items()}
        config.label2id = overrides.pop("label2id", None) or {v: k for k, v in config.id2label.items()}
        if overrides.get("num_labels", config.num_labels) != config.num_labels:
            raise ValueError(
                f"num_labels={overrides['num_labels']} disagrees with id2label, which has {config.num_labels} entries."
            )
    for key, value in overrides.items():
        setattr(config, key, value)
    config.check_fields()


class FourMTaskPreTrainedModel(FourMPreTrainedModel):
    """Shared plumbing of the head models: the encoder, pixel-modality lookup, head init and config overrides."""

    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _keys_to_ignore_on_load_unexpected = [r"^decoder\."]
    # names of the freshly initialised head modules (for peft's `modules_to_save`)
    head_module_names: tuple[str, ...] = ()
    # whether the head's output size is `config.num_labels`
    uses_num_labels: bool = False

    def __init__(self, config: FourMConfig):
        super().__init__(config)
        for key, value in TASK_CONFIG_DEFAULTS.items():
            if not hasattr(config, key):
                setattr(config, key, value)
        self._check_head_config(config)
        self.encoder = FourMEncoder(config)

    def _check_head_config(self, config: FourMConfig) -> None:
        """The head options of `config` (see the module docstring), and `num_labels` for heads sized by it."""
        check_int(config.head_hidden_size, "head_hidden_size", minimum=1)
        check_int(config.semantic_loss_ignore_index, "semantic_loss_ignore_index")
        check_choice(config.depth_loss, "depth_loss", DEPTH_LOSSES)
        if self.uses_num_labels:
            check_int(config.num_labels, f"{type(self).__name__}: num_labels", minimum=1)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, nn.Conv2d):
            init.trunc_normal_(module.weight, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.GroupNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    @classmethod
    def _prepare_config(
        cls,
        config: PreTrainedConfig | str | os.PathLike | None,
        pretrained_model_name_or_path: str | os.PathLike | None,
        kwargs: dict[str, Any],
    ) -> PreTrainedConfig | str | os.PathLike | None:
        """Config fields given to `from_pretrained` override the checkpoint's, for both layouts, e.g. `num_labels=10`,
        `id2label={...}`, `encoder_drop_path_rate=0.1`, `head_hidden_size=128`; the head starts fresh unless the
        checkpoint holds it."""
        keys = _config_override_keys()
        overrides = {key: kwargs.pop(key) for key in list(kwargs) if key in keys}
        if not overrides:
            return config
        if config is None or isinstance(config, (str, os.PathLike)):
            source = config or pretrained_model_name_or_path
            if source is None:
                raise ValueError("Pass a checkpoint path, or a `config` together with `state_dict`.")
            config = FourMConfig.from_pretrained(source, **hub_kwargs(kwargs))
        config = copy.deepcopy(config)
        _apply_config_overrides(config, overrides)
        return config

    def freeze_encoder(self, freeze: bool = True) -> None:
        """Stop (or restart) gradient updates of every encoder weight; the head stays trainable."""
        self.encoder.requires_grad_(not check_bool(freeze, "freeze"))

    def pixel_modality(self, pixel_values: torch.Tensor) -> str:
        """The encoder's pixel modality for `pixel_values` of shape (B, C, S, S), chosen by resolution."""
        if not isinstance(pixel_values, torch.Tensor):
            raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}.")
        options = {}
        for name in self.config.encoder_modalities:
            info = self.config.modality(name)
            if info.kind == PIXELS:
                options[name] = (info.num_channels, info.image_size, info.image_size)
        shape = tuple(pixel_values.shape)
        for name, expected in options.items():
            if pixel_values.dim() == 4 and shape[1:] == expected:
                return name  # its values (empty batch, dtype, NaN) are checked with the other inputs in `encode`
        raise ValueError(
            f"pixel_values of shape {shape} match no pixel modality of the model; expected (batch, C, S, S) with "
            f"{options} (resize the images, or register a pixel modality of that size and build the model with it)."
        )

    def encode(
        self,
        pixel_values: torch.Tensor,
        modalities: dict[str, dict[str, torch.Tensor]] | None = None,
        num_encoder_tokens: int | None = None,
    ) -> tuple[FourMEncoderOutput, str]:
        """Run the encoder on the pixels (all patches visible, first) plus optional extra modalities.

        Returns the encoder output and the name of the pixel modality used.
        """
        name = self.pixel_modality(pixel_values)
        if modalities is not None and not isinstance(modalities, dict):
            raise TypeError(
                "modalities must be a dict {modality name: {'tensor': ...}} or None, got "
                f"{type(modalities).__name__}."
            )
        if modalities and name in modalities:
            raise ValueError(f"{name!r} is given as pixel_values; do not repeat it in `modalities`.")
        inputs = {name: {"tensor": pixel_values}, **(modalities or {})}
        check_modalities(self.config, inputs, set(self.config.encoder_modalities))
        # float32 pixels into a bf16 / fp16 model
        inputs[name] = {"tensor": pixel_values.to(self.encoder.embeddings[name].proj.weight.dtype)}
        num_patches = self.config.modality(name).num_tokens
        if num_encoder_tokens is not None and check_int(num_encoder_tokens, "num_encoder_tokens") < num_patches:
            raise ValueError(
                f"num_encoder_tokens must keep all {num_patches} patch tokens of {name!r}, got {num_encoder_tokens}."
            )
        return self.encoder(inputs, num_encoder_tokens), name

    def patch_features(self, encoded: FourMEncoderOutput, name: str) -> torch.Tensor:
        """The pixel patch tokens as a feature map (B, D, h, w). They follow the register tokens in row-major order,
        since the pixels are the first, fully visible encoder input."""
        grid = self.config.modality(name).grid_size
        start = self.config.num_register_tokens
        tokens = encoded.last_hidden_state[:, start : start + grid * grid]
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], grid, grid)

    def dense_prediction(
        self,
        head: nn.Module,
        pixel_values: torch.Tensor,
        modalities: dict[str, dict[str, torch.Tensor]] | None,
        num_encoder_tokens: int | None,
    ) -> torch.Tensor:
        """Encode, take the pixel patch tokens and run a dense `head` up to the input resolution: (B, C, H, W)."""
        encoded, name = self.encode(pixel_values, modalities, num_encoder_tokens)
        return head(self.patch_features(encoded, name), tuple(pixel_values.shape[-2:]))


class FourMDenseHead(nn.Module):
    """A light convolutional decoder: patch features (B, D, h, w) -> (B, out_channels, H, W) at input size.

    A 1x1 projection to `head_hidden_size` channels, two stages of (2x bilinear upsampling, 3x3 conv, GroupNorm,
    GELU), a 1x1 output convolution, then bilinear upsampling to the input resolution.
    """

    def __init__(self, config: FourMConfig, out_channels: int):
        super().__init__()
        hidden = config.head_hidden_size
        groups = next(g for g in (32, 16, 8, 4, 2, 1) if hidden % g == 0)
        self.proj = nn.Conv2d(config.hidden_size, hidden, kernel_size=1)
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, bias=False),
                nn.GroupNorm(groups, hidden),
                nn.GELU(),
            )
            for _ in range(2)
        )
        self.out = nn.Conv2d(hidden, out_channels, kernel_size=1)

    def forward(self, features: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
        x = self.proj(features)
        for stage in self.stages:
            x = stage(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
        return F.interpolate(self.out(x), size=output_size, mode="bilinear", align_corners=False)


def _describe_range(tensor: torch.Tensor) -> str:
    if tensor.numel() == 0:
        return "no values"
    return f"values in [{tensor.min().item()}, {tensor.max().item()}]"


class FourMForImageClassification(FourMTaskPreTrainedModel):
    """The 4M encoder with a classification head: mean of the encoder's output tokens (registers excluded),
    LayerNorm, linear layer (the MAE / 4M fine-tuning head).

    Labels follow transformers' `problem_type`: class ids (B,) for single-label classification, multi-hot floats
    (B, num_labels) for multi-label, floats (B,) when `num_labels == 1` (regression).
    """

    head_module_names = ("fc_norm", "classifier")
    uses_num_labels = True

    def __init__(self, config: FourMConfig):
        super().__init__(config)
        if config.problem_type is not None:
            check_choice(config.problem_type, "problem_type", PROBLEM_TYPES)
        self.fc_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if module is self.classifier:  # small logits at the start: a near-uniform first prediction
            init.trunc_normal_(module.weight, std=self.config.initializer_range)
            init.zeros_(module.bias)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        modalities: dict[str, dict[str, torch.Tensor]] | None = None,
        num_encoder_tokens: int | None = None,
    ) -> ImageClassifierOutput:
        """
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, channels, size, size)`): normalised pixels of
                one of the config's pixel modalities.
            labels (`torch.Tensor`, *optional*): see the class docstring.
            modalities (`dict`, *optional*): extra encoder inputs in the `FourMForMaskedModeling` format
                (`{name: {"tensor": ..., "input_mask": ...}}`); pooled together with the pixel tokens.
            num_encoder_tokens (`int`, *optional*): encoder token budget (at least the pixel patch count).
        """
        encoded, _ = self.encode(pixel_values, modalities, num_encoder_tokens)
        keep = ~encoded.padding_mask
        keep[:, : self.config.num_register_tokens] = False
        weights = keep.to(encoded.last_hidden_state.dtype).unsqueeze(-1)
        pooled = (encoded.last_hidden_state * weights).sum(1) / weights.sum(1)
        logits = self.classifier(self.fc_norm(pooled))
        loss = self.classification_loss(logits, labels) if labels is not None else None
        return ImageClassifierOutput(loss=loss, logits=logits)

    def problem_type(self, labels: torch.Tensor) -> str:
        if self.config.problem_type is not None:
            return self.config.problem_type
        if self.config.num_labels == 1:
            return "regression"
        if labels.is_floating_point():
            return "multi_label_classification"
        return "single_label_classification"

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Validate `labels` against the problem type and return the loss (computed in float32)."""
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}.")
        batch, num_labels = logits.shape
        problem = self.problem_type(labels)
        labels = labels.to(logits.device)
        logits = logits.float()
        if problem == "single_label_classification":
            if labels.is_floating_point() or labels.dtype == torch.bool or tuple(labels.shape) != (batch,):
                raise ValueError(
                    f"labels must be integer class ids of shape (batch,) = ({batch},), got {labels.dtype} of shape "
                    f"{tuple(labels.shape)}."
                )
            if labels.numel() and (labels.min() < 0 or labels.max() >= num_labels):
                raise ValueError(f"labels must be class ids in [0, {num_labels - 1}], got {_describe_range(labels)}.")
            return F.cross_entropy(logits, labels)
        if problem == "multi_label_classification":
            if self.config.problem_type is None and tuple(labels.shape) == (batch,):
                raise ValueError(
                    f"labels of shape (batch,) must be integer class ids in [0, {num_labels - 1}], got {labels.dtype} "
                    f"{_describe_range(labels)} (fractional class ids?); multi-label targets are floats of shape "
                    f"(batch, num_labels) = ({batch}, {num_labels})."
                )
            if tuple(labels.shape) != (batch, num_labels):
                raise ValueError(
                    f"multi-label labels must have shape (batch, num_labels) = ({batch}, {num_labels}), got "
                    f"{tuple(labels.shape)}."
                )
            labels = labels.float()
            check_finite(labels, "labels", type(self).__name__)
            if labels.numel() and (labels.min() < 0 or labels.max() > 1):
                raise ValueError(f"multi-label labels must lie in [0, 1], got {_describe_range(labels)}.")
            return F.binary_cross_entropy_with_logits(logits, labels)
        if problem == "regression":
            if labels.numel() != batch * num_labels:
                raise ValueError(
                    f"regression labels must have shape (batch, {num_labels}) or (batch,) for one target, got "
                    f"{tuple(labels.shape)}."
                )
            labels = labels.float()
            check_finite(labels, "labels", type(self).__name__)
            return F.mse_loss(logits, labels.view(batch, num_labels))
        raise ValueError(f"Unknown problem_type {problem!r}.")


class FourMForSemanticSegmentation(FourMTaskPreTrainedModel):
    """The 4M encoder with a light convolutional decoder over its pixel patch tokens (`FourMDenseHead`), giving
    per-pixel class logits at the input resolution.

    Labels: class ids of shape (B, H, W) (H, W = the pixel size), values in [0, num_labels) or
    `config.semantic_loss_ignore_index` for pixels the loss skips (a batch of ignored pixels only adds 0 to the loss,
    with a warning).
    """

    head_module_names = ("decode_head",)
    uses_num_labels = True

    def __init__(self, config: FourMConfig):
        super().__init__(config)
        self.decode_head = FourMDenseHead(config, config.num_labels)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        modalities: dict[str, dict[str, torch.Tensor]] | None = None,
        num_encoder_tokens: int | None = None,
    ) -> SemanticSegmenterOutput:
        """
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, channels, size, size)`).
            labels (`torch.LongTensor` of shape `(batch_size, size, size)`, *optional*).
            modalities (`dict`, *optional*): extra encoder inputs; they condition the patch tokens through
                attention.
            num_encoder_tokens (`int`, *optional*): encoder token budget.

        Returns `logits` of shape `(batch_size, num_labels, size, size)`.
        """
        logits = self.dense_prediction(self.decode_head, pixel_values, modalities, num_encoder_tokens)
        loss = self.segmentation_loss(logits, labels) if labels is not None else None
        return SemanticSegmenterOutput(loss=loss, logits=logits)

    def segmentation_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}.")
        batch, num_labels, height, width = logits.shape
        ignore = self.config.semantic_loss_ignore_index
        if labels.is_floating_point() or labels.dtype == torch.bool or tuple(labels.shape) != (batch, height, width):
            raise ValueError(
                f"labels must be integer class maps of shape (batch, height, width) = ({batch}, {height}, {width}), "
                f"got {labels.dtype} of shape {tuple(labels.shape)}."
            )
        labels = labels.to(logits.device).long()
        valid = labels[labels != ignore]
        if valid.numel() and (valid.min() < 0 or valid.max() >= num_labels):
            raise ValueError(
                f"labels must be class ids in [0, {num_labels - 1}] or the ignore index {ignore}, got "
                f"{_describe_range(valid)} besides the ignore index."
            )
        if not valid.numel():
            logger.warning(
                f"Segmentation labels with every pixel at the ignore index {ignore}: the batch adds nothing to the "
                "loss (0)."
            )
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float(), labels, ignore_index=ignore)


class FourMForDepthEstimation(FourMTaskPreTrainedModel):
    """The 4M encoder with a light convolutional decoder (`FourMDenseHead`) predicting positive per-pixel depth
    (softplus output) at the input resolution.

    Labels: depth maps of shape (B, H, W); pixels with a depth <= 0 or not finite are invalid (missing depth, as in
    NYUv2) and skipped by the loss (`config.depth_loss`: `"silog"` or `"l1"`); a batch without any valid pixel adds
    0 to the loss, with a warning.
    """

    head_module_names = ("head",)

    def __init__(self, config: FourMConfig):
        super().__init__(config)
        self.head = FourMDenseHead(config, 1)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        modalities: dict[str, dict[str, torch.Tensor]] | None = None,
        num_encoder_tokens: int | None = None,
    ) -> DepthEstimatorOutput:
        """
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, channels, size, size)`).
            labels (`torch.FloatTensor` of shape `(batch_size, size, size)`, *optional*): ground-truth depth.
            modalities (`dict`, *optional*): extra encoder inputs.
            num_encoder_tokens (`int`, *optional*): encoder token budget.

        Returns `predicted_depth` of shape `(batch_size, size, size)`.
        """
        output = self.dense_prediction(self.head, pixel_values, modalities, num_encoder_tokens)
        predicted = F.softplus(output.squeeze(1))
        loss = self.depth_loss(predicted, labels) if labels is not None else None
        return DepthEstimatorOutput(loss=loss, predicted_depth=predicted)

    def depth_loss(self, predicted: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}.")
        if not labels.is_floating_point() or labels.shape != predicted.shape:
            raise ValueError(
                f"labels must be floating-point depth maps of shape (batch, height, width) = "
                f"{tuple(predicted.shape)}, got {labels.dtype} of shape {tuple(labels.shape)}."
            )
        labels = labels.to(predicted.device).float()
        predicted = predicted.float()
        valid = torch.isfinite(labels) & (labels > 0)
        if not valid.any():
            logger.warning(
                "Depth labels without a valid pixel (every value is <= 0, NaN or infinite, i.e. missing depth): the "
                "batch adds nothing to the loss (0)."
            )
            return predicted.sum() * 0.0
        if self.config.depth_loss == "l1":
            return (predicted[valid] - labels[valid]).abs().mean()
        log_diff = torch.log(predicted[valid].clamp_min(1e-6)) - torch.log(labels[valid])
        variance = (log_diff**2).mean() - SILOG_VARIANCE_FOCUS * log_diff.mean() ** 2
        return torch.sqrt(variance.clamp_min(1e-12))


_LAYER_PATTERN = re.compile(r"(?:^|\.)encoder\.layers\.(\d+)\.")
_EMBEDDING_PATTERN = re.compile(r"(?:^|\.)encoder\.(embeddings\.|register_tokens)")
_NO_WEIGHT_DECAY = ("pos_emb", "mod_emb", "register_tokens")


def encoder_layer_id(parameter_name: str, num_layers: int) -> int:
    """Depth of a parameter for layer-wise LR decay: 0 for the embeddings, i + 1 for encoder layer i, and
    `num_layers + 1` for everything above (final norm, heads)."""
    match = _LAYER_PATTERN.search(parameter_name)
    if match:
        return int(match.group(1)) + 1
    if _EMBEDDING_PATTERN.search(parameter_name):
        return 0
    return num_layers + 1


def layer_decay_param_groups(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float = 0.05,
    layer_decay: float = 0.75,
    num_layers: int | None = None,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with layer-wise learning-rate decay (the 4M / BEiT / MAE transfer recipe).

    A parameter at depth `i` (see `encoder_layer_id`) gets `learning_rate * layer_decay ** (num_layers + 1 - i)`;
    biases, norm weights and position / modality embeddings get no weight decay. Frozen parameters are left out.
    Works on peft-wrapped models too (parameters are matched by name).

    Use with `Trainer(..., optimizer_cls_and_kwargs=(torch.optim.AdamW, {"params": groups}))`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    check_number(learning_rate, "learning_rate", 0, open_minimum=True)
    check_number(weight_decay, "weight_decay", 0)
    check_number(layer_decay, "layer_decay", 0, 1, open_minimum=True)
    if num_layers is None:
        num_layers = model.config.num_encoder_layers
    check_int(num_layers, "num_layers", minimum=0)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        layer = encoder_layer_id(name, num_layers)
        decay = parameter.ndim > 1 and not any(key in name for key in _NO_WEIGHT_DECAY)
        group = groups.setdefault(
            (layer, decay),
            {
                "params": [],
                "lr": learning_rate * layer_decay ** (num_layers + 1 - layer),
                "weight_decay": weight_decay if decay else 0.0,
            },
        )
        group["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]


__all__ = [
    "LORA_TARGET_MODULES",
    "TASK_CONFIG_DEFAULTS",
    "FourMDenseHead",
    "FourMForDepthEstimation",
    "FourMForImageClassification",
    "FourMForSemanticSegmentation",
    "FourMTaskPreTrainedModel",
    "encoder_layer_id",
    "layer_decay_param_groups",
]
