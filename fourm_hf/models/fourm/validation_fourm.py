"""The input checks of 4M: one validation of the modality dict, shared by `forward`, the task heads and `generate`."""

from __future__ import annotations

import torch

from ...modalities import IMAGE_TOKENS, PIXELS, SEQUENCE_EMBEDDING, SEQUENCE_POSITIONS, Modalities, ModalitySpec
from .configuration_fourm import FourMConfig


def check_modalities(config: FourMConfig, modalities: Modalities, known: set[str]) -> int:
    """Validate a modality dict against the forward contract for a model taking the modalities `known`;
    returns the batch size. Raises a `ValueError` / `TypeError` naming the modality and the expectation."""
    if not isinstance(modalities, dict) or not modalities:
        raise ValueError("`modalities` must be a non-empty dict {modality name: {'tensor': ..., masks...}}.")
    batch_sizes = {}
    for name, entry in modalities.items():
        info = config.modality(name)
        if name not in known:
            raise ValueError(f"The model has no embedding for modality {name!r}; it knows {sorted(known)}.")
        if not isinstance(entry, dict) or "tensor" not in entry:
            raise ValueError(f"modalities[{name!r}] must be a dict with a 'tensor' entry.")
        tensor = entry["tensor"]
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"modalities[{name!r}]['tensor'] must be a torch.Tensor, got {type(tensor).__name__}.")
        batch_sizes[name] = tensor.shape[0] if tensor.dim() else 0
        _check_tensor(info, tensor)
        num_tokens = tensor.shape[1] if info.is_sequence else info.num_tokens
        for mask_name in ("input_mask", "target_mask", "decoder_attention_mask"):
            mask = entry.get(mask_name)
            if mask is None:
                continue
            if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (tensor.shape[0], num_tokens):
                got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
                raise ValueError(
                    f"{name}: {mask_name} must have shape (batch, tokens) = {(tensor.shape[0], num_tokens)}, got {got}."
                )
        if info.is_sequence:
            visible = num_tokens if entry.get("input_mask") is None else int((~entry["input_mask"].bool()).sum(1).max())
            if visible > SEQUENCE_POSITIONS:
                raise ValueError(f"{name}: at most {SEQUENCE_POSITIONS} visible tokens per sample, got {visible}.")
    if len(set(batch_sizes.values())) > 1:
        raise ValueError(f"All modalities must have the same batch size, got {batch_sizes}.")
    return next(iter(batch_sizes.values()))


def _check_tensor(info: ModalitySpec, tensor: torch.Tensor) -> None:
    name = info.name
    if info.kind == PIXELS:
        expected = (info.num_channels, info.image_size, info.image_size)
        if tensor.dim() != 4 or tuple(tensor.shape[1:]) != expected:
            raise ValueError(f"{name} expects pixels of shape (batch, *{expected}), got {tuple(tensor.shape)}.")
        if not tensor.is_floating_point():
            raise TypeError(f"{name} expects floating-point pixels, got {tensor.dtype}.")
        return
    if info.kind == SEQUENCE_EMBEDDING:
        if tensor.dim() != 3 or tensor.shape[2] != info.embedding_dim:
            raise ValueError(
                f"{name} expects features of shape (batch, length, {info.embedding_dim}), got {tuple(tensor.shape)}."
            )
        return
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"{name} expects integer token ids, got {tensor.dtype}.")
    if info.kind == IMAGE_TOKENS:
        grid = info.grid_size
        if tuple(tensor.shape[1:]) not in ((grid * grid,), (grid, grid)):
            raise ValueError(
                f"{name} expects token ids of shape (batch, {grid * grid}) or (batch, {grid}, {grid}), "
                f"got {tuple(tensor.shape)}."
            )
    elif tensor.dim() != 2:
        raise ValueError(f"{name} expects token ids of shape (batch, length), got {tuple(tensor.shape)}.")
    if tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) >= info.vocab_size):
        raise ValueError(
            f"{name} token ids must lie in [0, {info.vocab_size - 1}], got values in "
            f"[{int(tensor.min())}, {int(tensor.max())}]."
        )


__all__ = ["check_modalities"]
