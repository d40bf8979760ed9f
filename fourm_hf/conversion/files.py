"""Checkpoint files read with errors that name the file and the fix: where a checkpoint is (local path or Hub repo
id), its `config.json`, its safetensors weights. Pickle checkpoints (`pytorch_model.bin`) are refused, never loaded.

A neutral module: it imports nothing from the package, so configs, models, conversion and scripts can all use it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from huggingface_hub.utils import HFValidationError, validate_repo_id
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from transformers.utils import cached_file

SAFETENSORS_NAMES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def check_source(source: Any, argument: str = "pretrained_model_name_or_path") -> str:
    """`source` as a string: an existing local file or directory, or a Hub repo id (`"namespace/name"`).

    Raises a `TypeError` for anything but a string or path, and a `FileNotFoundError` for a local path that does not
    exist (a `Path`, an absolute or relative path, a `.safetensors` name) or a string that cannot be a repo id.
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"{argument} must be a local path or a Hub repo id (str), got {type(source).__name__} {source!r}."
        )
    name = os.fspath(source)
    if os.path.exists(name):
        return name
    looks_local = isinstance(source, os.PathLike) or name.endswith(".safetensors") or name.startswith("~")
    try:
        validate_repo_id(name)
    except HFValidationError:
        looks_local = True
    if looks_local:
        raise FileNotFoundError(
            f"{argument}={name!r}: no such file or directory (and not a Hub repo id of the form 'namespace/name')."
        )
    return name


def read_json_file(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object stored at `path` (a `config.json`); an `OSError` naming the file when it is not valid JSON or
    holds something else than an object."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise OSError(
            f"{path} is not a valid JSON file ({err}); it may be truncated or corrupt: re-download it "
            "(`force_download=True`) or re-save the checkpoint with `save_pretrained`."
        ) from err
    if not isinstance(data, dict):
        raise OSError(f"{path} must hold a JSON object (a config dict), got a JSON {type(data).__name__}.")
    return data


def unreadable_safetensors(path: str | os.PathLike, error: Exception) -> OSError:
    """The error for a safetensors file that cannot be read."""
    return OSError(
        f"{path} is not a readable safetensors file ({error}); it is truncated or corrupt: re-download it "
        "(`force_download=True`) or re-save the model with `save_pretrained`."
    )


@contextmanager
def open_safetensors(path: str | os.PathLike) -> Iterator[Any]:
    """`safetensors.safe_open(path)` in PyTorch mode, raising an `OSError` naming `path` for a corrupt file."""
    try:
        handle = safe_open(str(path), framework="pt")
    except SafetensorError as err:
        raise unreadable_safetensors(path, err) from err
    with handle as f:
        yield f


def unreadable_weights(weights: str, error: Exception) -> OSError:
    """The error for weights that failed to load: names the file (for a sharded checkpoint, the first shard of the
    index `weights` that cannot be read)."""
    if weights.endswith(".index.json"):
        folder = os.path.dirname(weights)
        for shard in dict.fromkeys(read_json_file(weights).get("weight_map", {}).values()):
            try:
                with open_safetensors(os.path.join(folder, shard)):
                    pass
            except OSError as shard_error:
                return shard_error
    return unreadable_safetensors(weights, error)


def load_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, raising an `OSError` naming `path` for a corrupt file."""
    try:
        return load_file(str(path))
    except SafetensorError as err:
        raise unreadable_safetensors(path, err) from err


def find_safetensors(source: str, **hub: Any) -> str:
    """The local path of the weights (`model.safetensors`, or the index of a sharded checkpoint) of the native
    checkpoint at `source` (directory or Hub repo id; `hub` holds the download arguments).

    Raises an `OSError` when there is none, with its own message for a pickle-only checkpoint.
    """
    for name in SAFETENSORS_NAMES:
        found = cached_file(source, name, _raise_exceptions_for_missing_entries=False, **hub)
        if found is not None:
            return found
    folder = os.path.join(source, hub.get("subfolder") or "")
    pickled = [name for name in PICKLE_NAMES if os.path.isfile(os.path.join(folder, name))]
    if pickled:
        raise OSError(
            f"{source} holds only a pickle checkpoint ({pickled[0]}), which fourm_hf refuses to load: unpickling can "
            "run arbitrary code. In an environment you trust, load it with its own code and re-save it with "
            "`save_pretrained` (safetensors)."
        )
    raise FileNotFoundError(
        f"{source} holds no model.safetensors (nor a sharded model.safetensors.index.json); fourm_hf loads "
        "safetensors weights only."
    )


def check_destination(path: str | os.PathLike, argument: str = "destination") -> str:
    """`path` as a string, for a directory to write into: a `NotADirectoryError` when it (or a parent) is a file."""
    name = os.fspath(path)
    existing = name
    while existing and not os.path.exists(existing):
        existing = os.path.dirname(existing.rstrip(os.sep))
    if existing and not os.path.isdir(existing):
        where = "" if existing == name else f" (its parent {existing} is)"
        raise NotADirectoryError(f"{argument}={name!r} must be a directory to write into, but a file is there{where}.")
    return name


__all__ = [
    "PICKLE_NAMES",
    "SAFETENSORS_NAMES",
    "check_destination",
    "check_source",
    "find_safetensors",
    "load_safetensors",
    "open_safetensors",
    "read_json_file",
    "unreadable_safetensors",
    "unreadable_weights",
]
