"""Building blocks shared by the 4M models and the VQ models: the eager attention function, the fixed sin-cos position
tables and the two-layer (optionally gated) MLP.

Notation in shape comments: B batch, H heads, L sequence length, hd head width.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain matmul-softmax attention, the `"eager"` entry of transformers' attention interface. q, k, v:
    (B, H, L, hd); additive mask broadcastable to (B, H, Lq, Lk). Returns (B, Lq, H, hd) and the weights."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = scores.softmax(dim=-1)
    if dropout > 0.0:
        weights = F.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2), weights


def sincos_1d(num_positions: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(num_positions, dim) table: [sin(p w), cos(p w)] with w_k = temperature^(-k / (dim/2))."""
    omega = 1.0 / temperature ** (torch.arange(dim // 2, dtype=torch.float32) / (dim // 2))
    angles = torch.arange(num_positions, dtype=torch.float32)[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_2d(height: int, width: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(height * width, dim) table of a row-major grid: [sin(r w), cos(r w), sin(c w), cos(c w)] for row r, column c
    and w_k = temperature^(-k / (dim/4))."""
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    r = rows.flatten().float()[:, None] * omega[None]
    c = cols.flatten().float()[:, None] * omega[None]
    return torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], dim=1)


class FourMMLP(nn.Module):
    """Gated (`down(act(gate(x)) * up(x))`, SwiGLU with SiLU) or plain (`down(act(up(x)))`) two-layer MLP."""

    def __init__(
        self, hidden_size: int, intermediate_size: int, activation: nn.Module, gated: bool = False, bias: bool = True
    ):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=bias) if gated else None
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=bias)
        self.act = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_proj is not None:
            return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(self.act(self.up_proj(x)))


__all__ = ["FourMMLP", "eager_attention_forward", "sincos_1d", "sincos_2d"]
