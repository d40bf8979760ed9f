"""Configuration of the 4M encoder-decoder."""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict

from ...checks import check_choice, close_match
from ...modalities import MODALITIES, ModalitySpec, ensure_registered, get_modality, spec_from_dict
from ..configuration_utils import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, RATE, FourMPreTrainedConfig

FOURM7_INPUTS = (
    "rgb@224", "tok_rgb@224", "tok_depth@224", "tok_semseg@224", "tok_normal@224", "tok_clip@224", "caption", "det",
)
FOURM7_TARGETS = FOURM7_INPUTS[1:]

# Official config keys (apple/ml-4m `FM`) and the FourM defaults that apply when a key is absent.
_OFFICIAL_DEFAULTS = {
    "dim": 768, "encoder_depth": 12, "decoder_depth": 12, "num_heads": 12, "mlp_ratio": 4.0,
    "qkv_bias": True, "proj_bias": True, "mlp_bias": True, "drop_path_rate_encoder": 0.0,
    "drop_path_rate_decoder": 0.0, "shared_drop_path": False, "gated_mlp": False, "qk_norm": False,
    "decoder_causal_mask": False, "decoder_sep_mask": True, "num_register_tokens": 0, "use_act_checkpoint": False,
    "share_modality_embeddings": True,
}
_OFFICIAL_REQUIRED = ("domains_in", "domains_out", "norm_bias", "act_layer", "image_size", "patch_size")
_OFFICIAL_TO_OURS = {
    "dim": "hidden_size", "encoder_depth": "num_encoder_layers", "decoder_depth": "num_decoder_layers",
    "num_heads": "num_attention_heads", "mlp_ratio": "mlp_ratio", "qkv_bias": "qkv_bias", "proj_bias": "proj_bias",
    "mlp_bias": "mlp_bias", "norm_bias": "norm_bias", "gated_mlp": "gated_mlp", "qk_norm": "qk_norm",
    "drop_path_rate_encoder": "encoder_drop_path_rate", "drop_path_rate_decoder": "decoder_drop_path_rate",
    "decoder_causal_mask": "decoder_causal_mask", "decoder_sep_mask": "decoder_separation_mask",
    "num_register_tokens": "num_register_tokens", "share_modality_embeddings": "share_modality_embeddings",
}


