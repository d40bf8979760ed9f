"""The 4M diffusion VQ-VAE [`FourMDiVAE`] (RGB, depth, surface normals, edges): the VQ encoder of
`modeling_fourm_vq.py` plus a patched guided-diffusion UNet that denoises 4x4-patchified pixels conditioned on the
nearest-upsampled quantized latents, sampled with the DDPM / DDIM schedulers of `scheduling_fourm.py`.

Notation in shape comments: B batch, C image channels, H x W pixels, p UNet patch size, h x w token grid,
d latent width, E time-embedding width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import initialization as init
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, logging

from .configuration_fourm_vq import FourMDiVAEConfig
from ..layers import eager_attention_forward
from ...checks import check_bool, check_choice, check_int
from ..modeling_utils import check_finite, check_not_empty
from .modeling_fourm_vq import RECONSTRUCTION_LOSS_FUNCTIONS, FourMVQPreTrainedModel
from .scheduling_fourm_divae import SCHEDULER_CLASSES, FourMNoiseScheduler, check_generator, check_timesteps

logger = logging.get_logger(__name__)


@dataclass
class FourMDiVAEOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`): `reconstruction_loss + codebook_weight * quantization_loss`.
        reconstruction_loss (`torch.FloatTensor` of shape `()`): the config's loss between `denoiser_output` and
            `target`.
        quantization_loss (`torch.FloatTensor` of shape `()`): commitment loss of the quantizer.
        denoiser_output (`torch.FloatTensor` of shape `(batch_size, channels, height, width)`): the UNet's
            prediction (x0, noise or velocity, per `prediction_type`) for the noised input.
        target (`torch.FloatTensor` of shape `(batch_size, channels, height, width)`): what it should predict.
        tokens (`torch.LongTensor` of shape `(batch_size, h, w)`): codebook ids of the clean input.
    """

    loss: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    quantization_loss: torch.FloatTensor | None = None
    denoiser_output: torch.FloatTensor | None = None
    target: torch.FloatTensor | None = None
    tokens: torch.LongTensor | None = None


# ----------------------------------------------------------------------------------------------------------------
# UNet building blocks


