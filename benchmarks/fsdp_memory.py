"""Memory per GPU of 4M-7 B / L / XL pre-training under FSDP: computed from the parameter counts, not measured.

    python benchmarks/fsdp_memory.py [--gpus 16]

The models are built on the meta device (no memory, exact parameter counts). Per GPU, with P parameters, N GPUs,
per-GPU batch b (the recipe's: B 128, L 64, XL 64), n = 128 input + 128 target tokens, D the width, L_e / L_d the
encoder / decoder depths:

    weights (fp32, sharded)          4 P / N
    gradients (fp32, sharded)        4 P / N
    AdamW exp_avg + exp_avg_sq       8 P / N
    gathered bf16 weights            2 P      (reshard_after_forward false, 4M's SHARD_GRAD_OP; about one layer when true)
    activations, no checkpointing    b n D (34 L_e + 51 L_d) bytes  (bf16; per layer and token 34 D bytes for
                                     attention + MLP with fused SDPA, a decoder layer 1.5x for its cross-attention)
    activations, checkpointing       b n D (2 (L_e + L_d) + 51) bytes  (each layer's bf16 input, plus one decoder
                                     layer recomputed during backward)
    logits                           b 128 V 6 bytes  (bf16 logits + fp32 log-softmax over the largest vocabulary,
                                     V = 30000 for captions)

The activation factor 34 is Korthikanti et al. (2022)'s per-token, per-layer count for a Transformer block with a
4D MLP and flash attention (no s^2 term); 4M's gated MLP (8/3 D wide, two input projections) stores about as much.
"""

from __future__ import annotations

import argparse

import torch

from fourm_hf import FourMConfig, FourMForMaskedModeling
from fourm_hf.cli import HelpFormatter

SIZES = {  # width, depth (encoder = decoder), heads, per-GPU batch of the 4M-7 recipe
    "4M-7 B": (768, 12, 12, 128),
    "4M-7 L": (1024, 24, 16, 64),
    "4M-7 XL": (2048, 24, 32, 64),
}
TOKENS, TARGETS, VOCAB = 256, 128, 30000
GIB = 2**30


def parameter_counts(width: int, depth: int, heads: int) -> tuple[int, int]:
    """All parameters and those outside the embeddings and output heads (the paper's 198M / 705M / 2.8B)."""
    config = FourMConfig(hidden_size=width, num_encoder_layers=depth, num_decoder_layers=depth, num_attention_heads=heads)
    with torch.device("meta"):
        model = FourMForMaskedModeling(config)
    total = sum(p.numel() for p in model.parameters())
    blocks = sum(p.numel() for n, p in model.named_parameters() if ".layers." in n)
    return total, blocks


def memory_rows(gpus: int) -> list[list[str]]:
    rows = []
    for name, (width, depth, heads, batch) in SIZES.items():
        params, blocks = parameter_counts(width, depth, heads)
        sharded = 16 * params / gpus  # fp32 weights + gradients + two AdamW moments
        gathered = 2 * params
        activations = batch * TOKENS * width * (34 * depth + 51 * depth)
        checkpointed = batch * TOKENS * width * (2 * 2 * depth + 51)
        logits = batch * TARGETS * VOCAB * 6
        full = sharded + gathered + activations + logits
        with_checkpointing = sharded + gathered + checkpointed + logits
        rows.append([
            name, f"{params / 1e6:,.0f}M", f"{blocks / 1e6:,.0f}M", str(batch), f"{sharded / GIB:.1f}", f"{gathered / GIB:.1f}",
            f"{activations / GIB:.1f}", f"{checkpointed / GIB:.1f}", f"{logits / GIB:.1f}",
            f"{full / GIB:.0f}", f"{with_checkpointing / GIB:.0f}",
        ])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--gpus", type=int, default=16, help="number of GPUs sharing the model")
    args = parser.parse_args(argv)
    header = [
        "model", "parameters", "in Transformer layers", "batch / GPU", "weights + grads + AdamW (GiB)", "gathered bf16 weights",
        "activations", "activations, checkpointed", "logits", "total", "total, checkpointed",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in memory_rows(args.gpus):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
