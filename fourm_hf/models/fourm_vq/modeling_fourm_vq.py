"""4M modality tokenizers: ViT / bottleneck-MLP encoders and decoders, the cosine-codebook and Memcodes quantizers,
and the deterministic VQ-VAE [`FourMVQVAE`] (semantic segmentation, CLIP / DINOv2 / ImageBind feature maps, global
features, SAM instance masks, human poses). The diffusion VQ-VAE lives in `modeling_fourm_divae.py`.

Notation in shape comments: B batch, C input channels, H x W pixels, h x w token grid, D width, L = h * w,
K codebook size, d latent width, n heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, logging

from .configuration_fourm_vq import FourMVQConfig, FourMVQVAEConfig
from ..layers import FourMMLP, eager_attention_forward, sincos_2d
from ..modeling_utils import FourMLoadingMixin, check_finite, check_not_empty, check_range, meta_state_shapes
from ...conversion.official import safetensors_shapes
from ...conversion.official_vq import (
    config_from_official,
    convert_official_vq_model_state_dict,
    is_official_tokenizer_config,
)

logger = logging.get_logger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# Outputs


@dataclass
class FourMVQEncoderOutput(ModelOutput):
    """
    Args:
        tokens (`torch.LongTensor` of shape `(batch_size, h, w)`, or `(batch_size, num_codebooks, h, w)` for
            multi-head Memcodes): codebook ids.
        quantized_latents (`torch.FloatTensor` of shape `(batch_size, latent_dim, h, w)`): what the decoder receives
            (codebook rows; straight-through to `latents` when the codebook is being trained).
        latents (`torch.FloatTensor` of shape `(batch_size, latent_dim, h, w)`): encoder output before quantization.
        quantization_loss (`torch.FloatTensor` of shape `()`): commitment loss (zero outside training).
    """

    tokens: torch.LongTensor | None = None
    quantized_latents: torch.FloatTensor | None = None
    latents: torch.FloatTensor | None = None
    quantization_loss: torch.FloatTensor | None = None


@dataclass
class FourMVQVAEOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`): `reconstruction_loss + codebook_weight * quantization_loss`.
        reconstruction_loss (`torch.FloatTensor` of shape `()`): the config's `reconstruction_loss` between
            `reconstruction` and the target.
        quantization_loss (`torch.FloatTensor` of shape `()`): commitment loss of the quantizer.
        reconstruction (`torch.FloatTensor` of shape `(batch_size, channels, height, width)`): decoder output
            (class logits for class-index inputs).
        tokens (`torch.LongTensor`): codebook ids, as returned by `encode`.
    """

    loss: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    quantization_loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    tokens: torch.LongTensor | None = None


# ----------------------------------------------------------------------------------------------------------------
# Losses (the official tokenizer-training objectives)


def _binary_cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # as the official trainer: a softmax cross-entropy over the pair (sigmoid(output), 1 - sigmoid(output))
    prob = torch.sigmoid(output)
    return F.cross_entropy(torch.cat([prob, 1 - prob], dim=1), torch.cat([target, 1 - target], dim=1))


RECONSTRUCTION_LOSS_FUNCTIONS = {
    "mse": F.mse_loss,
    "l1": F.l1_loss,
    "smooth_l1": F.smooth_l1_loss,
    "cross_entropy": F.cross_entropy,
    # cosine distance per channel over space / per position over channels
    "cosine": lambda out, tgt: 1 - F.cosine_similarity(out.flatten(2), tgt.flatten(2), dim=-1).mean(),
    "cosine_1d": lambda out, tgt: 1 - F.cosine_similarity(out.flatten(2), tgt.flatten(2), dim=1).mean(),
    "binary_cross_entropy": _binary_cross_entropy,
}


class _ClassIdEmbedding(torch.autograd.Function):
    """`F.embedding(ids, weight)` whose weight gradient accumulates with `index_put_`: for a handful of classes
    looked up at every pixel of a batch (~200k ids), torch's embedding backward on CPU took 4-6x as long."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.num_weights = weight.shape[0]
        return F.embedding(ids, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (ids,) = ctx.saved_tensors
        grad_weight = grad.new_zeros(ctx.num_weights, grad.shape[-1])
        grad_weight.index_put_((ids.reshape(-1),), grad.reshape(-1, grad.shape[-1]), accumulate=True)
        return grad_weight, None


# ----------------------------------------------------------------------------------------------------------------
# Position tables


def sincos_position_table(height: int, width: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """The official fixed 2D sin-cos table in the VQ models' layout, shape (1, dim, height, width) (see
    `layers.sincos_2d` for the channels)."""
    return sincos_2d(height, width, dim, temperature).transpose(0, 1).reshape(1, dim, height, width)


def resize_position_table(table: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubically resize a stored (1, D, h0, w0) table to the runtime grid; returns (1, height * width, D)."""
    resized = F.interpolate(table, size=(height, width), mode="bicubic", align_corners=False)
    return resized.flatten(2).transpose(1, 2)


