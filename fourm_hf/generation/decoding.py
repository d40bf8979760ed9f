"""The 4M decoder stack at generation time: guidance passes without padding, and a preallocated KV cache.

A decoding step sends the same queries against P guidance passes (one per guidance group, then the unconditional
one), each encoded at its own length ([`PassContexts`]). [`decode`] runs the P passes as one batch through
everything whose shapes agree (self-attention, projections, MLPs, norms) and splits the batch only for
cross-attention, where each pass attends to its own context. No pass computes padding for another, and the weights
are read once per step for all passes.

Autoregressive targets keep their self-attention keys / values in a [`SelfAttentionCache`] allocated once per
target: a step pushes one token per row through the stack and attends to the cache's first `length` slots, so it
needs no mask and never re-allocates. Attention runs through `torch.nn.functional.scaled_dot_product_attention`
whatever the model's `attn_implementation`. Inference only (no autograd): stochastic depth is skipped and some
products are taken in place.

Notation in shape comments: P passes, B samples, L queries, N context tokens of a pass, D width, H heads,
hd head width, T cache slots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from ..models.fourm.modeling_fourm import FourMDecoder


def _split_heads(x: torch.Tensor, rows: int, parts: int, num_heads: int) -> torch.Tensor:
    """(R L, parts * D) -> (parts, R, H, L, hd)."""
    width = x.shape[-1] // (parts * num_heads)
    return x.view(rows, -1, parts, num_heads, width).permute(2, 0, 3, 1, 4)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(R, H, L, hd) -> (R L, D)."""
    return x.transpose(1, 2).reshape(-1, x.shape[1] * x.shape[3])


def _norm(x: torch.Tensor, norm: torch.nn.LayerNorm) -> torch.Tensor:
    """`norm(x)` without the module call (a step makes ~100 of them)."""
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _linear(x: torch.Tensor, linear: torch.nn.Linear) -> torch.Tensor:
    """`linear(x)` without the module call."""
    return F.linear(x, linear.weight, linear.bias)


def _add_linear(residual: torch.Tensor, x: torch.Tensor, linear: torch.nn.Linear) -> torch.Tensor:
    """`residual + linear(x)` as one matrix product with accumulation (2-D operands)."""
    out = torch.addmm(residual, x, linear.weight.t())
    return out if linear.bias is None else out.add_(linear.bias)


class PassContexts:
    """The cross-attention keys / values of every decoder layer for P passes, each at its own context length.

    Args:
        decoder (`FourMDecoder`): the decoder whose layers project the contexts.
        contexts (`list[tuple[torch.Tensor, torch.Tensor]]`): per pass, `FourMDecoder.context`'s output: the context
            (B, N_p, D) and its additive mask (B, 1, 1, N_p). A mask without padding is dropped.
    """

    def __init__(self, decoder: FourMDecoder, contexts: list[tuple[torch.Tensor, torch.Tensor]]):
        self.batch = contexts[0][0].shape[0]
        self.num_passes = len(contexts)
        self.masks = [mask if bool(mask.any()) else None for _, mask in contexts]
        self.key_values = [  # [layer][pass] -> (key, value), each (B, H, N_p, hd), contiguous for the attention calls
            [
                tuple(t.contiguous() for t in layer.cross_attn.context_key_value(layer.context_norm(context)))
                for context, _ in contexts
            ]
            for layer in decoder.layers
        ]

    @property
    def num_context_tokens(self) -> list[int]:
        """N_p of every pass."""
        return [key.shape[2] for key, _ in self.key_values[0]]


class SelfAttentionCache:
    """Preallocated self-attention keys / values of every decoder layer: one (rows, H, T, hd) tensor each.

    `length` slots are filled; `decode` writes its queries' keys / values after them and advances `length`.
    """

    def __init__(self, decoder: FourMDecoder, rows: int, max_length: int, dtype: torch.dtype, device: torch.device):
        attention = decoder.layers[0].self_attn
        shape = (rows, attention.num_heads, max_length, attention.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in decoder.layers]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in decoder.layers]
        self.max_length = max_length
        self.length = 0

    def update(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write (rows, H, L, hd) keys / values after the filled slots; returns the layer's keys / values so far."""
        end = self.length + key.shape[2]
        if end > self.max_length:
            raise ValueError(f"The cache holds {self.max_length} tokens; cannot add {key.shape[2]} to {self.length}.")
        keys, values = self.keys[layer], self.values[layer]
        keys[:, :, self.length : end] = key
        values[:, :, self.length : end] = value
        return keys[:, :, :end], values[:, :, :end]


def decode(
    decoder: FourMDecoder,
    hidden_states: torch.Tensor,
    contexts: PassContexts,
    self_attention_mask: torch.Tensor | None = None,
    cache: SelfAttentionCache | None = None,
) -> torch.Tensor:
    """The decoder stack over the queries of every pass, stacked pass-major: (P B, L, D) -> (P B, L, D), normalised.

    `self_attention_mask` (additive, broadcastable to (P B, H, L, keys)) applies among the queries (None: full
    attention); with a `cache`, the queries continue the cached sequence and attend to every cached slot and to
    themselves (pass None for one query per row).
    """
    batch, qk_norm = contexts.batch, decoder.config.qk_norm
    rows, length, width = hidden_states.shape
    hidden = hidden_states.reshape(rows * length, width)  # the residual stream, 2-D for the matrix products
    for index, layer in enumerate(decoder.layers):
        attention = layer.self_attn
        qkv = _linear(_norm(hidden, layer.norm1), attention.qkv)
        query, key, value = _split_heads(qkv, rows, 3, attention.num_heads)
        if qk_norm:
            query, key = attention.q_norm(query), attention.k_norm(key)
        if cache is not None:
            key, value = cache.update(index, key, value)
        out = F.scaled_dot_product_attention(query, key, value, self_attention_mask, scale=attention.scaling)
        hidden = _add_linear(hidden, _merge_heads(out), attention.proj)

        cross = layer.cross_attn
        query = _split_heads(_linear(_norm(hidden, layer.query_norm), cross.q), rows, 1, cross.num_heads)[0]
        if qk_norm:
            query = cross.q_norm(query)
        outs = [
            F.scaled_dot_product_attention(q, k, v, mask, scale=cross.scaling)
            for q, (k, v), mask in zip(query.split(batch), contexts.key_values[index], contexts.masks, strict=True)
        ]
        hidden = _add_linear(hidden, _merge_heads(outs[0] if len(outs) == 1 else torch.cat(outs)), cross.proj)

        mlp, x = layer.mlp, _norm(hidden, layer.norm2)
        if mlp.gate_proj is None:
            inner = mlp.act(_linear(x, mlp.up_proj))
        else:  # gated (SwiGLU), the product in place
            inner = mlp.act(_linear(x, mlp.gate_proj)).mul_(_linear(x, mlp.up_proj))
        hidden = _add_linear(hidden, inner, mlp.down_proj)
    if cache is not None:
        cache.length += length
    return _norm(hidden, decoder.norm).view(rows, length, width)


__all__ = ["PassContexts", "SelfAttentionCache", "decode"]
