"""The input checks of 4M: one validation of the modality dict, shared by `forward`, the task heads, `generate` and
the processor's `postprocess`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from ...checks import close_match
from ...modalities import IMAGE_TOKENS, PIXELS, SEQUENCE_EMBEDDING, SEQUENCE_POSITIONS, Modalities, ModalitySpec
from ..modeling_utils import DeferredChecks, check_finite, check_not_empty, check_range, holds
from .configuration_fourm import FourMConfig

# The entries of one modality in the forward contract.
ENTRY_KEYS = ("tensor", "input_mask", "target_mask", "decoder_attention_mask")
MASK_KEYS = ENTRY_KEYS[1:]
# Float dtypes autocast converts for the model (float64 it leaves alone).
AUTOCAST_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Keyword arguments `Trainer` passes to a forward that takes `**kwargs`; the 4M forwards do not use them.
TRAINER_KWARGS = frozenset({"num_items_in_batch"})


@torch.compiler.disable  # runs eagerly under torch.compile: its host checks would split the graph ~20 times
def check_modalities(
    config: FourMConfig,
    modalities: Modalities,
    known: set[str],
    *,
    decodable: Iterable[str] | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> int:
    """Validate a modality dict against the forward contract for a model taking the modalities `known`;
    returns the batch size. Raises a `ValueError` / `TypeError` naming the modality and the expectation.

    Args:
        decodable (`Iterable[str]`, *optional*): the modalities the model can predict; a modality outside it with
            target positions (`target_mask` False) is refused. None: targets are not checked (an encoder).
        device (`torch.device`, *optional*): where every tensor must be (the model's device).
        dtype (`torch.dtype`, *optional*): the dtype of pixels and features (the model's; ignored under autocast).
    """
    if not isinstance(modalities, Mapping):
        hint = ""
        if isinstance(modalities, (list, tuple)):
            hint = " (a list of samples? pass one dict of batched tensors, e.g. the processor's or collator's output)"
        raise TypeError(
            f"modalities must be a dict {{modality name: {{'tensor': ..., masks...}}}}, got "
            f"{type(modalities).__name__}{hint}."
        )
    if not modalities:
        raise ValueError("modalities is empty: a non-empty dict {modality name: {'tensor': ..., masks...}} is needed.")
    decodable = None if decodable is None else set(decodable)
    # the value checks (finite pixels, ids in range, mask values) are read from the device in one transfer; where one
    # fails, or anything raises, the checks run again one by one to raise the first error, as they always did
    with DeferredChecks() as deferred:
        try:
            batch_size = _check_entries(config, modalities, known, decodable, device, dtype)
        except (TypeError, ValueError):
            batch_size = None
    if batch_size is not None and deferred.all_held():
        return batch_size
    return _check_entries(config, modalities, known, decodable, device, dtype)


def _check_entries(
    config: FourMConfig,
    modalities: Mapping,
    known: set[str],
    decodable: set[str] | None,
    device: torch.device | None,
    dtype: torch.dtype | None,
) -> int:
    """The checks of `check_modalities` after its dict checks, modality by modality; returns the batch size."""
    batch_sizes = {}
    for name, entry in modalities.items():
        if not isinstance(name, str):
            raise TypeError(f"modality names are strings, got {type(name).__name__} {name!r}.")
        info = config.modality(name)
        if name not in known:
            raise ValueError(f"The model has no embedding for modality {name!r}; it knows {sorted(known)}.")
        batch_sizes[name] = check_modality_entry(info, entry, decodable=decodable, device=device, dtype=dtype)
    if len(set(batch_sizes.values())) > 1:
        raise ValueError(f"All modalities must have the same batch size, got {batch_sizes}.")
    return next(iter(batch_sizes.values()))


def check_forward_kwargs(kwargs: Mapping[str, Any], method: str, parameters: Iterable[str]) -> None:
    """Refuse keyword arguments a forward does not take (a typo would otherwise be ignored), except those `Trainer`
    passes to every forward with `**kwargs`."""
    unknown = sorted(set(kwargs) - TRAINER_KWARGS)
    if unknown:
        parameters = list(parameters)
        raise TypeError(
            f"{method} got unexpected keyword argument(s) {unknown}; it takes {parameters}."
            f"{close_match(unknown[0], parameters)}"
        )


def _as_tensor(value: Any, where: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    hint = " (convert it with torch.from_numpy)" if isinstance(value, np.ndarray) else ""
    raise TypeError(f"{where} must be a torch.Tensor, got {type(value).__name__}{hint}.")


def check_modality_entry(
    info: ModalitySpec,
    entry: Any,
    *,
    decodable: set[str] | None = None,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    argument: str = "modalities",
) -> int:
    """One modality's entry of a modality dict (see `check_modalities`; errors call the dict `argument`): its tensor,
    masks and targets; returns its batch size."""
    name, where = info.name, f"{argument}[{info.name!r}]"
    if not isinstance(entry, Mapping):
        hint = " (wrap a tensor as {'tensor': x})" if isinstance(entry, (torch.Tensor, np.ndarray)) else ""
        raise TypeError(
            f"{where} must be a dict with a 'tensor' entry and optional masks {list(MASK_KEYS)}, got "
            f"{type(entry).__name__}{hint}."
        )
    unknown = [key for key in entry if key not in ENTRY_KEYS]
    if unknown:
        raise ValueError(
            f"{where} has unknown entries {unknown}; an entry holds {list(ENTRY_KEYS)}."
            f"{close_match(unknown[0], ENTRY_KEYS)}"
        )
    if "tensor" not in entry:
        raise ValueError(f"{where} must be a dict with a 'tensor' entry; it has {list(entry)}.")
    tensor = _as_tensor(entry["tensor"], f"{where}['tensor']")
    _check_tensor(info, tensor, dtype)
    check_not_empty(tensor, "the tensor", name)
    _check_device(tensor, f"{where}['tensor']", device)
    num_tokens = tensor.shape[1] if info.is_sequence else info.num_tokens
    shape = (tensor.shape[0], num_tokens)
    masks = {
        key: _check_mask(info, f"{where}[{key!r}]", key, entry[key], shape, device)
        for key in MASK_KEYS
        if entry.get(key) is not None
    }
    target_mask = masks.get("target_mask")
    if decodable is not None and name not in decodable and target_mask is not None and not holds(target_mask.all()):
        raise ValueError(
            f"{name} has target positions (target_mask False) but the model cannot predict it; it decodes "
            f"{sorted(decodable)}. Set its target_mask to True everywhere (or drop it) to use it as an input only."
        )
    if info.is_sequence:
        input_mask = masks.get("input_mask")
        visible = num_tokens if input_mask is None else (~input_mask.bool()).sum(1).max()
        if not holds(torch.as_tensor(visible <= SEQUENCE_POSITIONS)):
            raise ValueError(f"{name}: at most {SEQUENCE_POSITIONS} visible tokens per sample, got {int(visible)}.")
    return tensor.shape[0]


def _check_device(tensor: torch.Tensor, where: str, device: torch.device | None) -> None:
    if device is not None and tensor.device != device:
        raise ValueError(
            f"{where} is on {tensor.device} but the model is on {device}; move the inputs with .to(model.device)."
        )


def _check_mask(
    info: ModalitySpec, where: str, key: str, mask: Any, shape: tuple[int, int], device: torch.device | None
) -> torch.Tensor:
    """A mask of the forward contract: a (batch, tokens) tensor, boolean or 0/1 integers (decoder attention spec:
    non-negative integers)."""
    mask = _as_tensor(mask, where)
    if tuple(mask.shape) != shape:
        raise ValueError(f"{info.name}: {key} must have shape (batch, tokens) = {shape}, got {tuple(mask.shape)}.")
    if mask.is_floating_point() or mask.is_complex():
        expected = "integers >= 0" if key == "decoder_attention_mask" else "booleans (True = hidden / not a target)"
        raise TypeError(f"{where} must hold {expected}, got {mask.dtype}.")
    _check_device(mask, where, device)
    if mask.dtype != torch.bool and mask.numel():
        low, high = torch.aminmax(mask)
        if key == "decoder_attention_mask" and not holds(low >= 0):
            raise ValueError(
                f"{where} must hold integers >= 0 (the compressed attention spec), got minimum {int(low)}."
            )
        if key != "decoder_attention_mask" and not holds((low >= 0) & (high <= 1)):
            raise ValueError(f"{where} must hold booleans or 0 / 1, got values in [{int(low)}, {int(high)}].")
    return mask


def _check_tensor(info: ModalitySpec, tensor: torch.Tensor, dtype: torch.dtype | None) -> None:
    name = info.name
    if info.kind in (PIXELS, SEQUENCE_EMBEDDING):
        if info.kind == PIXELS:
            expected = (info.num_channels, info.image_size, info.image_size)
            if tensor.dim() != 4 or tuple(tensor.shape[1:]) != expected:
                raise ValueError(f"{name} expects pixels of shape (batch, *{expected}), got {tuple(tensor.shape)}.")
        elif tensor.dim() != 3 or tensor.shape[2] != info.embedding_dim:
            raise ValueError(
                f"{name} expects features of shape (batch, length, {info.embedding_dim}), got {tuple(tensor.shape)}."
            )
        what = "pixels" if info.kind == PIXELS else "features"
        if not tensor.is_floating_point():
            hint = " (0-255 images go through FourMProcessor / FourMImageProcessor first)"
            hint = hint if info.kind == PIXELS else ""
            raise TypeError(f"{name} expects floating-point {what}, got {tensor.dtype}{hint}.")
        autocast = torch.is_autocast_enabled(tensor.device.type) and tensor.dtype in AUTOCAST_DTYPES
        if dtype is not None and tensor.dtype != dtype and not autocast:
            raise TypeError(
                f"{name}: {what} are {tensor.dtype} but the model runs in {dtype}; convert them with .to(model.dtype)."
            )
        if tensor.numel():
            check_finite(tensor, what, name)
        return
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        hint = ""
        if tensor.is_floating_point() and tensor.numel():
            whole = bool((tensor == tensor.round()).all())
            hint = " (whole numbers: convert with .long())" if whole else " (with fractional values)"
        raise TypeError(f"{name} expects integer token ids, got {tensor.dtype}{hint}.")
    if info.kind == IMAGE_TOKENS:
        grid = info.grid_size
        if tuple(tensor.shape[1:]) not in ((grid * grid,), (grid, grid)):
            raise ValueError(
                f"{name} expects token ids of shape (batch, {grid * grid}) or (batch, {grid}, {grid}), "
                f"got {tuple(tensor.shape)}."
            )
    elif tensor.dim() != 2:
        raise ValueError(f"{name} expects token ids of shape (batch, length), got {tuple(tensor.shape)}.")
    if tensor.numel():
        check_range(tensor, f"{name} token ids", info.vocab_size)


__all__ = ["ENTRY_KEYS", "check_forward_kwargs", "check_modalities", "check_modality_entry"]
