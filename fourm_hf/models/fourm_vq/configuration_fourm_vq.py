"""Configurations of the 4M modality tokenizers: the VQ-VAE (`fourm_vqvae`) and the diffusion VQ-VAE (`fourm_divae`).

Both share the encoder and quantizer fields of [`FourMVQConfig`]. Official apple/ml-4m tokenizer configs (flat
constructor dicts such as `{"enc_type": "vit_b_enc", "quant_type": "lucid", ...}`) are translated by
`fourm_hf.official_tokenizer_checkpoint`.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict

from ...checks import check_choice
from ..configuration_utils import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE, RATE, FourMPreTrainedConfig

ENCODER_TYPES = ("vit", "bottleneck_mlp")
QUANTIZER_TYPES = ("cosine", "memcodes")
CODE_REPLACEMENT_POLICIES = ("batch_random", "linde_buzo_gray")
RECONSTRUCTION_LOSSES = ("mse", "l1", "smooth_l1", "cross_entropy", "cosine", "cosine_1d", "binary_cross_entropy")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")  # and "shifted_cosine:<shift>"
PREDICTION_TYPES = ("sample", "epsilon", "v_prediction")
SCHEDULERS = ("ddpm", "ddim")
SHIFTED_COSINE = "shifted_cosine:"


def shifted_cosine_shift(beta_schedule: str) -> float | None:
    """The shift of a `"shifted_cosine:<shift>"` schedule name (a positive number), None for other names."""
    if not beta_schedule.startswith(SHIFTED_COSINE):
        return None
    try:
        shift = float(beta_schedule[len(SHIFTED_COSINE) :])
    except ValueError:
        shift = float("nan")
    if not 0 < shift < float("inf"):
        raise ValueError(
            f"beta_schedule {beta_schedule!r}: the shift after {SHIFTED_COSINE!r} must be a positive number."
        )
    return shift


class FourMVQConfig(FourMPreTrainedConfig):
    r"""
    Encoder and quantizer fields shared by [`FourMVQVAEConfig`] and [`FourMDiVAEConfig`].

    Args:
        image_size (`int`, *optional*, defaults to 224): resolution the stored position tables were built for (the
            official config `image_size`, e.g. 448 for the "224-448" tokenizers). Inputs of other resolutions are
            accepted: the tables are bicubically resized to the runtime token grid.
        encoder_image_size (`int`, *optional*): overrides `image_size` for the encoder position table.
        num_channels (`int`, *optional*, defaults to 3): input channels; for class-index inputs (`num_classes` set)
            the width of the class embedding.
        num_classes (`int`, *optional*): if set, `encode` takes `(batch, height, width)` class ids in
            `[0, num_classes)` (semantic segmentation), embedded with a learned table.
        patch_size (`int`, *optional*, defaults to 16): pixels per token side (sets the position-table grid).
        patch_proj (`bool`, *optional*, defaults to `True`): patchify with a `patch_size` convolution; `False` for
            feature-map inputs already on the token grid (CLIP, DINOv2, ImageBind), which use a 1x1 projection.
        encoder_type (`str`, *optional*, defaults to `"vit"`): `"vit"` or `"bottleneck_mlp"` (pointwise residual
            MLP for global vectors and poses, inputs of shape `(batch, channels, 1, 1)`).
        encoder_hidden_size (`int`, *optional*, defaults to 768): ViT width, or MLP width.
        encoder_num_layers (`int`, *optional*, defaults to 12): ViT blocks, or residual MLP blocks.
        encoder_num_heads (`int`, *optional*, defaults to 12): ViT attention heads.
        mlp_ratio (`float`, *optional*, defaults to 4.0): MLP expansion of ViT blocks and bottleneck-MLP blocks.
        post_mlp (`bool`, *optional*, defaults to `False`): tanh-MLP residual after the ViT blocks (ViT-VQGAN);
            VQ-VAE decoders get one before their output projection too.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6): LayerNorm epsilon of the ViTs.
        mlp_layer_norm_eps (`float`, *optional*, defaults to 1e-5): LayerNorm epsilon of the bottleneck MLPs.
        quantizer_type (`str`, *optional*, defaults to `"cosine"`): `"cosine"` (cosine-similarity codebook with EMA
            updates and dead-code restarts) or `"memcodes"` (attention-style codebook, one token per head).
        codebook_size (`int`, *optional*, defaults to 16384): codes per codebook.
        num_codebooks (`int`, *optional*, defaults to 1): Memcodes heads (each head gives one token per position).
        latent_dim (`int`, *optional*, defaults to 32): width of the quantized latents.
        norm_latents (`bool`, *optional*, defaults to `False`): cosine quantizer: l2-normalise latents before the
            commitment loss.
        ema_decay (`float`, *optional*, defaults to 0.99): cosine quantizer: codebook EMA decay (training only).
        dead_code_threshold (`float`, *optional*, defaults to 0.25): cosine quantizer: codes whose EMA usage count
            falls below it are restarted (training only; 0 disables restarts).
        code_replacement_policy (`str`, *optional*, defaults to `"batch_random"`): restart dead codes with random
            latents of the batch, or with noisy copies of the most used codes (`"linde_buzo_gray"`).
        commitment_weight (`float`, *optional*, defaults to 1.0): weight of the commitment loss.
        memcodes_temperature (`float`, *optional*, defaults to 1.0): Gumbel-softmax temperature (training only).
        codebook_weight (`float`, *optional*, defaults to 1.0): weight of the quantizer loss in the training loss.
        initializer_range (`float`, *optional*, defaults to 0.02): std of normal initialisations.
    """

    image_size: int = 224
    encoder_image_size: int | None = None
    num_channels: int = 3
    num_classes: int | None = None
    patch_size: int = 16
    patch_proj: bool = True
    encoder_type: str = "vit"
    encoder_hidden_size: int = 768
    encoder_num_layers: int = 12
    encoder_num_heads: int = 12
    mlp_ratio: float | int = 4.0
    post_mlp: bool = False
    layer_norm_eps: float = 1e-6
    mlp_layer_norm_eps: float = 1e-5
    quantizer_type: str = "cosine"
    codebook_size: int = 16384
    num_codebooks: int = 1
    latent_dim: int = 32
    norm_latents: bool = False
    ema_decay: float = 0.99
    dead_code_threshold: float | int = 0.25
    code_replacement_policy: str = "batch_random"
    commitment_weight: float | int = 1.0
    memcodes_temperature: float | int = 1.0
    codebook_weight: float | int = 1.0
    initializer_range: float = 0.02

    _field_ranges = {
        **dict.fromkeys(
            ("image_size", "encoder_image_size", "num_channels", "num_classes", "patch_size", "encoder_hidden_size",
             "encoder_num_layers", "encoder_num_heads", "codebook_size", "num_codebooks", "latent_dim"),
            AT_LEAST_ONE,
        ),
        **dict.fromkeys(("mlp_ratio", "layer_norm_eps", "mlp_layer_norm_eps", "memcodes_temperature"), POSITIVE),
        **dict.fromkeys(
            ("dead_code_threshold", "commitment_weight", "codebook_weight", "initializer_range"), NON_NEGATIVE
        ),
        "ema_decay": FRACTION,
    }

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self._check_encoder_and_quantizer()

    def _check_choice(self, field: str, choices: tuple[str, ...]) -> None:
        check_choice(getattr(self, field), f"{type(self).__name__}.{field}", choices)

    def _check_vit(self, prefix: str, image_size: int, patch_size: int) -> None:
        hidden, heads = getattr(self, f"{prefix}_hidden_size"), getattr(self, f"{prefix}_num_heads")
        if hidden % heads or hidden % 4:
            raise ValueError(
                f"{prefix}_hidden_size ({hidden}) must be divisible by {prefix}_num_heads ({heads}) and by 4 (2D "
                "sin-cos position table)."
            )
        if image_size % patch_size:
            raise ValueError(
                f"The {prefix} image size ({image_size}) must be a multiple of its patch size ({patch_size})."
            )

    def _check_encoder_and_quantizer(self) -> None:
        self._check_choice("encoder_type", ENCODER_TYPES)
        self._check_choice("quantizer_type", QUANTIZER_TYPES)
        self._check_choice("code_replacement_policy", CODE_REPLACEMENT_POLICIES)
        if self.encoder_type == "vit":
            self._check_vit("encoder", self.encoder_image_size or self.image_size, self.patch_size)
        if self.quantizer_type == "cosine" and self.num_codebooks != 1:
            raise ValueError("num_codebooks > 1 (multi-head tokens) is only supported by the memcodes quantizer.")
        if self.latent_dim % self.num_codebooks:
            raise ValueError(
                f"latent_dim ({self.latent_dim}) must be divisible by num_codebooks ({self.num_codebooks})."
            )


@strict
class FourMVQVAEConfig(FourMVQConfig):
    r"""
    Configuration of [`FourMVQVAE`]: encoder, quantizer and a deterministic ViT or bottleneck-MLP decoder. Defaults
    build the ViT-B/16 RGB VQ-VAE layout; the encoder and quantizer fields are documented in [`FourMVQConfig`].

    Args:
        decoder_image_size (`int`, *optional*): overrides `image_size` for the decoder position table.
        decoder_patch_size (`int`, *optional*): overrides `patch_size` for the decoder output.
        decoder_type (`str`, *optional*, defaults to `"vit"`): `"vit"` or `"bottleneck_mlp"`.
        decoder_hidden_size / decoder_num_layers / decoder_num_heads (`int`, *optional*, defaults to 768 / 12 / 12):
            as for the encoder.
        out_conv (`bool`, *optional*, defaults to `False`): two ConvNeXt blocks after the ViT decoder (SAM masks).
        reconstruction_loss (`str`, *optional*, defaults to `"mse"`): training loss between decoder output and
            input: `"mse"`, `"l1"`, `"smooth_l1"`, `"cross_entropy"` (class-index inputs), `"cosine"` (per channel
            over space), `"cosine_1d"` (over channels) or `"binary_cross_entropy"` (masks in {0, 1}).

    ```python
    >>> from fourm_hf import FourMVQVAEConfig, FourMVQVAE
    >>> config = FourMVQVAEConfig(image_size=32, patch_size=8, encoder_hidden_size=32, encoder_num_layers=1,
    ...     encoder_num_heads=2, decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=2, codebook_size=64)
    >>> model = FourMVQVAE(config)
    ```
    """

    model_type = "fourm_vqvae"
    base_config_key = "vq_config"

    decoder_image_size: int | None = None
    decoder_patch_size: int | None = None
    decoder_type: str = "vit"
    decoder_hidden_size: int = 768
    decoder_num_layers: int = 12
    decoder_num_heads: int = 12
    out_conv: bool = False
    reconstruction_loss: str = "mse"

    _field_ranges = {
        **FourMVQConfig._field_ranges,
        **dict.fromkeys(
            ("decoder_image_size", "decoder_patch_size", "decoder_hidden_size", "decoder_num_layers",
             "decoder_num_heads"),
            AT_LEAST_ONE,
        ),
    }

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self._check_choice("decoder_type", ENCODER_TYPES)
        self._check_choice("reconstruction_loss", RECONSTRUCTION_LOSSES)
        if self.decoder_type == "vit":
            image_size = self.decoder_image_size or self.image_size
            self._check_vit("decoder", image_size, self.decoder_patch_size or self.patch_size)
        if self.reconstruction_loss == "cross_entropy" and self.num_classes is None:
            raise ValueError("reconstruction_loss='cross_entropy' needs class-index inputs (num_classes).")

    @property
    def num_output_channels(self) -> int:
        """Channels of `decode`'s output: class logits for class-index inputs, else the input channels."""
        return self.num_classes or self.num_channels