# ----------------------------------------------------------------------------------------------------------------
# ViT encoder / decoder


class FourMVQVAEAttention(nn.Module):
    """Bidirectional multi-head self-attention with a fused `qkv` projection (biases on)."""

    def __init__(self, config: FourMVQConfig, hidden_size: int, num_heads: int):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each (B, n, L, hd)
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        out, _ = attention(self, query, key, value, None, scaling=self.scaling, is_causal=False)
        return self.proj(out.reshape(batch, length, -1))


class FourMVQVAEViTLayer(GradientCheckpointingLayer):
    """Pre-norm Transformer block."""

    def __init__(self, config: FourMVQConfig, hidden_size: int, num_heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.self_attn = FourMVQVAEAttention(config, hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.mlp = FourMMLP(hidden_size, int(hidden_size * config.mlp_ratio), nn.GELU())

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.self_attn(self.norm1(hidden_states))
        return hidden_states + self.mlp(self.norm2(hidden_states))


class FourMVQVAEPostMLP(nn.Module):
    """The ViT-VQGAN tanh-MLP residual `x + down(tanh(up(norm(x))))`."""

    def __init__(self, config: FourMVQConfig, hidden_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.mlp = FourMMLP(hidden_size, int(hidden_size * config.mlp_ratio), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


class FourMVQVAEViTEncoder(nn.Module):
    """Patchify (or 1x1-project a feature map), add the resized position table, run the blocks and the optional
    post-MLP (in full precision, as the official encoder); no final norm. (B, C, H, W) -> (B, D, h, w)."""

    def __init__(self, config: FourMVQConfig):
        super().__init__()
        dim = config.encoder_hidden_size
        kernel = config.patch_size if config.patch_proj else 1
        self.patch_embed = nn.Conv2d(config.num_channels, dim, kernel_size=kernel, stride=kernel)
        grid = (config.encoder_image_size or config.image_size) // config.patch_size
        self.position_embeddings = nn.Parameter(torch.empty(1, dim, grid, grid), requires_grad=False)
        self.layers = nn.ModuleList(
            FourMVQVAEViTLayer(config, dim, config.encoder_num_heads) for _ in range(config.encoder_num_layers)
        )
        self.post_mlp = FourMVQVAEPostMLP(config, dim) if config.post_mlp else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # (B, D, h, w)
        batch, dim, height, width = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, L, D)
        x = x + resize_position_table(self.position_embeddings, height, width).to(x.dtype)
        for layer in self.layers:
            x = layer(x)
        if self.post_mlp is not None:
            with torch.autocast(device_type=x.device.type, enabled=False):
                x = self.post_mlp(x.to(self.post_mlp.norm.weight.dtype))
        return x.transpose(1, 2).reshape(batch, dim, height, width)


class FourMVQVAEConvNeXtBlock(nn.Module):
    """ConvNeXt block on the decoder output (depthwise 7x7, LayerNorm, pointwise MLP, layer scale, residual)."""

    def __init__(self, config: FourMVQConfig, channels: int):
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, kernel_size=7, padding=3, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        self.pwconv1 = nn.Linear(channels, 4 * channels)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * channels, channels)
        self.gamma = nn.Parameter(torch.empty(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        h = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(h))))
        return x + h.permute(0, 3, 1, 2)


class FourMVQVAEViTDecoder(nn.Module):
    """Token grid (B, D, h, w) -> add the resized position table -> blocks -> optional post-MLP -> per-token linear
    output unpatchified to (B, C_out, h * p, w * p) -> optional ConvNeXt blocks."""

    def __init__(self, config: FourMVQVAEConfig):
        super().__init__()
        dim = config.decoder_hidden_size
        patch = config.decoder_patch_size or config.patch_size
        self.out_channels = config.num_output_channels
        self.patch_size = patch if config.patch_proj else 1
        grid = (config.decoder_image_size or config.image_size) // patch
        self.position_embeddings = nn.Parameter(torch.empty(1, dim, grid, grid), requires_grad=False)
        self.layers = nn.ModuleList(
            FourMVQVAEViTLayer(config, dim, config.decoder_num_heads) for _ in range(config.decoder_num_layers)
        )
        self.post_mlp = FourMVQVAEPostMLP(config, dim) if config.post_mlp else None
        self.out_proj = nn.Linear(dim, self.out_channels * self.patch_size**2)
        self.out_conv = (
            nn.Sequential(*(FourMVQVAEConvNeXtBlock(config, self.out_channels) for _ in range(2)))
            if config.out_conv
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, L, D)
        x = x + resize_position_table(self.position_embeddings, height, width).to(x.dtype)
        for layer in self.layers:
            x = layer(x)
        if self.post_mlp is not None:
            x = self.post_mlp(x)
        x = self.out_proj(x)  # (B, L, C_out * p * p)
        p, channels = self.patch_size, self.out_channels
        x = x.view(batch, height, width, channels, p, p).permute(0, 3, 1, 4, 2, 5)  # (B, C_out, h, p, w, p)
        x = x.reshape(batch, channels, height * p, width * p)
        return x if self.out_conv is None else self.out_conv(x)


# ----------------------------------------------------------------------------------------------------------------
# Bottleneck MLP encoder / decoder


class FourMVQVAEBottleneckLayer(nn.Module):
    """`x + down(GELU(up(LayerNorm(x))))`."""

    def __init__(self, config: FourMVQConfig, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=config.mlp_layer_norm_eps)
        self.up_proj = nn.Linear(width, int(width * config.mlp_ratio))
        self.act = nn.GELU()
        self.down_proj = nn.Linear(int(width * config.mlp_ratio), width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down_proj(self.act(self.up_proj(self.norm(x))))


class FourMVQVAEBottleneckMLP(nn.Module):
    """Pointwise residual MLP ("Scaling MLPs"): (B, C_in, h, w) -> (B, C_out, h, w), applied per grid position."""

    def __init__(self, config: FourMVQConfig, in_features: int, width: int, num_layers: int, out_features: int):
        super().__init__()
        self.linear_in = nn.Linear(in_features, width)
        self.layers = nn.ModuleList(FourMVQVAEBottleneckLayer(config, width) for _ in range(num_layers))
        self.linear_out = nn.Linear(width, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        x = self.linear_in(x.flatten(2).transpose(1, 2))  # (B, L, width)
        for layer in self.layers:
            x = layer(x)
        return self.linear_out(x).transpose(1, 2).reshape(batch, -1, height, width)


# ----------------------------------------------------------------------------------------------------------------
# Quantizers


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if _is_distributed():
        dist.all_reduce(tensor)
    return tensor


def _all_gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """The (N_r, d) rows of every process concatenated in rank order (row counts may differ between ranks): the
    global batch, as one process holding all of it would see it."""
    if not _is_distributed():
        return tensor
    counts = [torch.zeros((), dtype=torch.long, device=tensor.device) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, torch.tensor(tensor.shape[0], device=tensor.device))
    largest = int(max(counts))
    padded = tensor.new_zeros(largest, *tensor.shape[1:])
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(gathered, padded)
    return torch.cat([rows[: int(n)] for rows, n in zip(gathered, counts)])


class FourMVQVAECosineQuantizer(nn.Module):
    """Cosine-similarity codebook (ViT-VQGAN / lucidrains `CosineSimCodebook`).

    Lookup: argmax of the cosine similarity between the l2-normalised latent and the l2-normalised codes, returning
    the *stored* code row (stored rows are only close to unit norm). Training (`update_codebook=True`): straight-
    through estimator, commitment loss, EMA of the usage counts and of the normalised mean latent per code, and
    restart of codes whose EMA usage falls below `dead_code_threshold`. Under `torch.distributed` the EMA statistics
    are summed over processes and restarts are drawn by rank 0 from the latents of all processes, so the codebook
    stays identical on every rank and equal to one process's on the same global batch.
    """

    def __init__(self, config: FourMVQConfig):
        super().__init__()
        self.config = config
        self.register_buffer("codebook", torch.empty(config.codebook_size, config.latent_dim))  # (K, d)
        self.register_buffer("cluster_size", torch.empty(config.codebook_size))  # EMA usage count per code

    def forward(
        self, latents: torch.Tensor, update_codebook: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.LongTensor]:
        """latents (B, d, h, w) -> quantized (B, d, h, w), commitment loss (), ids (B, h, w)."""
        batch, dim, height, width = latents.shape
        x = latents.permute(0, 2, 3, 1).reshape(-1, dim)  # (B * L, d)
        if self.config.norm_latents:
            x = F.normalize(x, dim=-1)
        with torch.autocast(device_type=x.device.type, enabled=False):  # float32 whatever the model dtype
            flat, codebook = F.normalize(x.float(), dim=-1), self.codebook.float()
            similarity = flat @ F.normalize(codebook, dim=-1).t()  # (B * L, K)
            ids = similarity.argmax(dim=-1)
            quantized = F.embedding(ids, codebook)
        loss = latents.new_zeros(())
        if update_codebook:
            with torch.no_grad():
                self._update_codebook(flat, ids, x.detach().float())
            quantized = x + (quantized.to(x.dtype) - x).detach()
            if self.config.commitment_weight > 0:
                loss = F.mse_loss(quantized.detach(), x) * self.config.commitment_weight
        quantized = quantized.to(latents.dtype).view(batch, height, width, dim).permute(0, 3, 1, 2)
        return quantized, loss, ids.view(batch, height, width)

    def _update_codebook(self, flat: torch.Tensor, ids: torch.Tensor, raw: torch.Tensor) -> None:
        decay, size = self.config.ema_decay, self.config.codebook_size
        counts = _all_reduce_sum(torch.bincount(ids, minlength=size).to(flat.dtype))  # (K,)
        sums = _all_reduce_sum(flat.new_zeros(size, flat.shape[1]).index_add_(0, ids, flat))  # (K, d)
        self.cluster_size.mul_(decay).add_(counts, alpha=1 - decay)
        normalized = F.normalize(self.codebook.float(), dim=-1)
        means = F.normalize(sums / counts.clamp(min=1).unsqueeze(1), dim=-1)
        target = torch.where((counts == 0).unsqueeze(1), normalized, means)
        self.codebook.copy_(normalized.mul_(decay).add_(target, alpha=1 - decay))
        self._restart_dead_codes(raw)

    def _restart_dead_codes(self, raw: torch.Tensor) -> None:
        threshold = self.config.dead_code_threshold
        dead = self.cluster_size < threshold
        num_dead = int(dead.sum())
        if threshold == 0 or num_dead == 0:
            return
        if self.config.code_replacement_policy == "batch_random":
            samples = F.normalize(_all_gather_rows(raw), dim=-1)  # candidates from the global batch
            if samples.shape[0] >= num_dead:
                pick = torch.randperm(samples.shape[0], device=samples.device)[:num_dead]
            else:
                pick = torch.randint(0, samples.shape[0], (num_dead,), device=samples.device)
            replacement = samples[pick]
        else:  # linde_buzo_gray: split the most used codes
            most_used = self.codebook[self.cluster_size.argsort(descending=True)[:num_dead]]
            replacement = F.normalize(most_used + 1e-10 * torch.randn_like(most_used), dim=-1)
        self.codebook[dead] = replacement
        if _is_distributed():  # rank 0's draw: every rank restarts the same codes with the same rows
            dist.broadcast(self.codebook, src=0)

    def lookup(self, ids: torch.LongTensor) -> torch.Tensor:
        """ids (B, h, w) -> stored code rows (B, d, h, w)."""
        return F.embedding(ids, self.codebook).permute(0, 3, 1, 2)


class FourMVQVAEMemcodesQuantizer(nn.Module):
    """Memcodes (NWT): per head, keys and values are learned projections of the codes; a latent picks the code whose
    key has the largest dot product with it (scaled by `d^-1/2`) and returns that code's value. Training uses a
    straight-through hard Gumbel-softmax; there is no codebook loss."""

    def __init__(self, config: FourMVQConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_codebooks
        self.head_dim = config.latent_dim // config.num_codebooks
        self.scaling = self.head_dim**-0.5
        self.codes = nn.Parameter(torch.empty(self.num_heads, config.codebook_size, self.head_dim))  # (n, K, d/n)
        self.key_proj = nn.Parameter(torch.empty(self.num_heads, self.head_dim, self.head_dim))
        self.value_proj = nn.Parameter(torch.empty(self.num_heads, self.head_dim, self.head_dim))

    def values(self) -> torch.Tensor:
        return torch.bmm(self.codes, self.value_proj)  # (n, K, d/n)

    def forward(
        self, latents: torch.Tensor, update_codebook: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.LongTensor]:
        """latents (B, d, h, w) -> quantized (B, d, h, w), zero loss, ids (B, h, w) or (B, n, h, w) for n > 1 heads."""
        batch, dim, height, width = latents.shape
        query = latents.flatten(2).transpose(1, 2).reshape(batch, height * width, self.num_heads, self.head_dim)
        query = query.permute(0, 2, 1, 3) * self.scaling  # (B, n, L, d/n)
        keys, values = torch.bmm(self.codes, self.key_proj), self.values()  # (n, K, d/n)
        logits = torch.einsum("bhid,hjd->bhij", query, keys)  # (B, n, L, K)
        if update_codebook:
            weights = F.gumbel_softmax(logits, tau=self.config.memcodes_temperature, dim=-1, hard=True)
            ids = weights.argmax(dim=-1)
            out = torch.einsum("bhij,hjd->bhid", weights, values)
        else:
            ids = logits.argmax(dim=-1)  # (B, n, L)
            out = self._gather(values, ids)
        quantized = out.permute(0, 1, 3, 2).reshape(batch, dim, height, width)  # heads concatenated head-major
        return quantized, latents.new_zeros(()), self._token_layout(ids.view(batch, self.num_heads, height, width))

    def _token_layout(self, ids: torch.LongTensor) -> torch.LongTensor:
        return ids[:, 0] if self.num_heads == 1 else ids

    @staticmethod
    def _gather(values: torch.Tensor, ids: torch.LongTensor) -> torch.Tensor:
        """values (n, K, e), ids (B, n, L) -> (B, n, L, e)."""
        heads = torch.arange(values.shape[0], device=ids.device)[None, :, None]
        return values[heads, ids]

    def lookup(self, ids: torch.LongTensor) -> torch.Tensor:
        """ids (B, h, w) or (B, n, h, w) -> (B, d, h, w)."""
        if self.num_heads == 1:
            ids = ids.unsqueeze(1)
        batch, _, height, width = ids.shape
        out = self._gather(self.values(), ids.flatten(2))  # (B, n, L, d/n)
        return out.permute(0, 1, 3, 2).reshape(batch, -1, height, width)


QUANTIZERS = {"cosine": FourMVQVAECosineQuantizer, "memcodes": FourMVQVAEMemcodesQuantizer}


# ----------------------------------------------------------------------------------------------------------------
# Pretrained models


class FourMVQPreTrainedModel(FourMLoadingMixin, PreTrainedModel):
    """Shared encoder side (optional class embedding, encoder, `quant_proj`, quantizer), input checks, weight init
    and loading (`FourMLoadingMixin.from_pretrained`, which converts official apple/ml-4m tokenizer checkpoints).

    `load_vq_model(path)` (`loading.py`) returns a [`FourMVQVAE`] or a [`FourMDiVAE`], whichever the
    checkpoint holds.
    """

    config_class = FourMVQConfig
    base_model_prefix = ""
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["FourMVQVAEViTLayer", "FourMVQVAEBottleneckLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True
    _checkpoint_name = "VQ model"

    def __init__(self, config: FourMVQConfig):
        super().__init__(config)
        self.class_embedding = (
            nn.Embedding(config.num_classes, config.num_channels) if config.num_classes is not None else None
        )
        if config.encoder_type == "vit":
            self.encoder = FourMVQVAEViTEncoder(config)
        else:
            self.encoder = FourMVQVAEBottleneckMLP(
                config, config.num_channels, config.encoder_hidden_size, config.encoder_num_layers,
                config.encoder_hidden_size,
            )
        self.quant_proj = nn.Conv2d(config.encoder_hidden_size, config.latent_dim, kernel_size=1)
        self.quantize = QUANTIZERS[config.quantizer_type](config)

    # -- weights ---------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=std)
        if isinstance(module, FourMVQVAEAttention):
            # fused projection: xavier bounds of one of q / k / v, as the official init
            bound = math.sqrt(6.0 / (module.qkv.weight.shape[0] // 3 + module.qkv.weight.shape[1]))
            init.uniform_(module.qkv.weight, -bound, bound)
        elif isinstance(module, (FourMVQVAEViTEncoder, FourMVQVAEViTDecoder)):
            _, dim, height, width = module.position_embeddings.shape
            init.copy_(module.position_embeddings, sincos_position_table(height, width, dim))
        elif isinstance(module, FourMVQVAEConvNeXtBlock):
            init.constant_(module.gamma, 1e-6)
        elif isinstance(module, FourMVQVAECosineQuantizer):
            init.copy_(module.codebook, F.normalize(torch.randn_like(module.codebook), dim=-1))
            init.zeros_(module.cluster_size)
        elif isinstance(module, FourMVQVAEMemcodesQuantizer):
            init.normal_(module.codes)
            bound = 1.0 / math.sqrt(module.head_dim)
            init.uniform_(module.key_proj, -bound, bound)
            init.uniform_(module.value_proj, -bound, bound)

    @classmethod
    def _is_official_config(cls, config: dict[str, Any]) -> bool:
        return is_official_tokenizer_config(config)

    @classmethod
    def _config_from_official(cls, official_config: dict[str, Any], weights_file: str) -> FourMVQConfig:
        return config_from_official(official_config, safetensors_shapes(weights_file))

    @classmethod
    def _state_dict_from_official(
        cls, official_state: dict[str, torch.Tensor], config: FourMVQConfig
    ) -> dict[str, torch.Tensor]:
        return convert_official_vq_model_state_dict(official_state, config, meta_state_shapes(cls, config))

    # -- encoding --------------------------------------------------------------------------------------------------

    def _prepare_input(self, x: torch.Tensor, argument: str = "x") -> torch.Tensor:
        """Check the encoder input `x` (called `argument` in messages) and return it as (B, C, H, W): class ids are
        embedded; (B, C) vectors of an MLP VQ model become (B, C, 1, 1)."""
        config, name = self.config, type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: {argument} must be a torch.Tensor, got {type(x).__name__}.")
        if config.num_classes is not None:
            if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
                raise TypeError(f"{name}: {argument} must hold integer class ids, got dtype {x.dtype}.")
            if x.dim() != 3:
                raise ValueError(
                    f"{name}: {argument} must be class ids of shape (batch, height, width), got {tuple(x.shape)}."
                )
            check_not_empty(x, argument, name)
            check_range(x, f"{name}: {argument}: class ids", config.num_classes)
            ids = x.to(device=self.device, dtype=torch.long)
            x = _ClassIdEmbedding.apply(self.class_embedding.weight, ids).permute(0, 3, 1, 2)  # (B, C, H, W)
        else:
            if not x.is_floating_point():
                hint = " (convert images to floats in [-1, 1] first)" if x.dtype == torch.uint8 else ""
                raise TypeError(f"{name}: {argument} must be a floating-point tensor, got dtype {x.dtype}{hint}.")
            if x.dim() == 2 and config.encoder_type == "bottleneck_mlp":
                x = x[:, :, None, None]
            if x.dim() != 4 or x.shape[1] != config.num_channels:
                raise ValueError(
                    f"{name}: {argument} must have shape (batch, {config.num_channels}, height, width), got "
                    f"{tuple(x.shape)}."
                )
            check_not_empty(x, argument, name)
            check_finite(x, argument, name)
        if config.encoder_type == "vit" and config.patch_proj:
            height, width = x.shape[-2:]
            p = config.patch_size
            if height % p or width % p:
                raise ValueError(
                    f"{name}: {argument} height and width must be positive multiples of the patch size {p}, got "
                    f"{height}x{width} (resize or crop to e.g. {max(p, height // p * p)}x{max(p, width // p * p)})."
                )
        return x.to(device=self.device, dtype=self.dtype)

    def _encode(self, x: torch.Tensor, update_codebook: bool, argument: str = "x") -> FourMVQEncoderOutput:
        latents = self.quant_proj(self.encoder(self._prepare_input(x, argument)))  # (B, d, h, w)
        quantized, loss, tokens = self.quantize(latents, update_codebook=update_codebook)
        return FourMVQEncoderOutput(tokens=tokens, quantized_latents=quantized, latents=latents, quantization_loss=loss)

    def encode_latents(self, x: torch.Tensor) -> FourMVQEncoderOutput:
        """Encode and quantize without touching the codebook (inference). See [`FourMVQEncoderOutput`].

        Args:
            x (`torch.Tensor`): `(batch, num_channels, height, width)` floats (images, feature maps, or
                `(batch, num_channels, 1, 1)` / `(batch, num_channels)` vectors for MLP tokenizers); for class-index
                tokenizers, `(batch, height, width)` integer ids in `[0, num_classes)`.
        """
        return self._encode(x, update_codebook=False)

    def encode(self, x: torch.Tensor) -> torch.LongTensor:
        """Token ids of `x` (see `encode_latents` for the input format): `(batch, h, w)`, or
        `(batch, num_codebooks, h, w)` for multi-head Memcodes tokenizers (global features, poses: `h = w = 1`)."""
        return self.encode_latents(x).tokens

    def tokens_to_latents(self, tokens: torch.LongTensor) -> torch.Tensor:
        """Quantized latents `(batch, latent_dim, h, w)` of token ids `(batch, h, w)` (multi-head Memcodes:
        `(batch, num_codebooks, h, w)` or `(batch, num_codebooks)`)."""
        config, name = self.config, type(self).__name__
        if not isinstance(tokens, torch.Tensor) or tokens.is_floating_point() or tokens.is_complex():
            got = f"{type(tokens).__name__} {getattr(tokens, 'dtype', '')}".strip()
            raise TypeError(f"{name}.decode expects an integer tensor of token ids, got {got}.")
        if tokens.dtype == torch.bool:
            raise TypeError(f"{name}.decode: tokens must be integer token ids, got a bool tensor.")
        heads = config.num_codebooks
        if heads > 1 and tokens.dim() == 2 and tokens.shape[1] == heads:
            tokens = tokens[:, :, None, None]
        expected = "(batch, h, w)" if heads == 1 else f"(batch, {heads}, h, w) or (batch, {heads})"
        if tokens.dim() != (3 if heads == 1 else 4) or (heads > 1 and tokens.shape[1] != heads):
            side = math.isqrt(tokens.shape[-1]) if tokens.dim() == 2 else 0
            hint = (
                f" (flattened ids? reshape them to (batch, {side}, {side}))"
                if heads == 1 and side and side * side == tokens.shape[-1]
                else ""
            )
            raise ValueError(f"{name}.decode: tokens must have shape {expected}, got {tuple(tokens.shape)}{hint}.")
        check_not_empty(tokens, "tokens", f"{name}.decode")
        check_range(tokens, f"{name}.decode: token ids", config.codebook_size, " (the codebook size)")
        return self.quantize.lookup(tokens.to(device=self.device, dtype=torch.long))

    def _check_latents(self, quantized_latents: torch.Tensor, method: str = "decode_latents") -> None:
        """Raise unless `quantized_latents` (an argument of `method`) is a finite (batch, latent_dim, h, w) float
        tensor with a sample."""
        name, dim = f"{type(self).__name__}.{method}", self.config.latent_dim
        if not isinstance(quantized_latents, torch.Tensor) or not quantized_latents.is_floating_point():
            got = f"{type(quantized_latents).__name__} {getattr(quantized_latents, 'dtype', '')}".strip()
            raise TypeError(f"{name}: quantized_latents must be a floating-point tensor, got {got}.")
        if quantized_latents.dim() != 4 or quantized_latents.shape[1] != dim:
            raise ValueError(
                f"{name}: quantized_latents must have shape (batch, {dim}, h, w) (latent_dim {dim}), got "
                f"{tuple(quantized_latents.shape)}."
            )
        check_not_empty(quantized_latents, "quantized_latents", name)
        check_finite(quantized_latents, "quantized_latents", name)


class FourMVQVAE(FourMVQPreTrainedModel):
    """4M VQ-VAE tokenizer with a deterministic decoder (ViT or bottleneck MLP).

    `encode(x)` returns token ids, `decode(ids)` the reconstruction: images / feature maps `(batch, channels,
    height, width)`, class logits `(batch, num_classes, height, width)` for class-index tokenizers (semantic
    segmentation), vectors `(batch, channels, 1, 1)` for global-feature and pose tokenizers. Position tables are
    resized to the token grid, so any resolution that is a multiple of the patch size works. `forward` is the
    training step (reconstruction + commitment loss, codebook EMA and dead-code restarts in train mode).

    ```python
    >>> from fourm_hf import FourMVQVAE
    >>> tokenizer = FourMVQVAE.from_pretrained("EPFL-VILAB/4M_tokenizers_semseg_4k_224-448")
    >>> ids = tokenizer.encode(labels)  # (B, 14, 14) for (B, 224, 224) class ids
    >>> logits = tokenizer.decode(ids)  # (B, 134, 224, 224)
    ```
    """

    config_class = FourMVQVAEConfig

    def __init__(self, config: FourMVQVAEConfig):
        super().__init__(config)
        if config.decoder_type == "vit":
            self.decoder = FourMVQVAEViTDecoder(config)
        else:
            self.decoder = FourMVQVAEBottleneckMLP(
                config, config.decoder_hidden_size, config.decoder_hidden_size, config.decoder_num_layers,
                config.num_output_channels,
            )
        self.post_quant_proj = nn.Conv2d(config.latent_dim, config.decoder_hidden_size, kernel_size=1)
        self.post_init()

    def decode_latents(self, quantized_latents: torch.Tensor) -> torch.Tensor:
        """Decoder output for quantized latents `(batch, latent_dim, h, w)`."""
        self._check_latents(quantized_latents)
        return self.decoder(self.post_quant_proj(quantized_latents.to(device=self.device, dtype=self.dtype)))

    def decode(self, tokens: torch.LongTensor) -> torch.Tensor:
        """Reconstruction from token ids (shapes as returned by `encode`)."""
        return self.decode_latents(self.tokens_to_latents(tokens))

    def _check_labels(self, labels: torch.Tensor, reconstruction: torch.Tensor) -> None:
        """Raise unless `labels` fit the reconstruction loss: class ids (B, H, W) in [0, num_classes) for
        cross-entropy, else finite floats shaped like the reconstruction (in [0, 1] for binary cross-entropy)."""
        name = "FourMVQVAE.forward: labels"
        if self.config.reconstruction_loss == "cross_entropy":
            expected = (reconstruction.shape[0], *reconstruction.shape[2:])
            if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
                raise TypeError(f"{name} must be integer class ids for cross_entropy, got dtype {labels.dtype}.")
            if tuple(labels.shape) != expected:
                raise ValueError(f"{name} must have shape {expected}, got {tuple(labels.shape)}.")
            check_range(labels, f"{name}: class ids", self.config.num_classes)
            return
        if not labels.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {labels.dtype}.")
        if labels.shape != reconstruction.shape:
            raise ValueError(
                f"{name} must have the reconstruction's shape {tuple(reconstruction.shape)}, got {tuple(labels.shape)}."
            )
        check_finite(labels, "labels", "FourMVQVAE.forward")
        if self.config.reconstruction_loss == "binary_cross_entropy" and (labels.min() < 0 or labels.max() > 1):
            raise ValueError(
                f"{name} must lie in [0, 1] for binary_cross_entropy, got values in "
                f"[{labels.min().item():g}, {labels.max().item():g}]."
            )

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> FourMVQVAEOutput:
        """Encode, quantize, decode and compute the training loss.

        Args:
            pixel_values (`torch.Tensor`): input, as for `encode` (class ids for class-index tokenizers).
            labels (`torch.Tensor`, *optional*): reconstruction target; defaults to `pixel_values`.
        """
        loss_name = self.config.reconstruction_loss
        if self.config.num_classes is not None and loss_name != "cross_entropy":
            raise ValueError(
                f"FourMVQVAE.forward: a VQ model of class ids trains with reconstruction_loss='cross_entropy', this "
                f"config has {loss_name!r}; set config.reconstruction_loss = 'cross_entropy'."
            )
        encoded = self._encode(pixel_values, update_codebook=self.training, argument="pixel_values")
        reconstruction = self.decode_latents(encoded.quantized_latents)
        target = pixel_values if labels is None else labels
        if not isinstance(target, torch.Tensor):
            raise TypeError(f"FourMVQVAE.forward: labels must be a torch.Tensor, got {type(target).__name__}.")
        if target.dim() == 2 and reconstruction.dim() == 4 and self.config.encoder_type == "bottleneck_mlp":
            target = target[:, :, None, None]
        if labels is not None:
            self._check_labels(target, reconstruction)
        target = target.to(reconstruction.device)
        if target.is_floating_point():
            target = target.to(reconstruction.dtype)
        reconstruction_loss = RECONSTRUCTION_LOSS_FUNCTIONS[self.config.reconstruction_loss](reconstruction, target)
        loss = reconstruction_loss + self.config.codebook_weight * encoded.quantization_loss
        return FourMVQVAEOutput(
            loss=loss,
            reconstruction_loss=reconstruction_loss,
            quantization_loss=encoded.quantization_loss,
            reconstruction=reconstruction,
            tokens=encoded.tokens,
        )


__all__ = [
    "RECONSTRUCTION_LOSS_FUNCTIONS",
    "FourMVQEncoderOutput",
    "FourMVQPreTrainedModel",
    "FourMVQVAE",
    "FourMVQVAEOutput",
    "sincos_position_table",
]
