"""`fourm_hf.data.sequences`: the special-token description, blank targets and span masking / merging, and that the
tokenizer, the processor, the collator and generation all use them."""

import pytest
import torch
from conftest import OFFICIAL_4M
from hypothesis import given, settings
from hypothesis import strategies as st

from fourm_hf import FourMImageProcessor, FourMMaskingCollator, FourMProcessor, FourMTokenizer, get_modality
from fourm_hf.data.sequences import (
    RELEASED_SENTINEL_IDS,
    SpecialTokens,
    blank_target,
    mask_spans,
    merge_span_batch,
    merge_spans,
)

settings.register_profile("sequences", max_examples=60, deadline=None)
settings.load_profile("sequences")

S1, S2, EOS, PAD = 5, 6, 3, 0  # [S_1], [S_2], [EOS], [PAD] in the released WordPiece tokenizer
OFFICIAL_JSON = OFFICIAL_4M / "text_tokenizer_4m_wordpiece_30k.json"
CORPUS = ["a photo of a red car parked next to a tall tree.", "two dogs, playing with a ball on the beach"] * 5


@pytest.fixture(scope="module")
def small_tokenizer() -> FourMTokenizer:
    return FourMTokenizer.train_new(CORPUS, vocab_size=200, num_sentinels=10, num_value_bins=20, object_classes=())


# ----------------------------------------------------------------------------------------------------------------
# SpecialTokens


def test_default_is_the_released_layout():
    tokens = SpecialTokens()
    assert (tokens.pad_id, tokens.eos_id, tokens.sentinel(0), tokens.sentinel(1), tokens.sentinel(199)) == (
        PAD, EOS, 4, S1, 203
    )  # fmt: skip
    assert tokens.sentinel_ids == RELEASED_SENTINEL_IDS and tokens.sentinel_set == frozenset(range(4, 204))
    if not OFFICIAL_JSON.exists():
        pytest.skip(f"official text tokenizer not found at {OFFICIAL_JSON}")
    assert FourMTokenizer(tokenizer_file=str(OFFICIAL_JSON)).special_tokens == tokens


def test_from_tokenizer_reads_the_vocabulary(small_tokenizer):
    tokens = small_tokenizer.special_tokens
    vocab = small_tokenizer.get_vocab()
    assert tokens == SpecialTokens.from_tokenizer(small_tokenizer)
    assert (tokens.pad_id, tokens.eos_id) == (vocab["[PAD]"], vocab["[EOS]"])
    assert tokens.sentinel_ids == tuple(vocab[f"[S_{k}]"] for k in range(10))
    assert small_tokenizer.sentinel_ids == dict(enumerate(tokens.sentinel_ids))
    with pytest.raises(ValueError, match=r"Sentinel \[S_10\] is not in the vocabulary \(10 sentinels\)"):
        tokens.sentinel(10)


def test_from_tokenizer_rejects_other_vocabularies():
    class Plain:
        pad_token_id, eos_token_id = 0, 1

        def get_vocab(self):
            return {"[PAD]": 0, "[EOS]": 1, "hello": 2}

    with pytest.raises(ValueError, match="Plain is not a 4M text tokenizer.*found 0"):
        SpecialTokens.from_tokenizer(Plain())


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"pad_id": -1}, ValueError, "pad_id must be a token id >= 0, got -1"),
        ({"eos_id": 3.0}, TypeError, "eos_id must be an int token id, got float"),
        ({"sentinel_ids": (4, 5, True)}, TypeError, r"sentinel_ids\[2\] must be an int token id, got bool"),
        ({"sentinel_ids": "456"}, TypeError, "sentinel_ids must be a sequence of token ids, got str"),
        ({"sentinel_ids": (4, 5, 4)}, ValueError, "sentinel_ids must be distinct"),
        ({"sentinel_ids": (0, 5, 6)}, ValueError, r"must be different ids \(shared: \[0\]\)"),
        ({"pad_id": 3}, ValueError, r"pad_id \(3\), eos_id \(3\) and the sentinels must be different"),
    ],
)
def test_special_token_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        SpecialTokens(**kwargs)


def test_content_cuts_at_eos_and_drops_pad_and_sentinels():
    assert SpecialTokens().content([1010, S1, 1011, PAD, EOS, 1012]) == [1010, 1011]
    assert SpecialTokens().content([S2, 1010]) == [1010]  # no [EOS]: everything


# ----------------------------------------------------------------------------------------------------------------
# Blank targets


