"""The decoder stack at generation time (`fourm_hf.generation.decoding`): guidance passes at their own lengths in one
decoder batch, and the preallocated KV cache, checked against the model's own decoder forward."""

import pytest
import torch

from fourm_hf import FourMConfig, FourMForMaskedModeling, FourMGenerationConfig, FourMTargetSchedule
from fourm_hf.generation.decoding import PassContexts, SelfAttentionCache, decode


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = FourMConfig(
        hidden_size=32, num_encoder_layers=2, num_decoder_layers=2, num_attention_heads=4,
        encoder_modalities=["rgb@224", "tok_depth@224", "caption"], decoder_modalities=["tok_depth@224", "caption"],
    )  # fmt: skip
    return FourMForMaskedModeling(config).eval()


def contexts_of(lengths, padded_from=None, seed=0):
    """One (context, additive mask) per pass; with `padded_from`, the slots from that index on are padding."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for length in lengths:
        context, mask = torch.randn(2, length, 32, generator=g), torch.zeros(2, 1, 1, length)
        if padded_from is not None and padded_from < length:
            mask[1, :, :, padded_from:] = torch.finfo(torch.float32).min
            context[1, padded_from:] = 0.0
        out.append((context, mask))
    return out


@torch.no_grad()
def test_passes_of_different_lengths_match_one_decoder_call_each(model):
    passes = contexts_of([9, 3], padded_from=2)
    queries = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(1))
    stacked = decode(model.decoder, queries.repeat(2, 1, 1), PassContexts(model.decoder, passes))  # (P B, L, D)
    for index, (context, mask) in enumerate(passes):
        expected = model.decoder(queries, context, None, mask)
        torch.testing.assert_close(stacked[2 * index : 2 * index + 2], expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_cached_steps_match_the_causal_decoder_forward(model):
    passes = contexts_of([7, 4])
    contexts = PassContexts(model.decoder, passes)
    assert contexts.num_context_tokens == [7, 4] and contexts.masks == [None, None]  # no padding: no mask
    x = torch.randn(4, 6, 32, generator=torch.Generator().manual_seed(2))  # (P B, L, D)
    cache = SelfAttentionCache(model.decoder, rows=4, max_length=6, dtype=torch.float32, device=torch.device("cpu"))
    assert len(cache.keys) == 2 and cache.values[1].shape == (4, 4, 6, 8)  # per layer: (rows, H, T, hd)
    steps = [decode(model.decoder, x[:, t : t + 1], contexts, None, cache) for t in range(6)]
    assert cache.length == 6
    causal = model.decoder.causal_mask(6, 6, 0, x.dtype, x.device)
    for index, (context, mask) in enumerate(passes):
        expected = model.decoder(x[2 * index : 2 * index + 2], context, causal, mask)
        torch.testing.assert_close(torch.cat(steps, 1)[2 * index : 2 * index + 2], expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="The cache holds 6 tokens; cannot add 1 to 6"):
        decode(model.decoder, x[:, :1], contexts, None, cache)


def test_guidance_encodes_each_pass_at_its_own_length(model):
    """The unconditional pass (RGB removed) is encoded without the conditional pass's RGB tokens as padding, and
    the default (one decoder batch) gives the tokens of two separate passes."""
    encoded = []
    hook = model.encoder.layers[0].register_forward_pre_hook(lambda module, args: encoded.append(args[0].shape[:2]))
    rgb = {"rgb@224": {"tensor": torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))}}
    chain = FourMGenerationConfig(
        conditions=["rgb@224"],
        targets=[
            FourMTargetSchedule("tok_depth@224", "maskgit", num_steps=4, temperature=1.0, guidance_scale=2.0),
            FourMTargetSchedule("caption", num_tokens=10, temperature=1.0, guidance_scale=2.0),
        ],
    )
    try:
        batched = model.generate(rgb, chain, seed=3, progress_bar=False)
        steps = list(encoded)
        separate = model.generate(rgb, chain, seed=3, progress_bar=False, batch_guidance=False)
    finally:
        hook.remove()
    for name in ("tok_depth@224", "caption"):
        assert torch.equal(batched[name]["tensor"], separate[name]["tensor"])
    # MaskGIT 4 cosine steps commit 29, 69, 69, 29 depth tokens; every pass also sees the blank caption's [S_1].
    # Conditional pass: 196 RGB tokens + the committed depth tokens + 1; unconditional: only the last two.
    # The caption then encodes once per pass: RGB + 196 depth tokens + its [S_1], and without RGB.
    committed = [0, 29, 98, 167]
    expected = [s for c in committed for s in ((1, 196 + c + 1), (1, c + 1))] + [(1, 393), (1, 197)]
    assert [tuple(s) for s in steps] == expected
    assert steps == encoded[len(steps) :]  # separate passes encode the same tokens
