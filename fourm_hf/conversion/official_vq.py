"""Reading official apple/ml-4m tokenizer checkpoints (EPFL-VILAB/4M_tokenizers_* Hub repos) into fourm_hf's layout.

An official tokenizer is `config.json` (the flat constructor dict of the official `VQVAE` / `DiVAE`, e.g.
`{"enc_type": "vit_b_enc", "quant_type": "lucid", "codebook_size": 16384, ...}`) + `model.safetensors` (official key
names, the config repeated in the safetensors metadata). All key renaming lives in `OFFICIAL_TOKENIZER_KEY_RULES`;
the rest is reshaping (1x1 Conv1d attention weights to Linear) and checks. Facts the config may leave implicit
(input channels, patch projection, post-MLP, ConvNeXt output blocks) are read from the tensor shapes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import torch
from transformers.utils import logging

from ..models.fourm_vq.configuration_fourm_vq import FourMDiVAEConfig, FourMVQConfig, FourMVQVAEConfig
from .official import fit_state_dict, read_official_files

logger = logging.get_logger(__name__)


# (official pattern, our replacement), applied in turn with re.sub; replacements may be callables.
OFFICIAL_TOKENIZER_KEY_RULES: list[tuple[str, str | Callable[[re.Match], str]]] = [
    (r"^cls_emb\.", "class_embedding."),
    (r"^quantize\._codebook\.embed$", "quantize.codebook"),
    (r"^quantize\._codebook\.cluster_size$", "quantize.cluster_size"),
    (r"^quantize\.to_k\.weight$", "quantize.key_proj"),
    (r"^quantize\.to_v\.weight$", "quantize.value_proj"),
    # ViT encoder / decoder
    (r"^encoder\.proj\.", "encoder.patch_embed."),
    (r"^(encoder|decoder)\.pos_emb$", r"\1.position_embeddings"),
    (r"^(encoder|decoder)\.norm_mlp\.", r"\1.post_mlp.norm."),
    (r"^(encoder|decoder)\.post_mlp\.fc1\.", r"\1.post_mlp.mlp.up_proj."),
    (r"^(encoder|decoder)\.post_mlp\.fc2\.", r"\1.post_mlp.mlp.down_proj."),
    (r"^(encoder|decoder)\.blocks\.(\d+)\.attn\.", r"\1.layers.\2.self_attn."),
    (r"\.mlp\.fc1\.", ".mlp.up_proj."),
    (r"\.mlp\.fc2\.", ".mlp.down_proj."),
    # bottleneck MLP: blocks.i.block.{0,2} and layernorms.i
    (r"^(encoder|decoder)\.blocks\.(\d+)\.block\.0\.", r"\1.layers.\2.up_proj."),
    (r"^(encoder|decoder)\.blocks\.(\d+)\.block\.2\.", r"\1.layers.\2.down_proj."),
    (r"^(encoder|decoder)\.layernorms\.(\d+)\.", r"\1.layers.\2.norm."),
    (r"^(encoder|decoder)\.blocks\.(\d+)\.", r"\1.layers.\2."),
    # patched UNet (guided-diffusion names)
    (r"^decoder\.time_embed\.0\.", "decoder.time_embedding.linear_1."),
    (r"^decoder\.time_embed\.2\.", "decoder.time_embedding.linear_2."),
    (r"^decoder\.input_blocks\.0\.0\.", "decoder.conv_in."),
    # ADM input block i >= 1 is our down_blocks[i - 1] (block 0 is conv_in): .0 = resnet or downsampler, .1 = attention
    (r"^decoder\.input_blocks\.(\d+)\.0\.op\.", lambda m: f"decoder.down_blocks.{int(m[1]) - 1}.downsample.conv."),
    (r"^decoder\.input_blocks\.(\d+)\.0\.", lambda m: f"decoder.down_blocks.{int(m[1]) - 1}.resnet."),
    (r"^decoder\.input_blocks\.(\d+)\.1\.", lambda m: f"decoder.down_blocks.{int(m[1]) - 1}.attention."),
    (r"^decoder\.middle_block\.0\.", "decoder.mid_block.resnet_in."),
    (r"^decoder\.middle_block\.1\.", "decoder.mid_block.attention."),
    (r"^decoder\.middle_block\.2\.", "decoder.mid_block.resnet_out."),
    (r"^decoder\.output_blocks\.(\d+)\.[12]\.conv\.", r"decoder.up_blocks.\1.upsample.conv."),
    (r"^decoder\.output_blocks\.(\d+)\.0\.", r"decoder.up_blocks.\1.resnet."),
    (r"^decoder\.output_blocks\.(\d+)\.1\.", r"decoder.up_blocks.\1.attention."),
    (r"\.in_layers\.0\.", ".in_norm."),
    (r"\.in_layers\.2\.", ".in_conv."),
    (r"\.emb_layers\.1\.", ".time_emb_proj."),
    (r"\.out_layers\.0\.", ".out_norm."),
    (r"\.out_layers\.3\.", ".out_conv."),
    (r"^decoder\.out\.0\.", "decoder.norm_out."),
    (r"^decoder\.out\.2\.", "decoder.conv_out."),
]
_COMPILED_RULES = [(re.compile(p), r) for p, r in OFFICIAL_TOKENIZER_KEY_RULES]

_VIT_PRESETS = {"s": (512, 8, 8), "b": (768, 12, 12), "l": (1024, 24, 16)}  # width, depth, heads
_VIT_TYPE = re.compile(r"^vit_([sbl])_(enc|dec)$")
_BMLP_TYPE = re.compile(r"^BottleneckMLP/B_(\d+)-Wi_(\d+)(?:-E_(\d+))?$")
# The released patched UNet ("unet_patched"); its shape is fixed in the official code.
_UNET_PATCHED = {
    "unet_patch_size": 4, "unet_channels": 256, "unet_channel_mult": [1, 2, 2, 2], "unet_num_res_blocks": 3,
    "unet_attention_resolutions": [4, 8], "unet_num_heads": 1, "unet_norm_groups": 32,
}
# Official keys with no effect on inference (training bookkeeping, loading helpers, decoder default sizes).
_IGNORED_KEYS = {
    "sync_codebook", "kmeans_init", "ckpt_path", "ignore_keys", "freeze_enc", "image_size_dec", "masked_cfg",
    "masked_cfg_low", "masked_cfg_high", "conditioning", "dec_transformer_dropout", "config",
}
# Official keys translated below (besides the `renamed` table of `config_from_official`).
_TRANSLATED_KEYS = {
    "image_size", "patch_size", "quant_type", "codebook_size", "num_codebooks", "latent_dim", "enc_type", "dec_type",
    "n_channels", "n_labels", "post_mlp", "patch_proj", "norm_codes", "undo_std", "out_conv", "patch_size_dec",
    "image_size_dec", "num_train_timesteps", "cls_free_guidance_dropout", "scheduler", "beta_schedule",
    "prediction_type", "clip_sample", "thresholding", "zero_terminal_snr",
}
_OFFICIAL_MARKERS = ("enc_type", "dec_type", "quant_type", "codebook_size", "n_channels", "latent_dim")


def rename_official_tokenizer_key(key: str) -> str:
    for pattern, replacement in _COMPILED_RULES:
        key = pattern.sub(replacement, key)
    return key


def _architecture(type_name: str, role: str) -> dict[str, Any]:
    """Fields of one official encoder / decoder name (`vit_b_enc`, `BottleneckMLP/B_6-Wi_1024`, ...)."""
    vit = _VIT_TYPE.match(type_name)
    if vit:
        width, depth, heads = _VIT_PRESETS[vit.group(1)]
        return {
            f"{role}_type": "vit", f"{role}_hidden_size": width, f"{role}_num_layers": depth,
            f"{role}_num_heads": heads, "mlp_ratio": 4.0,
        }
    mlp = _BMLP_TYPE.match(type_name)
    if mlp:
        return {
            f"{role}_type": "bottleneck_mlp", f"{role}_hidden_size": int(mlp.group(2)),
            f"{role}_num_layers": int(mlp.group(1)), "mlp_ratio": float(mlp.group(3) or 4),
        }
    raise ValueError(
        f"Unsupported official {role} type {type_name!r}: fourm_hf supports 'vit_{{s,b,l}}_{role[:3]}' and "
        "'BottleneckMLP/B_<blocks>-Wi_<width>[-E_<expansion>]'."
    )


def _official_int(values: dict[str, Any], key: str, default: int | None = None) -> int:
    """The integer `values[key]` (or `default`) of an official config; a `ValueError` naming the key otherwise."""
    value = values.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"Official tokenizer config: {key} must be an integer, got {value!r}.")
    return value


def is_official_tokenizer_config(config: dict[str, Any]) -> bool:
    return "model_type" not in config and any(key in config for key in _OFFICIAL_MARKERS)


def config_from_official(official: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> FourMVQConfig:
    """Translate an official tokenizer config, completing it from the checkpoint's tensor shapes (`architectures`
    names the model class the weights are for)."""
    values = dict(official)
    if values.get("undo_std"):
        raise ValueError("Official tokenizers with undo_std=True (ImageNet-standardised inputs) are not supported.")
    if values.get("quant_type", "lucid") not in ("lucid", "memcodes"):
        raise ValueError(f"Unsupported official quantizer {values['quant_type']!r} (expected 'lucid' or 'memcodes').")
    if values.get("quant_type", "lucid") == "lucid" and not values.get("norm_codes", True):
        raise ValueError("Only cosine-similarity codebooks (norm_codes=True) are supported, not Euclidean ones.")
    dec_type = str(values.get("dec_type", "unet_patched" if "beta_schedule" in values else "vit_b_dec"))
    if "controlnet" in dec_type or any("controlnet" in k for k in shapes) or "sd_path" in values:
        raise ValueError("VQ-ControlNet detokenizers (Stable Diffusion decoders) are not supported.")
    is_diffusion = dec_type.startswith(("unet_", "uvit_"))
    if is_diffusion and dec_type != "unet_patched":
        raise ValueError(f"Unsupported diffusion decoder {dec_type!r}: fourm_hf supports 'unet_patched'.")

    fields: dict[str, Any] = {
        "image_size": _official_int(values, "image_size", 224),
        "patch_size": _official_int(values, "patch_size", 16),
        "quantizer_type": "cosine" if values.get("quant_type", "lucid") == "lucid" else "memcodes",
        "codebook_size": _official_int(values, "codebook_size", 16384),
        "num_codebooks": _official_int(values, "num_codebooks", 1),
        "latent_dim": _official_int(values, "latent_dim", 32),
        **_architecture(str(values.get("enc_type", "vit_b_enc")), "encoder"),
    }
    renamed = {
        "image_size_enc": "encoder_image_size", "norm_latents": "norm_latents", "ema_decay": "ema_decay",
        "threshold_ema_dead_code": "dead_code_threshold", "code_replacement_policy": "code_replacement_policy",
        "commitment_weight": "commitment_weight",
    }
    fields.update({ours: values[theirs] for theirs, ours in renamed.items() if values.get(theirs) is not None})

    # facts read from the weights
    if "cls_emb.weight" in shapes:
        fields["num_classes"], fields["num_channels"] = shapes["cls_emb.weight"]
    elif "encoder.proj.weight" in shapes:
        fields["num_channels"] = shapes["encoder.proj.weight"][1]
        fields["patch_proj"] = shapes["encoder.proj.weight"][-1] != 1 or fields["patch_size"] == 1
    elif "encoder.linear_in.weight" in shapes:
        fields["num_channels"] = shapes["encoder.linear_in.weight"][1]
    stated_channels = _official_int(values, "n_channels", 3)
    if "n_channels" in values and stated_channels != fields.get("num_channels", stated_channels):
        logger.warning(
            f"The official config says n_channels={values['n_channels']} but the weights take "
            f"{fields['num_channels']} input channels; using the weights."
        )
    fields.setdefault("num_channels", stated_channels)
    fields["post_mlp"] = "encoder.norm_mlp.weight" in shapes
    if "patch_proj" in values and "patch_proj" not in fields:
        fields["patch_proj"] = bool(values["patch_proj"])

    unknown = sorted(set(values) - _IGNORED_KEYS - _TRANSLATED_KEYS - set(renamed))
    if unknown:
        logger.info(f"Ignoring official tokenizer config keys without an effect on the model: {unknown}.")

    if is_diffusion:
        diffusion = {
            "num_train_timesteps": "num_train_timesteps", "beta_schedule": "beta_schedule",
            "prediction_type": "prediction_type", "clip_sample": "clip_sample", "thresholding": "thresholding",
            "zero_terminal_snr": "zero_terminal_snr", "scheduler": "scheduler",
            "cls_free_guidance_dropout": "condition_dropout",
        }
        # official constructor defaults where the config is silent
        fields.update({"beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction", "scheduler": "ddpm"})
        fields.update({ours: values[theirs] for theirs, ours in diffusion.items() if values.get(theirs) is not None})
        if fields["scheduler"] != "ddpm":
            fields["scheduler"] = "ddim"
        return FourMDiVAEConfig(**fields, **_UNET_PATCHED, architectures=["FourMDiVAE"])

    decoder = _architecture(dec_type, "decoder")
    if decoder["mlp_ratio"] != fields["mlp_ratio"]:
        raise ValueError(
            f"Encoder and decoder MLP expansions differ ({fields['mlp_ratio']} vs {decoder['mlp_ratio']})."
        )
    fields.update(decoder)
    fields["out_conv"] = any(k.startswith("decoder.out_conv.") for k in shapes)
    if values.get("image_size_dec") is not None:
        fields["decoder_image_size"] = _official_int(values, "image_size_dec")
    if values.get("patch_size_dec") is not None:
        fields["decoder_patch_size"] = _official_int(values, "patch_size_dec")
    return FourMVQVAEConfig(**fields, architectures=["FourMVQVAE"])


def convert_official_vq_model_state_dict(
    official: dict[str, torch.Tensor], config: FourMVQConfig, expected: dict[str, torch.Size]
) -> dict[str, torch.Tensor]:
    """Map an official tokenizer state dict to fourm_hf keys and shapes (float32).

    `expected` holds every tensor of the fourm_hf tokenizer of `config` with its shape; a `ValueError` names each
    tensor that is missing, unexpected or mis-shaped.
    """
    state: dict[str, torch.Tensor] = {}
    for key, tensor in official.items():
        if key == "quantize._codebook.initted":
            if not bool(tensor.all()):
                raise ValueError("The checkpoint's codebook was never initialised (quantize._codebook.initted = 0).")
            continue
        state[rename_official_tokenizer_key(key)] = tensor
    # Conv1d (C', C, 1) attention weights become Linear weights in `fit_state_dict`
    return {k: v.float() for k, v in fit_state_dict(state, expected, "tokenizer").items()}


def read_official_tokenizer(path_or_repo: str | os.PathLike, **hub: Any) -> tuple[dict, str] | None:
    """`(official config dict, safetensors path)` if `path_or_repo` is an official 4M tokenizer, else None (see
    `official.read_checkpoint`)."""
    return read_official_files(path_or_repo, is_official_tokenizer_config, "4M tokenizer", **hub)


__all__ = [
    "OFFICIAL_TOKENIZER_KEY_RULES",
    "config_from_official",
    "convert_official_vq_model_state_dict",
    "is_official_tokenizer_config",
    "read_official_tokenizer",
    "rename_official_tokenizer_key",
]
