"""Reading official apple/ml-4m checkpoints (EPFL-VILAB/4M-* Hub repos) into fourm_hf's layout.

Official releases come as `config.json` (keys `domains_in`, `domains_out`, `dim`, ...) + `model.safetensors`
(float32, official key names, the config repeated in the safetensors metadata as `str(value)` per field).
All key renaming lives in `OFFICIAL_KEY_RULES`; everything else is a reshape or a tensor the official model
stores but never uses (zero LayerNorm biases, decoder token tables of image modalities, the second copy of
shared modality embeddings).
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Callable
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers.utils import cached_file, logging

from ..models.fourm.configuration_fourm import FourMConfig

logger = logging.get_logger(__name__)

# (official pattern, our replacement); every rule is applied in turn with re.sub.
OFFICIAL_KEY_RULES: list[tuple[str, str]] = [
    (r"^encoder_embeddings\.([^.]+)\.emb_proj\.", r"encoder.embeddings.\1.proj."),
    (r"^encoder_embeddings\.", "encoder.embeddings."),
    (r"^decoder_embeddings\.", "decoder.embeddings."),
    (r"^encoder\.(\d+)\.attn\.", r"encoder.layers.\1.self_attn."),
    (r"^encoder\.(\d+)\.", r"encoder.layers.\1."),
    (r"^decoder\.(\d+)\.", r"decoder.layers.\1."),
    (r"^encoder_norm\.", "encoder.norm."),
    (r"^decoder_norm\.", "decoder.norm."),
    (r"^decoder_proj_context\.", "decoder.context_proj."),
    (r"^mask_token$", "decoder.mask_token"),
    (r"^register_tokens$", "encoder.register_tokens"),
    (r"\.mlp\.fc2\.", ".mlp.down_proj."),
    (r"\.mlp\.fc3\.", ".mlp.up_proj."),
]
# fc1 is the activated branch: the gate of a gated MLP, the only up-projection of a plain one
GATED_FC1_RULE = (r"\.mlp\.fc1\.", ".mlp.gate_proj.")
PLAIN_FC1_RULE = (r"\.mlp\.fc1\.", ".mlp.up_proj.")
_NORM_BIAS = re.compile(r"(^|\.)(norm\d?|query_norm|context_norm|q_norm|k_norm)\.bias$")


def rename_official_key(key: str, gated_mlp: bool) -> str:
    for pattern, replacement in OFFICIAL_KEY_RULES + [GATED_FC1_RULE if gated_mlp else PLAIN_FC1_RULE]:
        key = re.sub(pattern, replacement, key)
    return key


def parse_official_metadata(metadata: dict[str, str]) -> dict[str, Any]:
    """Safetensors metadata values are `str(value)`: parse Python literals, keep other strings (e.g. 'SiLU')."""
    parsed = {}
    for key, value in metadata.items():
        try:
            parsed[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed[key] = value
    return parsed


def expected_state_shapes(config: FourMConfig) -> dict[str, torch.Size]:
    """Every tensor a full fourm_hf model of this config holds, with its shape (built on the meta device)."""
    from ..models.fourm.modeling_fourm import FourMForMaskedModeling

    with torch.device("meta"):
        model = FourMForMaskedModeling(config)
    return {k: v.shape for k, v in model.state_dict().items()}


def convert_official_state_dict(official: dict[str, torch.Tensor], config: FourMConfig) -> dict[str, torch.Tensor]:
    """Map an official state dict to fourm_hf keys and shapes; raise a `ValueError` naming any tensor that does
    not match the config (missing, unexpected or mis-shaped)."""
    expected = expected_state_shapes(config)
    state: dict[str, torch.Tensor] = {}
    dropped_decoder_mod_embs: dict[str, torch.Tensor] = {}
    for key, tensor in official.items():
        ours = rename_official_key(key, config.gated_mlp)
        modality = ours.split(".")[2] if ours.startswith(("encoder.embeddings.", "decoder.embeddings.")) else None
        if _NORM_BIAS.search(ours) and not config.norm_bias:
            if torch.count_nonzero(tensor):
                raise ValueError(f"{key}: the config says norm_bias=False but this LayerNorm bias is not zero.")
            continue
        if ours.startswith("decoder.embeddings.") and ours.endswith(".token_emb.weight"):
            if modality in config.modality_specs and config.modality(modality).is_image:
                continue  # image targets are queried with the mask token; this table is never read
        if ours.startswith("decoder.embeddings.") and ours.endswith(".mod_emb") and ours not in expected:
            dropped_decoder_mod_embs[modality] = tensor
            continue
        state[ours] = tensor
    # With shared modality embeddings the official model loads the decoder copy last, so it wins.
    for modality, tensor in dropped_decoder_mod_embs.items():
        twin = f"encoder.embeddings.{modality}.mod_emb"
        if twin in state:
            if not torch.equal(state[twin], tensor):
                logger.warning(f"{modality}: encoder and decoder modality embeddings differ; using the decoder copy.")
            state[twin] = tensor
        else:
            state[f"decoder.embeddings.{modality}.mod_emb"] = tensor

    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = []
    for key in set(state) & set(expected):
        if state[key].shape != expected[key]:
            if state[key].numel() == expected[key].numel() and state[key].dim() != len(expected[key]):
                state[key] = state[key].reshape(expected[key])  # (1, N, D) tables and (1, 1, D) vectors
            else:
                mismatched.append(f"{key}: checkpoint {tuple(state[key].shape)} vs config {tuple(expected[key])}")
    if missing or unexpected or mismatched:
        raise ValueError(
            "The checkpoint's tensors disagree with its config:"
            + (f"\n  missing: {missing[:20]}" if missing else "")
            + (f"\n  unexpected: {unexpected[:20]}" if unexpected else "")
            + (f"\n  mismatched shapes: {sorted(mismatched)[:20]}" if mismatched else "")
        )
    return {k: v.contiguous() for k, v in state.items()}


def hub_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The Hub download arguments (`cache_dir`, `token`, `revision`, ...) among `from_pretrained` kwargs."""
    names = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")
    return {k: kwargs[k] for k in names if k in kwargs}


