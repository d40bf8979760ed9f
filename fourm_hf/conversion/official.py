"""What every official apple/ml-4m checkpoint (4M model or modality tokenizer) shares: where its config and weights
are, and the final check of a converted state dict against the tensors a model of its config holds.

Official releases come as `config.json` (no `model_type`) + `model.safetensors` in a Hub repo or directory, or as a
bare `.safetensors` file whose metadata repeats the config (`str(value)` per field). Nothing here imports model code:
callers pass the official-config test and the expected tensor shapes.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Callable
from typing import Any

import torch
from transformers.utils import cached_file

from .files import open_safetensors, read_json_file


def parse_official_metadata(metadata: dict[str, str]) -> dict[str, Any]:
    """Safetensors metadata values are `str(value)`: parse Python literals, keep other strings (e.g. 'SiLU')."""
    parsed = {}
    for key, value in metadata.items():
        try:
            parsed[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed[key] = value
    return parsed


def is_bare_safetensors(path: str | os.PathLike) -> bool:
    """Whether `path` is a local `.safetensors` file (rather than a directory or a Hub repo id)."""
    return str(path).endswith(".safetensors") and os.path.isfile(path)


def read_checkpoint(
    path: str | os.PathLike, is_official: Callable[[dict], bool], what: str, **hub: Any
) -> tuple[dict[str, Any], str | None] | None:
    """`(config dict, official weights file)` of the checkpoint at `path`; the weights file is None when the config
    is not an official one (`is_official`), and the result is None when `path` holds no `config.json`.

    `path` is a local directory or Hub repo id (its `config.json`; `hub` holds the download arguments), or a bare
    official `.safetensors` file (the config in its metadata). `what` names the checkpoint in error messages
    (`"4M model"`, `"4M tokenizer"`).
    """
    if is_bare_safetensors(path):
        with open_safetensors(path) as f:
            metadata = parse_official_metadata(f.metadata() or {})
        if not is_official(metadata):
            raise ValueError(
                f"{path} has no official {what} config in its safetensors metadata; load the directory that holds it "
                "together with its config.json instead."
            )
        return metadata, str(path)
    if os.path.isfile(path):
        raise OSError(
            f"{path} is a file; pass the checkpoint directory (config.json + model.safetensors), a Hub repo id, or a "
            f"bare official {what} .safetensors file."
        )
    config_file = cached_file(str(path), "config.json", _raise_exceptions_for_missing_entries=False, **hub)
    if config_file is None:
        return None
    config = read_json_file(config_file)
    if not is_official(config):
        return config, None
    weights = cached_file(str(path), "model.safetensors", _raise_exceptions_for_missing_entries=False, **hub)
    if weights is None:
        raise FileNotFoundError(f"{path} holds an official {what} config.json but no model.safetensors.")
    return config, weights


def read_official_files(
    path: str | os.PathLike, is_official: Callable[[dict], bool], what: str, **hub: Any
) -> tuple[dict[str, Any], str] | None:
    """`(official config dict, safetensors path)` if `path` holds an official checkpoint, else None (see
    `read_checkpoint`)."""
    found = read_checkpoint(path, is_official, what, **hub)
    if found is None or found[1] is None:
        return None
    return found


def safetensors_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor of a safetensors file, read from its header (no tensor is loaded)."""
    with open_safetensors(path) as f:
        return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}


def fit_state_dict(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Size], what: str
) -> dict[str, torch.Tensor]:
    """Reshape converted tensors that only differ from `expected` in their number of dimensions (official (1, N, D)
    tables, 1x1 Conv1d weights); raise a `ValueError` naming every tensor that is missing, unexpected or mis-shaped.
    Returns contiguous tensors."""
    fitted = dict(state)
    mismatched = []
    for key in set(fitted) & set(expected):
        tensor, shape = fitted[key], expected[key]
        if tensor.shape == shape:
            continue
        if tensor.numel() == shape.numel() and tensor.dim() != len(shape):
            fitted[key] = tensor.reshape(shape)
        else:
            mismatched.append(f"{key}: checkpoint {tuple(tensor.shape)} vs config {tuple(shape)}")
    missing, unexpected = sorted(set(expected) - set(fitted)), sorted(set(fitted) - set(expected))
    if missing or unexpected or mismatched:
        raise ValueError(
            f"The {what} checkpoint's tensors disagree with its config:"
            + (f"\n  missing: {missing[:20]}" if missing else "")
            + (f"\n  unexpected: {unexpected[:20]}" if unexpected else "")
            + (f"\n  mismatched shapes: {sorted(mismatched)[:20]}" if mismatched else "")
        )
    return {key: tensor.contiguous() for key, tensor in fitted.items()}


__all__ = [
    "fit_state_dict",
    "is_bare_safetensors",
    "parse_official_metadata",
    "read_checkpoint",
    "read_official_files",
    "safetensors_shapes",
]
