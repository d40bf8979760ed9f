"""Reading official apple/ml-4m checkpoints (EPFL-VILAB/4M-* Hub repos) into fourm_hf's layout.

Official releases come as `config.json` (keys `domains_in`, `domains_out`, `dim`, ...) + `model.safetensors`
(float32, official key names, the config repeated in the safetensors metadata as `str(value)` per field).
All key renaming lives in `OFFICIAL_KEY_RULES`; everything else is a reshape or a tensor the official model
stores but never uses (zero LayerNorm biases, decoder token tables of image modalities, the second copy of
shared modality embeddings).
"""

from __future__ import annotations

import os
import re
from typing import Any

import torch
from transformers.utils import logging

from ..models.fourm.configuration_fourm import FourMConfig
from .official import fit_state_dict, read_official_files

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


def convert_official_state_dict(
    official: dict[str, torch.Tensor], config: FourMConfig, expected: dict[str, torch.Size]
) -> dict[str, torch.Tensor]:
    """Map an official state dict to fourm_hf keys and shapes.

    `expected` holds every tensor of a full `FourMForMaskedModeling` of `config` with its shape; a `ValueError` names
    each tensor that is missing, unexpected or mis-shaped.
    """
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
    return fit_state_dict(state, expected, "4M model")


def is_official_model_config(config: dict[str, Any]) -> bool:
    """Whether a config dict is an official 4M model's (it names `domains_in` and is not a native config)."""
    return "model_type" not in config and "domains_in" in config


def read_official_checkpoint(path_or_repo: str | os.PathLike, **hub: Any) -> tuple[dict, str] | None:
    """`(official config dict, safetensors path)` if `path_or_repo` is an official 4M model checkpoint, else None
    (see `official.read_checkpoint`)."""
    return read_official_files(path_or_repo, is_official_model_config, "4M model", **hub)


__all__ = [
    "OFFICIAL_KEY_RULES",
    "convert_official_state_dict",
    "is_official_model_config",
    "read_official_checkpoint",
    "rename_official_key",
]