def is_official_model_config(config: dict[str, Any]) -> bool:
    """Whether a config dict is an official 4M model's (it names `domains_in` and is not a native config)."""
    return "model_type" not in config and "domains_in" in config


def read_official_files(
    path_or_repo: str | os.PathLike, is_official: Callable[[dict], bool], what: str, **hub_kwargs: Any
) -> tuple[dict, str] | None:
    """`(official config dict, safetensors path)` if `path_or_repo` holds an official checkpoint (as told by
    `is_official`), else None.

    Accepts a bare `.safetensors` file with the config in its metadata, or a local directory / Hub repo id holding an
    official `config.json` + `model.safetensors`. `what` names the checkpoint kind in error messages.
    """
    path = str(path_or_repo)
    if path.endswith(".safetensors") and os.path.isfile(path):
        with safe_open(path, framework="pt") as f:
            metadata = parse_official_metadata(f.metadata() or {})
        if not is_official(metadata):
            raise ValueError(
                f"{path} has no official {what} config in its safetensors metadata; load the directory that holds "
                "it together with its config.json instead."
            )
        return metadata, path
    config_file = cached_file(path, "config.json", _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    if config_file is None:
        return None
    with open(config_file, encoding="utf-8") as f:
        config = json.load(f)
    if not is_official(config):
        return None
    weights = cached_file(path, "model.safetensors", _raise_exceptions_for_missing_entries=False, **hub_kwargs)
    if weights is None:
        raise ValueError(f"{path} holds an official {what} config.json but no model.safetensors.")
    return config, weights


def read_official_checkpoint(path_or_repo: str | os.PathLike, **hub_kwargs: Any) -> tuple[dict, str] | None:
    """`(official config dict, safetensors path)` if `path_or_repo` is an official 4M model checkpoint, else None
    (see `read_official_files`)."""
    return read_official_files(path_or_repo, is_official_model_config, "4M model", **hub_kwargs)


def load_official_checkpoint(
    path_or_repo: str | os.PathLike, model_class: type, kwargs: dict[str, Any]
) -> tuple[FourMConfig, dict[str, torch.Tensor]] | None:
    """Config and converted state dict of an official checkpoint, or None for anything else."""
    found = read_official_checkpoint(path_or_repo, **hub_kwargs(kwargs))
    if found is None:
        return None
    official_config, weights_file = found
    config = FourMConfig.from_official_config(official_config)
    logger.info(f"Converting official 4M checkpoint {path_or_repo} for {model_class.__name__}.")
    for name in hub_kwargs(kwargs):
        kwargs.pop(name)
    return config, convert_official_state_dict(load_file(weights_file), config)


__all__ = [
    "OFFICIAL_KEY_RULES",
    "convert_official_state_dict",
    "hub_kwargs",
    "is_official_model_config",
    "load_official_checkpoint",
    "parse_official_metadata",
    "read_official_checkpoint",
    "read_official_files",
    "rename_official_key",
]