@strict
class FourMConfig(FourMPreTrainedConfig):
    r"""
    Configuration of [`FourMForMaskedModeling`] and [`FourMEncoderModel`]. Defaults build a 4M-7 B model with the
    architecture of the released checkpoints (SwiGLU MLP, no biases, bias-free LayerNorm).

    Args:
        hidden_size (`int`, *optional*, defaults to 768): token width D.
        num_encoder_layers / num_decoder_layers (`int`, *optional*, defaults to 12): Transformer depth.
        num_attention_heads (`int`, *optional*, defaults to 12): heads of every attention layer.
        mlp_ratio (`float`, *optional*, defaults to 4.0): MLP width factor; a gated MLP uses two thirds of it.
        hidden_act (`str`, *optional*, defaults to `"silu"`): MLP activation (`"silu"` or `"gelu"`, exact erf).
        gated_mlp (`bool`, *optional*, defaults to `True`): SwiGLU-style gated MLP.
        qkv_bias / proj_bias / mlp_bias / norm_bias (`bool`, *optional*, defaults to `False`): learned biases.
        qk_norm (`bool`, *optional*, defaults to `False`): LayerNorm on queries and keys per head.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6): epsilon of every LayerNorm.
        num_register_tokens (`int`, *optional*, defaults to 0): learned tokens prepended to the encoder input.
        decoder_causal_mask (`bool`, *optional*, defaults to `False`): plain causal decoder self-attention instead of
            the per-sample attention spec of `decoder_attention_mask`.
        decoder_separation_mask (`bool`, *optional*, defaults to `True`): decoder tokens attend only within their
            own modality.
        share_modality_embeddings (`bool`, *optional*, defaults to `True`): encoder and decoder use one modality
            embedding per modality (4M-7); 4M-21 keeps them separate.
        encoder_modalities / decoder_modalities (`list[str]`): modalities with an input embedding / an output head,
            in order. Modalities without a decoder (pixels, feature sequences) cannot be decoder modalities.
        modality_specs (`dict`, *optional*): registry entries of every modality used, filled in from the registry
            when absent, so that a saved config rebuilds even where a custom modality is not registered.
        encoder_drop_path_rate / decoder_drop_path_rate (`float`, *optional*, defaults to 0.0): stochastic depth,
            growing linearly over the layers.
        initializer_range (`float`, *optional*, defaults to 0.02): std of the normal initialisations.
        skip_padding_slots (`bool`, *optional*, defaults to `False`): in the masked-modeling forward, run the
            decoder's norms, projections and MLPs on the target slots only, skipping the padding slots a batch has
            when its samples have fewer targets than others (a third of the demo's pre-training slots). The same
            results up to float rounding (Adam can magnify that in near-zero gradients); ~10% faster steps there.

    ```python
    >>> from fourm_hf import FourMConfig, FourMForMaskedModeling
    >>> config = FourMConfig(hidden_size=64, num_encoder_layers=2, num_decoder_layers=2, num_attention_heads=4)
    >>> model = FourMForMaskedModeling(config)
    ```
    """

    model_type = "fourm"
    attribute_map = {"num_hidden_layers": "num_decoder_layers"}
    _field_ranges = {
        **dict.fromkeys(("hidden_size", "num_encoder_layers", "num_attention_heads"), AT_LEAST_ONE),
        **dict.fromkeys(("num_decoder_layers", "num_register_tokens"), NON_NEGATIVE),  # 0: encoder-only heads
        "mlp_ratio": POSITIVE,
        "layer_norm_eps": POSITIVE,
        "encoder_drop_path_rate": RATE,
        "decoder_drop_path_rate": RATE,
        "initializer_range": NON_NEGATIVE,
    }

    hidden_size: int = 768
    num_encoder_layers: int = 12
    num_decoder_layers: int = 12
    num_attention_heads: int = 12
    mlp_ratio: float | int = 4.0
    hidden_act: str = "silu"
    gated_mlp: bool = True
    qkv_bias: bool = False
    proj_bias: bool = False
    mlp_bias: bool = False
    norm_bias: bool = False
    qk_norm: bool = False
    layer_norm_eps: float = 1e-6
    num_register_tokens: int = 0
    decoder_causal_mask: bool = False
    decoder_separation_mask: bool = True
    share_modality_embeddings: bool = True
    encoder_modalities: list[str] | tuple[str, ...] = FOURM7_INPUTS
    decoder_modalities: list[str] | tuple[str, ...] = FOURM7_TARGETS
    modality_specs: dict[str, dict[str, Any]] | None = None
    encoder_drop_path_rate: float | int = 0.0
    decoder_drop_path_rate: float | int = 0.0
    initializer_range: float = 0.02
    skip_padding_slots: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.encoder_modalities = list(self.encoder_modalities)
        self.decoder_modalities = list(self.decoder_modalities)
        saved = dict(self.modality_specs or {})
        specs = {
            name: spec_from_dict(name, saved[name]) if name in saved else get_modality(name)
            for name in dict.fromkeys(self.encoder_modalities + self.decoder_modalities)
        }
        ensure_registered(specs)
        self.modality_specs = {name: spec.to_dict() for name, spec in specs.items()}
        self._specs = specs
        self._check_architecture()

    def _check_architecture(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})."
            )
        check_choice(self.hidden_act, "FourMConfig.hidden_act", ("silu", "gelu"))
        if not self.encoder_modalities:
            raise ValueError("FourMConfig.encoder_modalities is empty; the encoder needs at least one modality.")
        for field in ("encoder_modalities", "decoder_modalities"):
            names = getattr(self, field)
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise ValueError(f"FourMConfig.{field} lists {repeated} more than once; list each modality once.")
        for name in self.decoder_modalities:
            if not self.modality(name).has_decoder:
                raise ValueError(
                    f"Modality {name!r} ({self.modality(name).kind}) has no output head and cannot be a decoder "
                    "modality."
                )

    def modality(self, name: str) -> ModalitySpec:
        """The registry entry of a modality this config uses (from `modality_specs`)."""
        if name not in self._specs:
            known = sorted(self._specs)
            if name in MODALITIES:
                raise ValueError(f"The model has no embedding for modality {name!r}; it knows {known}.")
            raise ValueError(f"Unknown modality {name!r}; this model knows {known}.{close_match(name, known)}")
        return self._specs[name]

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output.pop("_specs", None)  # rebuilt from `modality_specs`
        return output

    @property
    def mlp_hidden_size(self) -> int:
        hidden = int(self.hidden_size * self.mlp_ratio)
        return int(2 * hidden / 3) if self.gated_mlp else hidden

    @classmethod
    def from_official_config(cls, official: dict[str, Any], **kwargs) -> "FourMConfig":
        """Build a config from an apple/ml-4m config dict (Hub `config.json` or safetensors metadata)."""
        if not isinstance(official, dict):
            raise TypeError(f"An official 4M config is a dict, got {type(official).__name__}.")
        missing = [k for k in _OFFICIAL_REQUIRED if k not in official]
        unknown = sorted(set(official) - set(_OFFICIAL_DEFAULTS) - set(_OFFICIAL_REQUIRED))
        if missing or unknown:
            raise ValueError(f"Not a 4M config: missing keys {missing}, unknown keys {unknown}.")
        values = {**_OFFICIAL_DEFAULTS, **official}
        act = str(values["act_layer"]).lower()
        if values["shared_drop_path"] and (values["drop_path_rate_encoder"] or values["drop_path_rate_decoder"]):
            raise ValueError("shared_drop_path is not supported; convert with drop-path rates of 0.")
        for name in list(values["domains_in"]) + list(values["domains_out"]):
            info = get_modality(name)
            if info.is_image and info.patch_size is None:
                raise ValueError(f"Modality {name!r} has no patch size.")
        decoder = [m for m in values["domains_out"] if get_modality(m).has_decoder]  # t5_caption has no head
        return cls(
            **{ours: values[theirs] for theirs, ours in _OFFICIAL_TO_OURS.items()},
            hidden_act=act,
            encoder_modalities=list(values["domains_in"]),
            decoder_modalities=decoder,
            **kwargs,
        )


__all__ = ["FourMConfig"]