def test_blank_targets():
    caption = blank_target(get_modality("caption"), 2, 5)
    assert caption["tensor"].tolist() == [[S1, S1, PAD, PAD, S2]] * 2
    assert caption["input_mask"].tolist() == [[False, True, True, True, True]] * 2
    assert torch.equal(caption["target_mask"], ~caption["input_mask"])
    assert caption["decoder_attention_mask"].tolist() == [[0, 1, 1, 1, 1]] * 2
    assert blank_target(get_modality("metadata"), 1)["tensor"].shape == (1, 40)  # max_tokens by default
    custom = blank_target(get_modality("caption"), 1, 4, SpecialTokens(pad_id=1, eos_id=2, sentinel_ids=(7, 8, 9)))
    assert custom["tensor"].tolist() == [[8, 8, 1, 9]]
    depth = blank_target(get_modality("tok_depth@224"), 3)
    assert depth["tensor"].shape == (3, 196) and not depth["tensor"].any()
    assert depth["input_mask"].all() and not depth["target_mask"].any() and "decoder_attention_mask" not in depth


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("rgb@224", {}, "rgb@224 is a pixels modality and cannot be a target"),
        ("caption", {"batch_size": 0}, "caption: batch_size must be >= 1, got 0"),
        ("caption", {"length": 1}, r"caption: length must be in \[2, 257\]"),
        ("tok_depth@224", {"length": 100}, "tok_depth@224 has 196 tokens; a blank target cannot have length 100"),
    ],
)
def test_blank_target_errors(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        blank_target(get_modality(name), **{"batch_size": 1, **kwargs})


def test_processor_empty_target_is_the_blank_target(small_tokenizer):
    processor = FourMProcessor(FourMImageProcessor(image_size=32, patch_size=8), small_tokenizer)
    tokens = small_tokenizer.special_tokens
    for name, length in (("caption", 7), ("det", None), ("tok_depth@224", None)):
        built, expected = processor.empty_target(name, 2, length), blank_target(get_modality(name), 2, length, tokens)
        assert built.keys() == expected.keys() and all(torch.equal(built[k], expected[k]) for k in built)
    s1, s2 = tokens.sentinel(1), tokens.sentinel(2)
    assert processor.empty_target("caption", 1, 4)["tensor"].tolist() == [[s1, s1, tokens.pad_id, s2]]


# ----------------------------------------------------------------------------------------------------------------
# Span masking and merging


def test_mask_spans_official_example():
    inputs, targets = mask_spans(
        ["a", "dog", "on", "grass", "[EOS]"], [True, False, False, True, False], "[S_{}]".format
    )
    assert inputs == ["a", "[S_1]", "grass", "[S_2]"]
    assert targets == ["[S_1]", "dog", "on", "[S_2]", "[EOS]", "[S_3]"]


@given(st.lists(st.tuples(st.integers(200, 300), st.booleans())))
def test_spans_round_trip(tokens_and_keep):
    tokens, keep = [t for t, _ in tokens_and_keep], [k for _, k in tokens_and_keep]
    # sentinel k is the id k: ids 1..len+1 never collide with the tokens (>= 200)
    inputs, targets = mask_spans(tokens, keep, int)
    assert [t for t in inputs if t < 200] == list(range(1, len(inputs) - sum(keep) + 1))
    assert merge_spans(inputs, targets, set(range(1, len(tokens) + 2))) == tokens


def test_mask_spans_error():
    with pytest.raises(ValueError, match="3 tokens but 2 keep flags"):
        mask_spans([1, 2, 3], [True, False], str)


def test_merge_span_batch():
    tokens = SpecialTokens()
    # blank target: [S_1] visible, everything after the closing [S_2] is dropped
    tensor = torch.tensor([[S1, S1, PAD, PAD, S2], [S1, S1, PAD, PAD, S2]])
    hidden = torch.tensor([[False, True, True, True, True]] * 2)
    generated = torch.tensor([[S1, 1040, 1041, S2, 1042], [S1, 1050, S2, 1051, 1052]])
    merged, padding = merge_span_batch(tensor, hidden, generated, tokens)
    assert merged.tolist() == [[1040, 1041], [1050, PAD]]
    assert padding.tolist() == [[False, False], [False, True]]
    # two sentinels in the input, filled in order; tokens after a non-sentinel stop token are kept
    tensor = torch.tensor([[1010, S1, 1011, S2, 1012]])
    generated = torch.tensor([[S1, 1020, 1021, S2, 1022, EOS, 1023]])
    merged, _ = merge_span_batch(tensor, torch.zeros_like(tensor, dtype=torch.bool), generated, tokens)
    assert merged.tolist() == [[1010, 1020, 1021, 1011, 1022, EOS, 1023, 1012]]
    # no visible token: the official default [S_1]
    merged, _ = merge_span_batch(tensor, torch.ones_like(tensor, dtype=torch.bool), generated, tokens)
    assert merged.tolist() == [[1020, 1021]]


@given(st.lists(st.lists(st.tuples(st.integers(300, 310), st.booleans()), min_size=1, max_size=8), min_size=1,
                max_size=4))
def test_merge_span_batch_is_merge_spans_per_sample(samples):
    """The batched merge equals `merge_spans` on each sample, right-padded with [PAD]."""
    tokens = SpecialTokens()
    rows = [mask_spans([t for t, _ in s], [k for _, k in s], tokens.sentinel) for s in samples]
    width_in, width_gen = max(len(i) for i, _ in rows), max(len(t) for _, t in rows)
    input_ids = torch.tensor([i + [PAD] * (width_in - len(i)) for i, _ in rows])
    hidden = torch.tensor([[False] * len(i) + [True] * (width_in - len(i)) for i, _ in rows])
    generated = torch.tensor([t + [PAD] * (width_gen - len(t)) for _, t in rows])
    merged, padding = merge_span_batch(input_ids, hidden, generated, tokens)
    for row, sample in enumerate(samples):
        assert merged[row][~padding[row]].tolist() == [t for t, _ in sample]
        assert (merged[row][padding[row]] == PAD).all()


def test_collator_takes_the_tokenizer_special_tokens(small_tokenizer):
    collator = FourMMaskingCollator.from_tokenizer("4m7_all2all", small_tokenizer, seed=0)
    assert collator.special_tokens == small_tokenizer.special_tokens
    assert collator.pad_id == small_tokenizer.pad_token_id and len(collator.sentinel_ids) == 10
    assert FourMMaskingCollator("4m7_all2all").special_tokens == SpecialTokens()
    with pytest.raises(TypeError, match="special_tokens must be a SpecialTokens, got dict"):
        FourMMaskingCollator("4m7_all2all", special_tokens={"pad_id": 0})
