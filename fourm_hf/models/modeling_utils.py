"""The one `from_pretrained` of every fourm_hf model (4M models, task heads, VQ models), and the tensor checks their
public methods share (empty batches, non-finite values, ids out of range).

Official apple/ml-4m checkpoints (a Hub repo or directory with the official `config.json` + `model.safetensors`, or
a bare `.safetensors` file with the config in its metadata) are converted on load; native checkpoints go through
transformers' `PreTrainedModel.from_pretrained`. Either way the loaded tensors are checked against the config.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from huggingface_hub import ModelCard
from safetensors import SafetensorError
from transformers import PreTrainedConfig, PreTrainedModel

from ..conversion.files import check_source, find_safetensors, load_safetensors, unreadable_weights
from ..conversion.hub import hub_kwargs
from ..conversion.official import read_checkpoint
from .model_cards import build_model_card, is_replaceable


def check_not_empty(tensor: torch.Tensor, argument: str, owner: str) -> None:
    """Raise a `ValueError` when `tensor` has no element (an empty batch or a zero-sized grid)."""
    if tensor.numel() == 0:
        shape = tuple(tensor.shape)
        if shape[0] == 0:
            raise ValueError(f"{owner}: {argument} is an empty batch (shape {shape}); pass at least one sample.")
        raise ValueError(f"{owner}: {argument} has a dimension of size 0 (shape {shape}).")


_DEFERRED: ContextVar[list[torch.Tensor] | None] = ContextVar("fourm_hf_deferred_checks", default=None)


def holds(condition: torch.Tensor) -> bool:
    """Whether a 0-d boolean tensor is True, read from its device; inside `DeferredChecks` it is recorded instead and
    taken to hold (the block's owner reads every recorded condition at once)."""
    pending = _DEFERRED.get()
    if pending is None:
        return bool(condition)
    pending.append(condition)
    return True


class DeferredChecks:
    """A block whose tensor checks (`check_finite`, `check_range` on tensors, `holds`) record their conditions
    rather than reading each from the device: `all_held()` then reads them in one transfer per device. Where one did
    not hold, the caller runs its checks again outside the block, which raises that check's own error.

    On a GPU each read waits for the queued kernels; the 4M forward's input checks made ~26 of them a step."""

    def __enter__(self) -> DeferredChecks:
        self._token = _DEFERRED.set([])
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.conditions = _DEFERRED.get()
        _DEFERRED.reset(self._token)

    def all_held(self) -> bool:
        """Whether every condition recorded in the block held (True when none was)."""
        by_device: dict[torch.device, list[torch.Tensor]] = {}
        for condition in self.conditions:
            by_device.setdefault(condition.device, []).append(condition.reshape(()))
        return all(bool(torch.stack(group).all()) for group in by_device.values())


def check_finite(tensor: torch.Tensor, argument: str, owner: str) -> None:
    """Raise a `ValueError` counting the NaN / infinite values of a floating-point `tensor`."""
    finite = torch.isfinite(tensor)
    if not holds(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{owner}: {argument} holds {bad} NaN or infinite value(s) of {tensor.numel()}.")


def check_range(ids: torch.Tensor | np.ndarray, what: str, size: int, note: str = "") -> None:
    """Raise a `ValueError` unless the integer `ids` (a tensor or a numpy array, described as `what`) lie in
    `[0, size)`."""
    if isinstance(ids, torch.Tensor):
        low, high = (bound.long() for bound in torch.aminmax(ids))  # int64: `size` may not fit the ids' dtype
        if holds((low >= 0) & (high < size)):
            return
    else:
        low, high = ids.min(), ids.max()
    low, high = int(low), int(high)
    if low < 0 or high >= size:
        raise ValueError(f"{what} must lie in [0, {size}){note}, got values in [{low}, {high}].")


def meta_state_shapes(model_class: type[PreTrainedModel], config: PreTrainedConfig) -> dict[str, torch.Size]:
    """Every tensor a `model_class` of `config` holds, with its shape (the model is built on the meta device)."""
    with torch.device("meta"):
        model = model_class(config)
    return {key: value.shape for key, value in model.state_dict().items()}


class FourMLoadingMixin:
    """`from_pretrained` for fourm_hf models; list it before `PreTrainedModel` in the bases.

    A model family describes its checkpoints with:
        `_checkpoint_name`: what its checkpoints are called in error messages (`"model"`, `"VQ model"`).
        `_required_key_prefixes`: a checkpoint that lacks a tensor whose name starts with one of these is refused;
            other missing tensors (fresh task heads) are initialised.
        `_is_official_config`, `_config_from_official`, `_state_dict_from_official`: the official-layout hooks.
    and may adjust the config before loading with `_prepare_config` (config overrides of the task heads).
    """

    _checkpoint_name: ClassVar[str] = "model"
    _required_key_prefixes: ClassVar[tuple[str, ...]] = ("",)

    def __init__(self, config: PreTrainedConfig, *args: Any, **kwargs: Any):
        if isinstance(config, PreTrainedConfig) and not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} is built from a {self.config_class.__name__}, got a {type(config).__name__}."
            )
        super().__init__(config, *args, **kwargs)

    def get_input_embeddings(self) -> None:
        """None: 4M models embed each modality with its own module, there is no one token embedding to resize or tie
        (FSDP2 then shards the embeddings with the root module instead of failing on transformers' default)."""
        return None

    @classmethod
    def _is_official_config(cls, config: dict[str, Any]) -> bool:
        """Whether a `config.json` dict (or safetensors metadata) is an official checkpoint's of this family."""
        raise NotImplementedError

    @classmethod
    def _config_from_official(cls, official_config: dict[str, Any], weights_file: str) -> PreTrainedConfig:
        """The native config of an official checkpoint (`weights_file` is its safetensors file)."""
        raise NotImplementedError

    @classmethod
    def _state_dict_from_official(
        cls, official_state: dict[str, torch.Tensor], config: PreTrainedConfig
    ) -> dict[str, torch.Tensor]:
        """The official tensors renamed and reshaped for a `cls` of `config`."""
        raise NotImplementedError

    @classmethod
    def _prepare_config(
        cls,
        config: PreTrainedConfig | str | os.PathLike | None,
        pretrained_model_name_or_path: str | os.PathLike | None,
        kwargs: dict[str, Any],
    ) -> PreTrainedConfig | str | os.PathLike | None:
        """The `config` to load with; may consume keyword arguments of `from_pretrained` from `kwargs`."""
        return config

    @classmethod
    def _check_model_type(cls, source: str | os.PathLike, model_type: str | None, architectures: list | None) -> None:
        """Refuse a checkpoint of another model type, naming the class it is for when its config says."""
        expected = cls.config_class.model_type
        if model_type == expected:
            return
        owner = (architectures or [None])[0]
        if owner:
            what = cls._checkpoint_name
            raise ValueError(f"{source} holds a {owner} {what}; load it with {owner}, not {cls.__name__}.")
        raise ValueError(
            f"{source} is not a {cls.__name__} checkpoint: its config has model_type {model_type!r}, expected "
            f"{expected!r}."
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args: Any, **kwargs: Any):
        """Load a native checkpoint, or an official apple/ml-4m one (Hub repo id or directory with `config.json` +
        `model.safetensors`, or a bare `.safetensors` file with the config in its metadata), converted on load.

        Tensors that are missing (see `_required_key_prefixes`), unexpected or shaped differently from the config
        raise a `ValueError` (pass `ignore_mismatched_sizes=True` to only warn). Weights are read from safetensors
        files only (a pickle-only checkpoint is refused); a missing, truncated or corrupt file raises an `OSError`
        naming it. Other keyword arguments are those of `PreTrainedModel.from_pretrained`; `name_or_path` of the
        model is what was passed.
        """
        source = pretrained_model_name_or_path
        if source is not None:
            source = check_source(source)
        if kwargs.get("use_safetensors", True) is not True:
            raise ValueError(
                f"use_safetensors={kwargs['use_safetensors']!r}: fourm_hf loads safetensors weights only (unpickling "
                "a checkpoint can run arbitrary code)."
            )
        kwargs["use_safetensors"] = True
        official, weights = False, None
        if source is not None and "state_dict" not in kwargs:
            hub = hub_kwargs(kwargs)
            found = read_checkpoint(source, cls._is_official_config, f"4M {cls._checkpoint_name}", **hub)
            if found is not None and found[1] is None:
                cls._check_model_type(source, found[0].get("model_type"), found[0].get("architectures"))
                weights = find_safetensors(source, **hub)
            elif found is not None:
                official_config, weights_file = found
                config = cls._config_from_official(official_config, weights_file)
                cls._check_model_type(source, config.model_type, config.architectures)
                kwargs["state_dict"] = cls._state_dict_from_official(load_safetensors(weights_file), config)
                kwargs.setdefault("config", config)
                kwargs = {key: value for key, value in kwargs.items() if key not in hub}
                pretrained_model_name_or_path, official = None, True
        config = cls._prepare_config(kwargs.pop("config", None), pretrained_model_name_or_path, kwargs)
        if config is not None:
            kwargs["config"] = config

        strict = not kwargs.pop("ignore_mismatched_sizes", False)
        return_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, output_loading_info=True, ignore_mismatched_sizes=True,
                **kwargs,
            )
        except SafetensorError as err:
            raise unreadable_weights(weights or str(source), err) from err
        if strict:
            missing = sorted(k for k in info["missing_keys"] if k.startswith(cls._required_key_prefixes))
            problems = [
                f"missing: {missing}",
                f"unexpected: {sorted(info['unexpected_keys'])}",
                f"mismatched shapes: {sorted(map(str, info['mismatched_keys']))}",
            ]
            problems = [p for p in problems if not p.endswith("[]")]
            if problems:
                raise ValueError(
                    f"The checkpoint {source or ''} disagrees with its config for {cls.__name__}: "
                    + "; ".join(problems)
                )
        if official:
            model.config.name_or_path = source
            model.name_or_path = model.config.name_or_path
        return (model, info) if return_info else model

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """`PreTrainedModel.save_pretrained`, plus a model card (`README.md`: fourm_hf metadata, the weights'
        licence, a usage snippet loading from `save_directory`) unless the directory holds a card of the user's."""
        super().save_pretrained(save_directory, *args, **kwargs)
        card_path = Path(save_directory) / "README.md"
        if kwargs.get("is_main_process", True) and is_replaceable(card_path):
            build_model_card(self, os.fspath(save_directory)).save(card_path)

    def _upload_modified_files(self, working_dir: str | os.PathLike, repo_id: str, *args: Any, **kwargs: Any):
        """Before `push_to_hub` uploads, replace transformers' template card by ours, naming `repo_id`."""
        card_path = Path(working_dir) / "README.md"
        if is_replaceable(card_path):
            tags = ModelCard.load(card_path).data.tags or [] if card_path.exists() else []
            build_model_card(self, repo_id, tags=[t for t in tags if t not in ("fourm_hf", "4M")]).save(card_path)
        return super()._upload_modified_files(working_dir, repo_id, *args, **kwargs)


__all__ = [
    "DeferredChecks", "FourMLoadingMixin", "check_finite", "check_not_empty", "check_range", "holds",
    "meta_state_shapes",
]