@strict
class FourMDiVAEConfig(FourMVQConfig):
    r"""
    Configuration of [`FourMDiVAE`]: encoder and quantizer (see [`FourMVQConfig`]) plus a patched UNet diffusion
    decoder conditioned on the quantized latents, and its noise schedule. Defaults build the released RGB tokenizer
    layout (ViT-B/16 encoder with post-MLP, 16k codes, x0 prediction, linear betas rescaled to zero terminal SNR).

    Args:
        unet_patch_size (`int`, *optional*, defaults to 4): pixels folded into channels before the UNet.
        unet_channels (`int`, *optional*, defaults to 256): width of the first UNet level.
        unet_channel_mult (`tuple[int]`, *optional*, defaults to `(1, 2, 2, 2)`): width multiplier per level.
        unet_num_res_blocks (`int`, *optional*, defaults to 3): residual blocks per level.
        unet_attention_resolutions (`tuple[int]`, *optional*, defaults to `(4, 8)`): downsampling factors (relative
            to the patched grid) whose blocks carry self-attention.
        unet_num_heads (`int`, *optional*, defaults to 1): heads of the UNet attention blocks.
        unet_norm_groups (`int`, *optional*, defaults to 32): GroupNorm groups.
        unet_dropout (`float`, *optional*, defaults to 0.0): dropout inside residual blocks (training only).
        num_train_timesteps (`int`, *optional*, defaults to 1000): diffusion steps T.
        beta_schedule (`str`, *optional*, defaults to `"linear"`): `"linear"`, `"scaled_linear"`,
            `"squaredcos_cap_v2"`, `"sigmoid"` or `"shifted_cosine:<shift>"`.
        beta_start / beta_end (`float`, *optional*, defaults to 1e-4 / 0.02): range of the linear-type schedules.
        zero_terminal_snr (`bool`, *optional*, defaults to `True`): rescale the schedule so that step T has zero SNR.
        prediction_type (`str`, *optional*, defaults to `"sample"`): what the decoder predicts: `"sample"` (x0),
            `"epsilon"` or `"v_prediction"`.
        thresholding (`bool`, *optional*, defaults to `True`): clamp the predicted x0 to
            `[-sample_max_value, sample_max_value]` at every sampling step (dynamic thresholding with ratio
            `dynamic_thresholding_ratio`).
        dynamic_thresholding_ratio (`float`, *optional*, defaults to 0.995), sample_max_value (`float`, *optional*,
            defaults to 1.0): dynamic thresholding parameters.
        clip_sample (`bool`, *optional*, defaults to `False`): clamp x0 to `[-1, 1]` when not thresholding.
        scheduler (`str`, *optional*, defaults to `"ddpm"`): default sampler of `decode`: `"ddpm"` or `"ddim"`.
        condition_dropout (`float`, *optional*, defaults to 0.0): training: probability of dropping a sample's
            whole conditioning (classifier-free guidance training; 0 for the released tokenizers).
        reconstruction_loss (`str`, *optional*, defaults to `"mse"`): `"mse"`, `"l1"` or `"smooth_l1"` between the
            decoder output and its target (x0, noise or velocity, per `prediction_type`).
    """

    model_type = "fourm_divae"
    base_config_key = "vq_config"

    post_mlp: bool = True
    unet_patch_size: int = 4
    unet_channels: int = 256
    unet_channel_mult: tuple[int, ...] | list[int] = (1, 2, 2, 2)
    unet_num_res_blocks: int = 3
    unet_attention_resolutions: tuple[int, ...] | list[int] = (4, 8)
    unet_num_heads: int = 1
    unet_norm_groups: int = 32
    unet_dropout: float | int = 0.0
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 0.0001
    beta_end: float = 0.02
    zero_terminal_snr: bool = True
    prediction_type: str = "sample"
    thresholding: bool = True
    dynamic_thresholding_ratio: float = 0.995
    sample_max_value: float | int = 1.0
    clip_sample: bool = False
    scheduler: str = "ddpm"
    condition_dropout: float | int = 0.0
    reconstruction_loss: str = "mse"

    _field_ranges = {
        **FourMVQConfig._field_ranges,
        **dict.fromkeys(
            ("unet_patch_size", "unet_channels", "unet_channel_mult", "unet_num_res_blocks",
             "unet_attention_resolutions", "unet_num_heads", "unet_norm_groups"),
            AT_LEAST_ONE,
        ),
        "num_train_timesteps": {"minimum": 2},
        **dict.fromkeys(("beta_start", "beta_end"), {"minimum": 0, "maximum": 1, "open_minimum": True}),
        **dict.fromkeys(("unet_dropout", "condition_dropout"), RATE),
        **dict.fromkeys(("dynamic_thresholding_ratio", "sample_max_value"), POSITIVE),
    }

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.unet_channel_mult = list(self.unet_channel_mult)
        self.unet_attention_resolutions = list(self.unet_attention_resolutions)
        if self.num_classes is not None:
            raise ValueError("FourMDiVAE decodes pixels; class-index inputs (num_classes) need a FourMVQVAE.")
        self._check_choice("prediction_type", PREDICTION_TYPES)
        self._check_choice("scheduler", SCHEDULERS)
        self._check_choice("reconstruction_loss", ("mse", "l1", "smooth_l1"))
        if shifted_cosine_shift(self.beta_schedule) is None:
            known = (*BETA_SCHEDULES, f"{SHIFTED_COSINE}<shift>")
            check_choice(self.beta_schedule, "FourMDiVAEConfig.beta_schedule", known)
        if self.beta_start > self.beta_end:
            raise ValueError(
                f"FourMDiVAEConfig.beta_start ({self.beta_start}) must not exceed beta_end ({self.beta_end})."
            )
        if self.dynamic_thresholding_ratio > 1:
            raise ValueError(
                f"FourMDiVAEConfig.dynamic_thresholding_ratio must be in (0, 1], got {self.dynamic_thresholding_ratio}."
            )
        if not self.unet_channel_mult:
            raise ValueError("FourMDiVAEConfig.unet_channel_mult is empty; the UNet needs at least one level.")
        widths = [self.unet_channels * m for m in self.unet_channel_mult]
        if any(w % self.unet_norm_groups or w % self.unet_num_heads for w in widths):
            raise ValueError(
                f"UNet widths {widths} must be divisible by unet_norm_groups ({self.unet_norm_groups}) and "
                f"unet_num_heads ({self.unet_num_heads})."
            )

    @property
    def pixel_multiple(self) -> int:
        """Decoded heights and widths must be multiples of this (patching times the UNet's downsamplings)."""
        return self.unet_patch_size * 2 ** (len(self.unet_channel_mult) - 1)


__all__ = ["FourMDiVAEConfig", "FourMVQConfig", "FourMVQVAEConfig", "shifted_cosine_shift"]