def timestep_features(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features (N, dim) of timesteps (N,): `[cos(t f), sin(t f)]`, `f_i = max_period^(-i / (dim / 2))`."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class FourMDiVAEGroupNorm(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


class FourMDiVAETimestepEmbedding(nn.Module):
    def __init__(self, channels: int, embed_dim: int):
        super().__init__()
        self.channels = channels
        self.linear_1 = nn.Linear(channels, embed_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(embed_dim, embed_dim)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        features = timestep_features(timesteps, self.channels).to(self.linear_1.weight.dtype)
        return self.linear_2(self.act(self.linear_1(features)))


class FourMDiVAEResBlock(nn.Module):
    """`skip(x) + conv(drop(SiLU(GN(conv(SiLU(GN(x))) + proj(SiLU(emb))))))`; the skip is a 1x1 conv when the
    width changes."""

    def __init__(self, config: FourMDiVAEConfig, in_channels: int, out_channels: int, embed_dim: int):
        super().__init__()
        groups = config.unet_norm_groups
        self.in_norm = FourMDiVAEGroupNorm(groups, in_channels)
        self.in_conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(embed_dim, out_channels)
        self.out_norm = FourMDiVAEGroupNorm(groups, out_channels)
        self.dropout = nn.Dropout(config.unet_dropout)
        self.out_conv = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip_connection = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_conv(self.act(self.in_norm(x)))
        h = h + self.time_emb_proj(self.act(emb)).to(h.dtype)[..., None, None]
        h = self.out_conv(self.dropout(self.act(self.out_norm(h))))
        return self.skip_connection(x) + h


class FourMDiVAEAttentionBlock(nn.Module):
    """Spatial self-attention `x + proj_out(attn(qkv(GN(x))))`; the fused projection holds q, k, v consecutively
    per head (guided-diffusion's legacy layout)."""

    def __init__(self, config: FourMDiVAEConfig, channels: int):
        super().__init__()
        self.config = config
        self.num_heads = config.unet_num_heads
        self.head_dim = channels // self.num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.norm = FourMDiVAEGroupNorm(config.unet_norm_groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, hw, C)
        qkv = self.qkv(tokens).view(batch, height * width, self.num_heads, 3, self.head_dim)
        query, key, value = qkv.permute(3, 0, 2, 1, 4)  # each (B, heads, hw, C / heads)
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        out, _ = attention(self, query, key, value, None, scaling=self.scaling, is_causal=False)
        out = self.proj_out(out.reshape(batch, height * width, channels))
        return x + out.transpose(1, 2).reshape(batch, channels, height, width)


class FourMDiVAEDownsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FourMDiVAEUpsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class FourMDiVAEUNetBlock(nn.Module):
    """One UNet stage entry: optional residual block, optional attention, optional down- or upsampler, in order."""

    def __init__(
        self,
        resnet: FourMDiVAEResBlock | None = None,
        attention: FourMDiVAEAttentionBlock | None = None,
        downsample: FourMDiVAEDownsample | None = None,
        upsample: FourMDiVAEUpsample | None = None,
    ):
        super().__init__()
        self.resnet, self.attention, self.downsample, self.upsample = resnet, attention, downsample, upsample

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.resnet is not None:
            x = self.resnet(x, emb)
        if self.attention is not None:
            x = self.attention(x)
        if self.downsample is not None:
            x = self.downsample(x)
        if self.upsample is not None:
            x = self.upsample(x)
        return x


class FourMDiVAEMidBlock(nn.Module):
    def __init__(self, config: FourMDiVAEConfig, channels: int, embed_dim: int):
        super().__init__()
        self.resnet_in = FourMDiVAEResBlock(config, channels, channels, embed_dim)
        self.attention = FourMDiVAEAttentionBlock(config, channels)
        self.resnet_out = FourMDiVAEResBlock(config, channels, channels, embed_dim)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.resnet_out(self.attention(self.resnet_in(x, emb)), emb)


class FourMDiVAEUNet(nn.Module):
    """Patched, latent-conditioned guided-diffusion UNet.

    `forward(sample (B, C, H, W), timestep, condition (B, d, h, w), condition_mask (B, h, w) | None)`: fold p x p
    pixel patches into channels (C * p * p, order c, ph, pw), append the condition nearest-resized to the patch grid
    (masked positions zeroed), run the UNet, unfold back to (B, C, H, W).
    """

    def __init__(self, config: FourMDiVAEConfig):
        super().__init__()
        self.patch_size = p = config.unet_patch_size
        self.out_channels = config.num_channels
        base, embed_dim = config.unet_channels, 4 * config.unet_channels
        mults, attention_at = config.unet_channel_mult, set(config.unet_attention_resolutions)
        self.time_embedding = FourMDiVAETimestepEmbedding(base, embed_dim)
        width = base * mults[0]
        self.conv_in = nn.Conv2d(config.num_channels * p * p + config.latent_dim, width, 3, padding=1)

        skip_widths, factor, down = [width], 1, []
        for level, mult in enumerate(mults):
            for _ in range(config.unet_num_res_blocks):
                out = base * mult
                attention = FourMDiVAEAttentionBlock(config, out) if factor in attention_at else None
                down.append(FourMDiVAEUNetBlock(FourMDiVAEResBlock(config, width, out, embed_dim), attention))
                width = out
                skip_widths.append(width)
            if level != len(mults) - 1:
                down.append(FourMDiVAEUNetBlock(downsample=FourMDiVAEDownsample(width)))
                skip_widths.append(width)
                factor *= 2
        self.down_blocks = nn.ModuleList(down)
        self.mid_block = FourMDiVAEMidBlock(config, width, embed_dim)

        up = []
        for level, mult in reversed(list(enumerate(mults))):
            for i in range(config.unet_num_res_blocks + 1):
                out = base * mult
                resnet = FourMDiVAEResBlock(config, width + skip_widths.pop(), out, embed_dim)
                attention = FourMDiVAEAttentionBlock(config, out) if factor in attention_at else None
                upsample = FourMDiVAEUpsample(out) if level and i == config.unet_num_res_blocks else None
                up.append(FourMDiVAEUNetBlock(resnet, attention, upsample=upsample))
                width = out
                if upsample is not None:
                    factor //= 2
        self.up_blocks = nn.ModuleList(up)
        self.norm_out = FourMDiVAEGroupNorm(config.unet_norm_groups, width)
        self.act = nn.SiLU()
        self.conv_out = nn.Conv2d(width, config.num_channels * p * p, 3, padding=1)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        condition: torch.Tensor,
        condition_mask: torch.BoolTensor | None = None,
    ) -> torch.Tensor:
        batch, channels, height, width = sample.shape
        p = self.patch_size
        grid_h, grid_w = height // p, width // p
        x = sample.view(batch, channels, grid_h, p, grid_w, p).permute(0, 1, 3, 5, 2, 4)  # (B, C, p, p, H/p, W/p)
        x = x.reshape(batch, channels * p * p, grid_h, grid_w)
        if condition_mask is not None:
            condition = torch.where(condition_mask[:, None], torch.zeros_like(condition), condition)
        condition = F.interpolate(condition.to(x.dtype), size=(grid_h, grid_w), mode="nearest")
        x = torch.cat([x, condition], dim=1)

        timestep = torch.as_tensor(timestep, device=sample.device)
        emb = self.time_embedding(timestep.reshape(-1))  # (B or 1, E), broadcast over the batch
        h = self.conv_in(x)
        skips = [h]
        for block in self.down_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.mid_block(h, emb)
        for block in self.up_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        h = self.conv_out(self.act(self.norm_out(h)))  # (B, C * p * p, H/p, W/p)
        h = h.view(batch, self.out_channels, p, p, grid_h, grid_w).permute(0, 1, 4, 2, 5, 3)
        return h.reshape(batch, self.out_channels, height, width)


# ----------------------------------------------------------------------------------------------------------------
# Model


class FourMDiVAE(FourMVQPreTrainedModel):
    """4M diffusion VQ-VAE tokenizer: `encode(x)` gives token ids; `decode(ids, num_steps, scheduler, generator)`
    samples an image from the patched UNet conditioned on the ids' codebook vectors. `forward` is the training step
    (noise a clean image at a random timestep, predict x0 / noise / velocity).

    ```python
    >>> import torch
    >>> from fourm_hf import FourMDiVAE
    >>> tokenizer = FourMDiVAE.from_pretrained("EPFL-VILAB/4M_tokenizers_rgb_16k_224-448")
    >>> ids = tokenizer.encode(rgb)  # rgb (B, 3, 224, 224) in [-1, 1] -> ids (B, 14, 14)
    >>> image = tokenizer.decode(ids, num_steps=25, scheduler="ddim", generator=torch.Generator().manual_seed(0))
    ```
    """

    config_class = FourMDiVAEConfig
    _no_split_modules = ["FourMVQVAEViTLayer", "FourMVQVAEBottleneckLayer", "FourMDiVAEResBlock"]

    def __init__(self, config: FourMDiVAEConfig):
        super().__init__(config)
        self.decoder = FourMDiVAEUNet(config)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        # residual branches and the output start at zero, as in guided diffusion
        if isinstance(module, FourMDiVAEResBlock):
            init.zeros_(module.out_conv.weight)
            init.zeros_(module.out_conv.bias)
        elif isinstance(module, FourMDiVAEAttentionBlock):
            init.zeros_(module.proj_out.weight)
            init.zeros_(module.proj_out.bias)
        elif isinstance(module, FourMDiVAEUNet):
            init.zeros_(module.conv_out.weight)
            init.zeros_(module.conv_out.bias)

    def get_scheduler(self, scheduler: str | FourMNoiseScheduler | None = None) -> FourMNoiseScheduler:
        """A fresh sampler: `"ddpm"`, `"ddim"` (built from the config's noise schedule), a scheduler instance
        (returned as is), or None for the config's `scheduler`."""
        if isinstance(scheduler, FourMNoiseScheduler):
            return scheduler
        if scheduler is not None and not isinstance(scheduler, str):
            raise TypeError(
                f"scheduler must be 'ddpm', 'ddim', a FourMNoiseScheduler or None, got {type(scheduler).__name__} "
                f"{scheduler!r}."
            )
        name = check_choice(scheduler or self.config.scheduler, "scheduler", SCHEDULER_CLASSES)
        return SCHEDULER_CLASSES[name].from_config(self.config)

    def _check_image_size(self, height: int, width: int) -> None:
        multiple = self.config.pixel_multiple
        if height < multiple or width < multiple or height % multiple or width % multiple:
            raise ValueError(
                f"FourMDiVAE decodes images whose height and width are positive multiples of {multiple} (UNet patch "
                f"size x downsamplings), got {height}x{width}."
            )

    def _output_size(self, image_size: int | tuple[int, int] | None, grid: tuple[int, int]) -> tuple[int, int]:
        """(height, width) of decoded images: `image_size` (an int or a pair of ints), or the token grid times the
        patch size."""
        if image_size is None:
            height, width = grid[0] * self.config.patch_size, grid[1] * self.config.patch_size
        elif isinstance(image_size, (tuple, list)) and len(image_size) == 2:
            height, width = (check_int(size, "image_size", 1) for size in image_size)
        else:
            if isinstance(image_size, (tuple, list)):
                raise ValueError(f"image_size must be an int or a (height, width) pair, got {image_size!r}.")
            height = width = check_int(image_size, "image_size", 1)
        self._check_image_size(height, width)
        return height, width

    @torch.no_grad()
    def decode_latents(
        self,
        quantized_latents: torch.Tensor,
        num_steps: int = 25,
        scheduler: str | FourMNoiseScheduler | None = None,
        generator: torch.Generator | None = None,
        image_size: int | tuple[int, int] | None = None,
        timestep_spacing: str | None = None,
        progress_bar: bool = True,
    ) -> torch.Tensor:
        """Sample images (B, C, H, W) conditioned on quantized latents (B, d, h, w).

        1. Draw the initial noise `randn((B, C, H, W), generator)` on the generator's device (CPU by default).
        2. For each timestep of the sampler (`num_steps`, `timestep_spacing`; DDPM "leading", DDIM "trailing" by
           default): run the UNet, then the sampler step (DDPM draws its step noise from the same generator).

        Args:
            num_steps (`int`, *optional*, defaults to 25): sampling steps.
            scheduler: `"ddpm"`, `"ddim"`, a scheduler instance, or None for the config's `scheduler`.
            generator (`torch.Generator`, *optional*): source of all noise draws.
            image_size (`int` or `(int, int)`, *optional*): output size; defaults to the token grid times the
                patch size (e.g. 14x14 tokens -> 224x224).
            timestep_spacing (`str`, *optional*): `"leading"`, `"trailing"` or `"linspace"`.
            progress_bar (`bool`, *optional*, defaults to `True`): show a `tqdm` bar over the sampling steps.
        """
        self._check_latents(quantized_latents)
        check_generator(generator)
        check_bool(progress_bar, "progress_bar")
        batch, _, grid_h, grid_w = quantized_latents.shape
        height, width = self._output_size(image_size, (grid_h, grid_w))
        sampler = self.get_scheduler(scheduler)
        check_int(num_steps, "num_steps", 1, sampler.num_train_timesteps)
        sampler.set_timesteps(num_steps, timestep_spacing)
        condition = quantized_latents.to(device=self.device, dtype=self.dtype)
        draw_device = generator.device if generator is not None else torch.device("cpu")
        sample = torch.randn((batch, self.config.num_channels, height, width), generator=generator, device=draw_device)
        sample = sample.to(self.device)
        for timestep in tqdm(sampler.timesteps, desc="Diffusion decoding", disable=not progress_bar):
            model_output = self.decoder(sample.to(self.dtype), timestep.to(self.device), condition)
            with torch.autocast(device_type=sample.device.type, enabled=False):
                sample = sampler.step(model_output.float(), timestep, sample, generator=generator).prev_sample
        return sample

    def decode(
        self,
        tokens: torch.LongTensor,
        num_steps: int = 25,
        scheduler: str | FourMNoiseScheduler | None = None,
        generator: torch.Generator | None = None,
        image_size: int | tuple[int, int] | None = None,
        timestep_spacing: str | None = None,
        progress_bar: bool = True,
    ) -> torch.Tensor:
        """Sample images (B, C, H, W) from token ids (B, h, w); arguments as in `decode_latents`."""
        return self.decode_latents(
            self.tokens_to_latents(tokens), num_steps=num_steps, scheduler=scheduler, generator=generator,
            image_size=image_size, timestep_spacing=timestep_spacing, progress_bar=progress_bar,
        )

    def denoise(
        self,
        noisy_pixel_values: torch.Tensor,
        timesteps: torch.Tensor | int,
        quantized_latents: torch.Tensor,
        condition_mask: torch.BoolTensor | None = None,
    ) -> torch.Tensor:
        """One UNet evaluation: the prediction (x0, noise or velocity) for `noisy_pixel_values` (B, C, H, W) at
        `timesteps` (B,) or a scalar, conditioned on `quantized_latents` (B, d, h, w); `condition_mask` (B, h, w)
        zeroes conditioning positions (True = dropped)."""
        channels = self.config.num_channels
        if not isinstance(noisy_pixel_values, torch.Tensor) or not noisy_pixel_values.is_floating_point():
            got = f"{type(noisy_pixel_values).__name__} {getattr(noisy_pixel_values, 'dtype', '')}".strip()
            raise TypeError(f"FourMDiVAE.denoise: noisy_pixel_values must be a floating-point tensor, got {got}.")
        if noisy_pixel_values.dim() != 4 or noisy_pixel_values.shape[1] != channels:
            raise ValueError(
                f"FourMDiVAE.denoise: noisy_pixel_values must have shape (batch, {channels}, height, width), got "
                f"{tuple(noisy_pixel_values.shape)}."
            )
        check_not_empty(noisy_pixel_values, "noisy_pixel_values", "FourMDiVAE.denoise")
        self._check_image_size(*noisy_pixel_values.shape[-2:])
        self._check_latents(quantized_latents, "denoise")
        batch, grid = noisy_pixel_values.shape[0], tuple(quantized_latents.shape[-2:])
        if quantized_latents.shape[0] != batch:
            raise ValueError(
                f"FourMDiVAE.denoise: quantized_latents has {quantized_latents.shape[0]} samples, "
                f"noisy_pixel_values {batch}."
            )
        num_train_timesteps = self.config.num_train_timesteps
        if isinstance(timesteps, torch.Tensor) and timesteps.dim():
            check_timesteps(timesteps, batch, num_train_timesteps)
        else:
            integer_tensor = isinstance(timesteps, torch.Tensor) and not timesteps.is_floating_point()
            check_int(timesteps.item() if integer_tensor else timesteps, "timesteps", 0, num_train_timesteps - 1)
        if condition_mask is not None:
            if not isinstance(condition_mask, torch.Tensor) or condition_mask.dtype != torch.bool:
                got = f"{type(condition_mask).__name__} {getattr(condition_mask, 'dtype', '')}".strip()
                raise TypeError(f"FourMDiVAE.denoise: condition_mask must be a bool tensor or None, got {got}.")
            if tuple(condition_mask.shape) != (batch, *grid):
                raise ValueError(
                    f"FourMDiVAE.denoise: condition_mask must have shape {(batch, *grid)}, got "
                    f"{tuple(condition_mask.shape)}."
                )
        to_model = {"device": self.device, "dtype": self.dtype}
        if condition_mask is not None:
            condition_mask = condition_mask.to(self.device)
        return self.decoder(
            noisy_pixel_values.to(**to_model), timesteps, quantized_latents.to(**to_model), condition_mask
        )

    def forward(
        self,
        pixel_values: torch.Tensor,
        timesteps: torch.LongTensor | None = None,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> FourMDiVAEOutput:
        """Training step: encode the clean `pixel_values` (B, C, H, W), noise them at `timesteps` (default: uniform
        in [0, T)) with `noise` (default: Gaussian), and score the denoiser's prediction against its target."""
        encoded = self._encode(pixel_values, update_codebook=self.training, argument="pixel_values")
        clean = pixel_values.to(device=self.device, dtype=self.dtype)
        batch = clean.shape[0]
        check_generator(generator)
        if timesteps is not None:
            check_timesteps(timesteps, batch, self.config.num_train_timesteps)
        if noise is not None:
            if not isinstance(noise, torch.Tensor) or not noise.is_floating_point():
                got = f"{type(noise).__name__} {getattr(noise, 'dtype', '')}".strip()
                raise TypeError(f"FourMDiVAE.forward: noise must be a floating-point tensor, got {got}.")
            if noise.shape != clean.shape:
                raise ValueError(
                    f"FourMDiVAE.forward: noise must have the shape of pixel_values {tuple(clean.shape)}, got "
                    f"{tuple(noise.shape)}."
                )
            check_finite(noise, "noise", "FourMDiVAE.forward")
        sampler = self.get_scheduler("ddpm")
        if timesteps is None:
            draw_device = generator.device if generator is not None else clean.device
            timesteps = torch.randint(
                0, self.config.num_train_timesteps, (batch,), generator=generator, device=draw_device
            )
        timesteps = timesteps.to(clean.device)
        if noise is None:
            draw_device = generator.device if generator is not None else clean.device
            noise = torch.randn(clean.shape, generator=generator, device=draw_device, dtype=clean.dtype)
        noise = noise.to(clean.device)
        condition_mask = None
        if self.training and self.config.condition_dropout > 0:
            dropped = torch.rand(batch, device=clean.device) < self.config.condition_dropout
            condition_mask = dropped[:, None, None].expand(-1, *encoded.quantized_latents.shape[-2:])
        denoiser_output = self.denoise(
            sampler.add_noise(clean, noise, timesteps), timesteps, encoded.quantized_latents, condition_mask
        )
        target = sampler.training_target(clean, noise, timesteps)
        reconstruction_loss = RECONSTRUCTION_LOSS_FUNCTIONS[self.config.reconstruction_loss](denoiser_output, target)
        loss = reconstruction_loss + self.config.codebook_weight * encoded.quantization_loss
        return FourMDiVAEOutput(
            loss=loss,
            reconstruction_loss=reconstruction_loss,
            quantization_loss=encoded.quantization_loss,
            denoiser_output=denoiser_output,
            target=target,
            tokens=encoded.tokens,
        )


__all__ = ["FourMDiVAE", "FourMDiVAEOutput", "FourMDiVAEUNet"]
