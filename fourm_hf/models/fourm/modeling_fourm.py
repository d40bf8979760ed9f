"""The 4M encoder-decoder: modality embeddings, Transformer layers, masked-modeling forward and loss.

Notation in shape comments: B batch, N encoder tokens, M decoder tokens, D width, H heads, hd head width,
V vocabulary of one modality, L sequence length.

Masks follow the official convention at the public boundary (True = hidden / not a target / padding) and are
turned into additive attention masks once, at model entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, logging

from ...checks import check_bool, check_choice, check_int
from .configuration_fourm import FourMConfig
from .validation_fourm import check_forward_kwargs, check_modalities
from ...conversion.official_fourm import convert_official_state_dict, is_official_model_config
from ..layers import FourMMLP, eager_attention_forward, sincos_1d, sincos_2d
from ..modeling_utils import FourMLoadingMixin, meta_state_shapes
from ...generation.configuration_fourm_generation import FourMGenerationConfig
from ...generation.utils import FourMGenerationMixin
from ...modalities import IMAGE_TOKENS, PIXELS, SEQUENCE, SEQUENCE_EMBEDDING, Modalities, ModalitySpec

logger = logging.get_logger(__name__)



# ----------------------------------------------------------------------------------------------------------------
# Outputs


@dataclass
class FourMEncoderOutput(ModelOutput):
    """
    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_tokens, hidden_size)`):
            encoder output after the final norm: register tokens, then the visible tokens of each sample in
            modality order (each modality in position order), then padding.
        padding_mask (`torch.BoolTensor` of shape `(batch_size, num_tokens)`): True where a slot is padding.
        position_embeddings (`torch.FloatTensor` of shape `(batch_size, num_tokens, hidden_size)`):
            position + modality embeddings of the selected tokens (zero at padding and register slots); the decoder
            adds them to its context.
    """

    last_hidden_state: torch.Tensor | None = None
    padding_mask: torch.Tensor | None = None
    position_embeddings: torch.Tensor | None = None


@dataclass
class FourMMaskedModelingOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`): masked-modeling loss over the decoder modalities given
            (`None` when no modality has a target mask).
        modality_losses (`dict[str, torch.FloatTensor]`): mean cross-entropy per decoder modality (0 when a
            modality has no target in the batch).
        logits (`dict[str, torch.FloatTensor]`, returned with `return_logits=True`): per decoder modality, a
            `(num_targets, vocab_size)` tensor with one row per target token, sample by sample, in position order
            (sequences: the row at position i predicts the token at i + 1).
        target_ids (`dict[str, torch.LongTensor]`, returned with `return_logits=True`): the ids those rows predict.
        encoder_last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_tokens, hidden_size)`).
        encoder_padding_mask (`torch.BoolTensor` of shape `(batch_size, num_tokens)`): True at padding.
    """

    loss: torch.Tensor | None = None
    modality_losses: dict[str, torch.Tensor] | None = None
    logits: dict[str, torch.Tensor] | None = None
    target_ids: dict[str, torch.Tensor] | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_padding_mask: torch.Tensor | None = None


# ----------------------------------------------------------------------------------------------------------------
# Position embeddings


def sequence_positions(mask: torch.Tensor) -> torch.Tensor:
    """Positions 0, 1, 2, ... counted over the unmasked entries of each row (0 where masked). (B, L) -> (B, L)."""
    positions = torch.cumsum(~mask, dim=1) - 1
    return positions.masked_fill(mask, 0)


# ----------------------------------------------------------------------------------------------------------------
# Embeddings


class FourMModalityEmbedding(nn.Module):
    """Position table and modality embedding of one modality (shared by encoder and decoder embeddings)."""

    def __init__(self, info: ModalitySpec, config: FourMConfig, with_modality_embedding: bool = True):
        super().__init__()
        self.info = info
        shape = (info.num_positions, config.hidden_size)
        if info.learned_position_embedding:
            self.pos_emb = nn.Parameter(torch.zeros(shape))
        else:
            self.register_buffer("pos_emb", torch.zeros(shape), persistent=True)
        self.mod_emb = nn.Parameter(torch.zeros(config.hidden_size)) if with_modality_embedding else None

    def default_position_table(self) -> torch.Tensor:
        dim = self.pos_emb.shape[1]
        grid = self.info.grid_size
        return sincos_2d(grid, grid, dim) if self.info.is_image else sincos_1d(self.info.num_positions, dim)

    def sequence_embedding(self, mask: torch.Tensor, mod_emb: torch.Tensor, clip: int | None = None) -> torch.Tensor:
        """Position + modality embedding of a sequence whose unmasked entries count positions. (B, L) -> (B, L, D)."""
        positions = sequence_positions(mask)
        if clip is not None:
            positions = positions.masked_fill(positions >= clip, 0)
        emb = self.pos_emb[positions].masked_fill(mask[..., None], 0.0)
        return emb + mod_emb


class FourMEncoderEmbedding(FourMModalityEmbedding):
    """Turns one modality's input tensor into tokens and position + modality embeddings."""

    def __init__(self, info: ModalitySpec, config: FourMConfig):
        super().__init__(info, config)
        dim = config.hidden_size
        if info.kind == PIXELS:
            self.proj = nn.Linear(info.num_channels * info.patch_size**2, dim, bias=False)
        elif info.kind == SEQUENCE_EMBEDDING:
            self.proj = nn.Linear(info.embedding_dim, dim, bias=True)
        else:
            self.token_emb = nn.Embedding(info.vocab_size, dim, padding_idx=0 if info.kind == SEQUENCE else None)

    def forward(self, tensor: torch.Tensor, input_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns `(tokens, emb)`, both (B, T, D), T = tokens of this modality."""
        kind = self.info.kind
        if kind == PIXELS:
            batch, channels, height, width = tensor.shape
            p = self.info.patch_size
            # (B, C, h p, w p) -> (B, h w, p p C): channel fastest, as the official patch projection expects
            patches = tensor.reshape(batch, channels, height // p, p, width // p, p)
            patches = patches.permute(0, 2, 4, 3, 5, 1).reshape(batch, (height // p) * (width // p), p * p * channels)
            tokens = self.proj(patches)
        elif kind == IMAGE_TOKENS:
            tokens = self.token_emb(tensor.flatten(1))
        elif kind == SEQUENCE:
            tokens = self.token_emb(tensor)
        else:
            tokens = self.proj(tensor)
        if self.info.is_image:
            emb = (self.pos_emb + self.mod_emb).unsqueeze(0).expand_as(tokens)
        else:
            emb = self.sequence_embedding(input_mask, self.mod_emb)
        return tokens, emb


class FourMDecoderEmbedding(FourMModalityEmbedding):
    """Decoder queries of one target modality and its output head (`to_logits`).

    Image targets are queried with the mask token; sequence targets are teacher-forced with the previous token.
    """

    def __init__(self, info: ModalitySpec, config: FourMConfig, with_modality_embedding: bool):
        super().__init__(info, config, with_modality_embedding)
        if info.kind == SEQUENCE:
            self.token_emb = nn.Embedding(info.vocab_size, config.hidden_size, padding_idx=0)
        self.to_logits = nn.Linear(config.hidden_size, info.vocab_size, bias=False)

    def forward(
        self,
        tensor: torch.Tensor,
        target_mask: torch.Tensor,
        attention_spec: torch.Tensor,
        mask_token: torch.Tensor,
        mod_emb: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """Returns `(tokens, emb, valid, target_ids, attention_spec)`, each with T slots of this modality."""
        ids = tensor.flatten(1)
        if self.info.kind == SEQUENCE:
            # inputs x[:-1] predict ids[1:]; a slot is valid only if it and its successor are both targets
            emb = self.sequence_embedding(target_mask, mod_emb, clip=self.info.max_length)[:, :-1]
            tokens = self.token_emb(ids[:, :-1])
            valid = ~(target_mask[:, 1:] | target_mask[:, :-1])
            return tokens, emb, valid, ids[:, 1:], attention_spec[:, :-1]
        emb = (self.pos_emb + mod_emb).unsqueeze(0).expand(ids.shape[0], -1, -1)
        tokens = mask_token.expand_as(emb)
        return tokens, emb, ~target_mask, ids, attention_spec


# ----------------------------------------------------------------------------------------------------------------
# Transformer layers


class TokenPacking:
    """The valid slots of a padded (B, L) layout, for layers that skip padding (`config.skip_padding_slots`).

    Token-wise work (norms, projections, MLPs) then runs on the (K, D) valid rows only, and attention unpacks its
    projections into the padded layout (zeros at padding, which no valid query may see). Pre-training batches pad
    a third of the decoder slots when the Dirichlet budgets overflow short modalities.
    """

    def __init__(self, valid: torch.Tensor):
        self.batch, self.length = valid.shape
        self.rows = valid.reshape(-1).nonzero().squeeze(1)  # ascending: sample by sample, in slot order
        self.samples = torch.div(self.rows, self.length, rounding_mode="floor")

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, ...) -> (K, ...)."""
        return x.reshape(self.batch * self.length, *x.shape[2:]).index_select(0, self.rows)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(K, ...) -> (B, L, ...), zeros at padding."""
        out = x.new_zeros(self.batch * self.length, *x.shape[1:]).index_copy(0, self.rows, x)
        return out.view(self.batch, self.length, *x.shape[1:])


class FourMAttention(nn.Module):
    """Multi-head attention; self-attention with a fused `qkv` projection, cross-attention with `q` and `kv`.
    (Cached decoding at generation time reads these weights in `generation/decoding.py`.)"""

    def __init__(self, config: FourMConfig, cross: bool = False):
        super().__init__()
        dim = config.hidden_size
        self.config = config
        self.cross = cross
        self.num_heads = config.num_attention_heads
        self.head_dim = dim // self.num_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False  # masks are always explicit
        if cross:
            self.q = nn.Linear(dim, dim, bias=config.qkv_bias)
            self.kv = nn.Linear(dim, 2 * dim, bias=config.qkv_bias)
        else:
            self.qkv = nn.Linear(dim, 3 * dim, bias=config.qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=config.proj_bias)
        if config.qk_norm:
            self.q_norm = nn.LayerNorm(self.head_dim, eps=config.layer_norm_eps, bias=config.norm_bias)
            self.k_norm = nn.LayerNorm(self.head_dim, eps=config.layer_norm_eps, bias=config.norm_bias)

    def _heads(self, x: torch.Tensor, parts: int) -> torch.Tensor:
        batch, length, _ = x.shape
        # (B, L, parts * D) -> (parts, B, H, L, hd)
        return x.view(batch, length, parts, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)

    def context_key_value(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys (normalised when `qk_norm`) and values of a context: (B, N, D) -> 2 x (B, H, N, hd)."""
        key, value = self._heads(self.kv(context), 2)
        return (self.k_norm(key) if self.config.qk_norm else key), value

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        context: torch.Tensor | None = None,
        packing: TokenPacking | None = None,
    ) -> torch.Tensor:
        """(B, L, D) -> (B, L, D), or with `packing` the valid rows (K, D) -> (K, D)."""

        def padded(x: torch.Tensor) -> torch.Tensor:
            return x if packing is None else packing.unpack(x)

        if self.cross:
            query = self._heads(padded(self.q(hidden_states)), 1)[0]
            key, value = self.context_key_value(context)
        else:
            query, key, value = self._heads(padded(self.qkv(hidden_states)), 3)
            if self.config.qk_norm:
                key = self.k_norm(key)
        if self.config.qk_norm:
            query = self.q_norm(query)
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        out, _ = attention(self, query, key, value, attention_mask, scaling=self.scaling, is_causal=False)
        out = out.reshape(query.shape[0], query.shape[2], -1)  # (B, L, D)
        return self.proj(out if packing is None else packing.pack(out))


def fourm_mlp(config: FourMConfig) -> FourMMLP:
    """The MLP of a 4M layer: SwiGLU when `gated_mlp`, else plain, with the config's activation."""
    return FourMMLP(
        config.hidden_size, config.mlp_hidden_size, ACT2FN[config.hidden_act], gated=config.gated_mlp,
        bias=config.mlp_bias,
    )


class FourMDropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability `rate` in training."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor, packing: TokenPacking | None = None) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        if packing is None:
            keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.rate)
        else:  # one draw per sample, as unpacked, then one per row
            keep = x.new_empty(packing.batch, 1).bernoulli_(1.0 - self.rate)[packing.samples]
        return x * keep / (1.0 - self.rate)


def _norm(config: FourMConfig, dim: int | None = None) -> nn.LayerNorm:
    return nn.LayerNorm(dim or config.hidden_size, eps=config.layer_norm_eps, bias=config.norm_bias)


class FourMEncoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: FourMConfig, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = _norm(config)
        self.self_attn = FourMAttention(config)
        self.norm2 = _norm(config)
        self.mlp = fourm_mlp(config)
        self.drop_path = FourMDropPath(drop_path)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.drop_path(self.self_attn(self.norm1(hidden_states), attention_mask))
        return hidden_states + self.drop_path(self.mlp(self.norm2(hidden_states)))


class FourMDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: FourMConfig, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = _norm(config)
        self.self_attn = FourMAttention(config)
        self.query_norm = _norm(config)
        self.context_norm = _norm(config)
        self.cross_attn = FourMAttention(config, cross=True)
        self.norm2 = _norm(config)
        self.mlp = fourm_mlp(config)
        self.drop_path = FourMDropPath(drop_path)

    def forward(
        self,
        hidden_states: torch.Tensor,
        context: torch.Tensor,
        self_attention_mask: torch.Tensor | None,
        cross_attention_mask: torch.Tensor,
        packing: TokenPacking | None = None,
    ) -> torch.Tensor:
        """(B, M, D) queries, or with `packing` their valid rows (K, D), attending to a (B, N, D) context."""
        attended = self.self_attn(self.norm1(hidden_states), self_attention_mask, packing=packing)
        hidden_states = hidden_states + self.drop_path(attended, packing)
        context = self.context_norm(context)
        cross = self.cross_attn(self.query_norm(hidden_states), cross_attention_mask, context, packing=packing)
        hidden_states = hidden_states + self.drop_path(cross, packing)
        return hidden_states + self.drop_path(self.mlp(self.norm2(hidden_states)), packing)


def additive_mask(blocked: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean "True = blocked" mask -> additive float mask (0 or the dtype's lowest value), heads axis added."""
    return torch.zeros(blocked.shape, dtype=dtype, device=blocked.device).masked_fill(
        blocked, torch.finfo(dtype).min
    ).unsqueeze(1)


def _drop_path_rates(rate: float, depth: int) -> list[float]:
    return [rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]


def _check_budget(name: str, value: int | None, available: int) -> int:
    if value is None:
        return available
    check_int(value, name)
    if not 0 < value <= available:
        raise ValueError(f"{name} must be in [1, {available}] (the tokens given), got {value}.")
    return value


def _select(keep: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    """Gather (B, T, ...) tensors at the (B, K) indices `keep`."""
    out = []
    for t in tensors:
        index = keep.view(*keep.shape, *([1] * (t.dim() - 2))).expand(-1, -1, *t.shape[2:])
        out.append(torch.gather(t, 1, index))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Encoder and decoder stacks


class FourMEncoder(nn.Module):
    """Encoder embeddings, register tokens, Transformer layers and final norm."""

    def __init__(self, config: FourMConfig):
        super().__init__()
        self.config = config
        self.embeddings = nn.ModuleDict(
            {name: FourMEncoderEmbedding(config.modality(name), config) for name in config.encoder_modalities}
        )
        if config.num_register_tokens > 0:
            self.register_tokens = nn.Parameter(torch.zeros(config.num_register_tokens, config.hidden_size))
        rates = _drop_path_rates(config.encoder_drop_path_rate, config.num_encoder_layers)
        self.layers = nn.ModuleList([FourMEncoderLayer(config, rate) for rate in rates])
        self.norm = _norm(config)

    def select_tokens(
        self, modalities: Modalities, num_encoder_tokens: int | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embed every encoder modality, keep the first `num_encoder_tokens` visible ones per sample.

        Returns `(tokens, emb, padding)` of shapes (B, N, D), (B, N, D), (B, N), registers included.
        """
        tokens, embs, masks = [], [], []
        for name, entry in modalities.items():
            if name not in self.embeddings:
                continue
            tensor = entry["tensor"]
            mask = entry.get("input_mask")
            if mask is None:
                info = self.embeddings[name].info
                length = tensor.shape[1] if info.is_sequence else info.num_tokens
                mask = torch.zeros(tensor.shape[0], length, dtype=torch.bool, device=tensor.device)
            x, emb = self.embeddings[name](tensor, mask.bool())
            tokens.append(x)
            embs.append(emb)
            masks.append(mask.bool())
        if not tokens:
            raise ValueError(f"No encoder modality given; the encoder takes {list(self.embeddings)}.")
        tokens, embs, masks = torch.cat(tokens, 1), torch.cat(embs, 1), torch.cat(masks, 1)
        if num_encoder_tokens is None:
            num_encoder_tokens = max(int((~masks).sum(1).max()), 1)
        num_encoder_tokens = _check_budget("num_encoder_tokens", num_encoder_tokens, masks.shape[1])
        # visible tokens first, in concatenation order (a stable sort), then truncate
        keep = torch.argsort(masks.to(torch.int8), dim=1, stable=True)[:, :num_encoder_tokens]
        tokens, embs, padding = _select(keep, tokens, embs, masks)
        if self.config.num_register_tokens > 0:
            batch = tokens.shape[0]
            registers = self.register_tokens.unsqueeze(0).expand(batch, -1, -1)
            tokens = torch.cat([registers, tokens], 1)
            embs = torch.cat([torch.zeros_like(registers), embs], 1)
            padding = torch.cat([padding.new_zeros(batch, registers.shape[1]), padding], 1)
        tokens = tokens.masked_fill(padding[..., None], 0.0)
        embs = embs.masked_fill(padding[..., None], 0.0)
        return tokens, embs, padding

    def forward(self, modalities: Modalities, num_encoder_tokens: int | None = None) -> FourMEncoderOutput:
        tokens, emb, padding = self.select_tokens(modalities, num_encoder_tokens)
        hidden_states = tokens + emb
        mask = additive_mask(padding[:, None, :], hidden_states.dtype)  # (B, 1, 1, N): keys only
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask)
        return FourMEncoderOutput(
            last_hidden_state=self.norm(hidden_states), padding_mask=padding, position_embeddings=emb
        )


class FourMDecoder(nn.Module):
    """Decoder embeddings and heads, context projection, Transformer layers, final norm and mask token."""

    def __init__(self, config: FourMConfig):
        super().__init__()
        self.config = config
        shared = set(config.encoder_modalities) if config.share_modality_embeddings else set()
        self.embeddings = nn.ModuleDict(
            {
                name: FourMDecoderEmbedding(config.modality(name), config, with_modality_embedding=name not in shared)
                for name in config.decoder_modalities
            }
        )
        self.context_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=True)
        rates = _drop_path_rates(config.decoder_drop_path_rate, config.num_decoder_layers)
        self.layers = nn.ModuleList([FourMDecoderLayer(config, rate) for rate in rates])
        self.norm = _norm(config)
        self.mask_token = nn.Parameter(torch.zeros(config.hidden_size))

    def context(self, encoder_output: FourMEncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention context (B, N, D) of an encoder output and its additive mask (B, 1, 1, N).

        Padding slots are zeroed: a sample without any visible token then attends to nothing (a zero output with
        the bias-free released models), as with the official sampler's empty encoder input.
        """
        hidden, padding = encoder_output.last_hidden_state, encoder_output.padding_mask
        context = (self.context_proj(hidden) + encoder_output.position_embeddings).masked_fill(padding[..., None], 0.0)
        return context, additive_mask(padding[:, None, :], hidden.dtype)

    @staticmethod
    def causal_mask(
        num_queries: int, num_keys: int, offset: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """Additive (1, 1, Q, K) mask: query i sits at position `offset + i` and sees keys 0 ... offset + i."""
        positions = torch.arange(num_queries, device=device)[:, None] + offset
        return additive_mask((torch.arange(num_keys, device=device)[None, :] > positions)[None], dtype)

    def attention_blocked(self, spec: torch.Tensor, modality_index: torch.Tensor) -> torch.Tensor:
        """(B, M) attention spec + modality index -> (B, M, M) boolean, True = query i may not see key j.

        The spec is the official compressed form: row i may see keys j < cumsum(spec)[i], so [T, 0, 0, ...]
        is full attention among T image targets and [1, 1, 1, ...] is causal attention over a sequence.
        """
        length = spec.shape[1]
        if self.config.decoder_causal_mask:
            blocked = torch.ones(length, length, dtype=torch.bool, device=spec.device).triu(1)
            blocked = blocked.expand(spec.shape[0], -1, -1)
        else:
            limit = torch.cumsum(spec, dim=1)[:, :, None]  # (B, M, 1)
            blocked = torch.arange(length, device=spec.device)[None, None, :] >= limit
        if self.config.decoder_separation_mask:
            blocked = blocked | (modality_index[:, :, None] != modality_index[:, None, :])
        return blocked

    def select_targets(
        self,
        modalities: Modalities,
        names: list[str],
        mod_embs: dict[str, torch.Tensor],
        num_decoder_tokens: int | None,
    ) -> tuple[torch.Tensor, ...]:
        """Decoder queries of every target modality, valid ones first, truncated to `num_decoder_tokens`.

        Returns `(tokens, emb, self_blocked, target_ids, modality_index)`; `modality_index` is the position of
        the slot's modality in `names`, -1 at padding.
        """
        parts = []
        for index, name in enumerate(names):
            entry = modalities[name]
            target_mask = entry["target_mask"].bool()
            spec = entry.get("decoder_attention_mask")
            if spec is None:
                spec = default_decoder_attention_mask(self.embeddings[name].info, target_mask)
            tokens, emb, valid, ids, spec = self.embeddings[name](
                entry["tensor"], target_mask, spec.long(), self.mask_token, mod_embs[name]
            )
            parts.append((tokens, emb, valid, ids, spec, torch.full_like(ids, index)))
        tokens, emb, valid, ids, spec, modality_index = (torch.cat(p, 1) for p in zip(*parts))
        if num_decoder_tokens is None:
            num_decoder_tokens = max(int(valid.sum(1).max()), 1)
        num_decoder_tokens = _check_budget("num_decoder_tokens", num_decoder_tokens, valid.shape[1])
        keep = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)[:, :num_decoder_tokens]
        tokens, emb, valid, ids, spec, modality_index = _select(keep, tokens, emb, valid, ids, spec, modality_index)
        padding = ~valid
        # padded slots keep their modality in the separation mask (as the official model), then drop out
        blocked = self.attention_blocked(spec, modality_index)
        tokens = tokens.masked_fill(padding[..., None], 0.0)
        emb = emb.masked_fill(padding[..., None], 0.0)
        return tokens, emb, blocked, ids.masked_fill(padding, 0), modality_index.masked_fill(padding, -1)

    def forward(
        self,
        hidden_states: torch.Tensor,
        context: torch.Tensor,
        self_attention_mask: torch.Tensor | None,
        cross_attention_mask: torch.Tensor,
        packing: TokenPacking | None = None,
    ) -> torch.Tensor:
        """Decoder stack. Masks are additive; a None self-attention mask is full attention among the queries.
        With `packing`, `hidden_states` and the result are the valid rows (K, D) of the (B, M) slots."""
        for layer in self.layers:
            hidden_states = layer(hidden_states, context, self_attention_mask, cross_attention_mask, packing=packing)
        return self.norm(hidden_states)


def default_decoder_attention_mask(info: ModalitySpec, target_mask: torch.Tensor) -> torch.Tensor:
    """The training-time attention spec: images attend among all targets, sequences causally."""
    if info.is_sequence:
        return (~target_mask).long()
    spec = torch.zeros_like(target_mask, dtype=torch.long)
    first = (~target_mask).long().argmax(dim=1, keepdim=True)
    return spec.scatter(1, first, (~target_mask).sum(1, keepdim=True))


# ----------------------------------------------------------------------------------------------------------------
# Pretrained models


class FourMPreTrainedModel(FourMLoadingMixin, PreTrainedModel):
    """Shared class attributes, weight init and loading (`FourMLoadingMixin.from_pretrained`) of the 4M models.

    Tensors of the 4M body (`encoder.*`, `decoder.*`) must be in the checkpoint; task heads absent from it start
    fresh.
    """

    config_class = FourMConfig
    base_model_prefix = "encoder"
    main_input_name = "modalities"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["FourMEncoderLayer", "FourMDecoderLayer"]
    _supports_sdpa = True
    _supports_attention_backend = True
    _required_key_prefixes = ("encoder.", "decoder.")

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, FourMAttention):
            # fused projections: xavier bounds of one q / k / v block, as the official init
            for name in ("qkv", "kv"):
                if hasattr(module, name):
                    weight = getattr(module, name).weight
                    bound = math.sqrt(6.0 / (weight.shape[1] * 2))
                    init.uniform_(weight, -bound, bound)
        elif isinstance(module, FourMModalityEmbedding):
            if module.info.learned_position_embedding:
                init.normal_(module.pos_emb, std=std)
            else:
                init.copy_(module.pos_emb, module.default_position_table())
            if module.mod_emb is not None:
                init.normal_(module.mod_emb, std=std)
        elif isinstance(module, FourMEncoder) and module.config.num_register_tokens > 0:
            init.normal_(module.register_tokens, std=std)
        elif isinstance(module, FourMDecoder):
            init.normal_(module.mask_token, std=std)

    @classmethod
    def _is_official_config(cls, config: dict[str, Any]) -> bool:
        return is_official_model_config(config)

    @classmethod
    def _config_from_official(cls, official_config: dict[str, Any], weights_file: str) -> FourMConfig:
        return FourMConfig.from_official_config(official_config)

    @classmethod
    def _state_dict_from_official(
        cls, official_state: dict[str, torch.Tensor], config: FourMConfig
    ) -> dict[str, torch.Tensor]:
        # official checkpoints hold the full encoder-decoder, whichever 4M class loads them
        return convert_official_state_dict(official_state, config, meta_state_shapes(FourMForMaskedModeling, config))


class FourMEncoderModel(FourMPreTrainedModel):
    """The 4M encoder alone, as a backbone (the official `FMViT`), and the class `AutoModel` gives. Loads the encoder
    of any 4M checkpoint (masked model or task head, native or official layout) and ignores the rest.

    Call it with a modality dict (any encoder modality, official masks) or, for an RGB backbone, `pixel_values`
    of shape (B, 3, H, W) normalised with the ImageNet mean and std.
    """

    _keys_to_ignore_on_load_unexpected = [r"^(?!encoder\.)"]

    def __init__(self, config: FourMConfig):
        super().__init__(config)
        self.encoder = FourMEncoder(config)
        self.post_init()

    def pixel_modality(self, image_size: int) -> str:
        for name in self.config.encoder_modalities:
            info = self.config.modality(name)
            if info.kind == PIXELS and info.image_size == image_size:
                return name
        raise ValueError(
            f"The model has no pixel modality at resolution {image_size}; it takes {self.config.encoder_modalities}."
        )

    def forward(
        self,
        modalities: Modalities | None = None,
        num_encoder_tokens: int | None = None,
        pixel_values: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> FourMEncoderOutput:
        check_forward_kwargs(kwargs, "FourMEncoderModel.forward", ("modalities", "num_encoder_tokens", "pixel_values"))
        if (modalities is None) == (pixel_values is None):
            raise ValueError("Pass exactly one of `modalities` and `pixel_values`.")
        if pixel_values is not None:
            if not isinstance(pixel_values, torch.Tensor):
                raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}.")
            if pixel_values.dim() != 4:
                raise ValueError(
                    f"pixel_values must have shape (batch, channels, height, width), got {tuple(pixel_values.shape)}."
                )
            modalities = {self.pixel_modality(pixel_values.shape[-1]): {"tensor": pixel_values}}
        check_modalities(
            self.config, modalities, set(self.config.encoder_modalities), device=self.device, dtype=self.dtype
        )
        return self.encoder(modalities, num_encoder_tokens)


LOSS_TYPES = ("mod", "token")
FORWARD_PARAMETERS = ("modalities", "num_encoder_tokens", "num_decoder_tokens", "loss_type", "return_logits")


class FourMForMaskedModeling(FourMPreTrainedModel, FourMGenerationMixin):
    """The 4M encoder-decoder with one output head per target modality.

    Forward contract: `modalities[name]` holds `tensor` (pixels (B, C, H, W), image token ids (B, N) or (B, h, w),
    sequence ids (B, L), or features (B, L, E)) and, in the official semantics, `input_mask` (True = not an
    encoder input; absent = fully visible), `target_mask` (True = not a target; absent = the modality is not a
    target) and `decoder_attention_mask` (the compressed decoder attention spec; absent = the training default).
    Modalities are concatenated in dict order.
    """

    generation_config_class = FourMGenerationConfig

    def __init__(self, config: FourMConfig):
        super().__init__(config)
        self.encoder = FourMEncoder(config)
        self.decoder = FourMDecoder(config)
        self.post_init()

    def modality_embedding(self, name: str) -> torch.Tensor:
        """The modality embedding the decoder uses for `name` (the encoder's when they are shared)."""
        own = self.decoder.embeddings[name].mod_emb
        return own if own is not None else self.encoder.embeddings[name].mod_emb

    def forward(
        self,
        modalities: Modalities,
        num_encoder_tokens: int | None = None,
        num_decoder_tokens: int | None = None,
        loss_type: str = "mod",
        return_logits: bool = False,
        **kwargs: Any,
    ) -> FourMMaskedModelingOutput:
        """
        Args:
            modalities (`dict[str, dict[str, torch.Tensor]]`): see the class docstring.
            num_encoder_tokens (`int`, *optional*): encoder slots per sample (visible tokens are kept in
                modality order and truncated); defaults to the most visible tokens of any sample.
            num_decoder_tokens (`int`, *optional*): decoder slots per sample; defaults to the most targets.
            loss_type (`str`, *optional*, defaults to `"mod"`): `"mod"` averages the per-modality mean
                cross-entropies (the official loss); `"token"` averages over all target tokens.
            return_logits (`bool`, *optional*, defaults to `False`): also return per-modality logits.
        """
        check_forward_kwargs(kwargs, "FourMForMaskedModeling.forward", FORWARD_PARAMETERS)
        check_choice(loss_type, "loss_type", LOSS_TYPES)
        check_bool(return_logits, "return_logits")
        known = set(self.config.encoder_modalities) | set(self.config.decoder_modalities)
        check_modalities(
            self.config, modalities, known, decodable=self.config.decoder_modalities, device=self.device,
            dtype=self.dtype,
        )
        encoded = self.encoder(modalities, num_encoder_tokens)
        decoder = self.decoder.embeddings
        targets = [n for n, d in modalities.items() if n in decoder and d.get("target_mask") is not None]
        output = FourMMaskedModelingOutput(
            encoder_last_hidden_state=encoded.last_hidden_state, encoder_padding_mask=encoded.padding_mask
        )
        if not targets:
            return output

        mod_embs = {name: self.modality_embedding(name) for name in targets}
        tokens, emb, blocked, target_ids, modality_index = self.decoder.select_targets(
            modalities, targets, mod_embs, num_decoder_tokens
        )
        context, cross_mask = self.decoder.context(encoded)
        queries, self_mask = tokens + emb, additive_mask(blocked, context.dtype)
        valid = modality_index >= 0
        if self.config.skip_padding_slots and not bool(valid.all()):  # their outputs are never read
            packing = TokenPacking(valid)
            queries, target_ids, modality_index = (packing.pack(t) for t in (queries, target_ids, modality_index))
            hidden = self.decoder(queries, context, self_mask, cross_mask, packing=packing)
        else:
            hidden = self.decoder(queries, context, self_mask, cross_mask)

        losses, counts, logits, ids = {}, {}, {}, {}
        for index, name in enumerate(targets):
            selected = modality_index == index  # rows sample by sample, in slot order, packed or not
            logits[name] = self.decoder.embeddings[name].to_logits(hidden[selected])  # (K, V), row-major over (B, M)
            ids[name] = target_ids[selected]
            counts[name] = ids[name].numel()
            if counts[name]:
                losses[name] = F.cross_entropy(logits[name].float(), ids[name])
            else:
                losses[name] = logits[name].sum() * 0.0
        if loss_type == "mod":
            output.loss = sum(losses.values()) / len(losses)
        else:
            total = sum(counts.values())
            output.loss = sum(losses[n] * counts[n] for n in targets) / max(total, 1)
        output.modality_losses = losses
        if return_logits:
            output.logits, output.target_ids = logits, ids
        return output


__all__ = [
    "FourMEncoderModel",
    "FourMEncoderOutput",
    "FourMForMaskedModeling",
    "FourMMaskedModelingOutput",
    "FourMPreTrainedModel",
]
