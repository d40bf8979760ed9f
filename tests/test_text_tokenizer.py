"""FourMTokenizer: the released WordPiece JSON (ids, fixture consistency) and training a new one with its layout."""

import re

import pytest
from conftest import OFFICIAL_4M, PARITY_CASES, official_case

from fourm_hf.models.fourm.tokenization_fourm import COCO_CLASSES, FourMTokenizer

OFFICIAL_JSON = OFFICIAL_4M / "text_tokenizer_4m_wordpiece_30k.json"
TEXT_MODALITIES = ("caption", "det", "metadata", "color_palette")
CORPUS = [
    "a photo of a red car parked next to a tall tree",
    "two dogs playing with a ball on the beach at sunset",
    "a person riding a bicycle down a busy street",
    "a plate of food with broccoli and a sandwich on a dining table",
] * 5


@pytest.fixture(scope="module")
def official_tokenizer():
    if not OFFICIAL_JSON.exists():
        pytest.skip(f"official text tokenizer not found at {OFFICIAL_JSON}")
    return FourMTokenizer(tokenizer_file=str(OFFICIAL_JSON))


@pytest.fixture(scope="module")
def trained_tokenizer():
    return FourMTokenizer.train_new(CORPUS, vocab_size=4284 + 80)


def test_official_reserved_ids(official_tokenizer):
    tok = official_tokenizer
    assert len(tok) == 30_000
    assert (tok.pad_token_id, tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2, 3)
    ids = tok.convert_tokens_to_ids(["[S_0]", "[S_1]", "[S_199]", "v0=0", "v0=999", "v1=0", "v3=999"])
    assert ids == [4, 5, 203, 204, 1203, 1204, 4203]
    assert tok.convert_tokens_to_ids(["airplane", "dining table", "person", "zebra"]) == [4204, 4231, 4253, 4283]
    assert tok.sentinel_id(1) == 5 and len(tok.sentinel_ids) == 200 and tok.num_value_bins == 1000


def test_official_encoding_without_added_special_tokens(official_tokenizer):
    ids = official_tokenizer("v0=12 v1=40 v2=500 v3=700 Dining Table").input_ids
    assert ids == [216, 1244, 2704, 3904, 4231]
    text = "v0=12 v1=40 v2=500 v3=700 car a dog [S_1] on grass [EOS]"
    assert official_tokenizer.decode(official_tokenizer(text).input_ids) == text


def _pattern(tensor, input_mask, target_mask, sentinel_ids, first_sentinel):
    """Regex over space-separated ids that the original sequence must match, given the official masking of it:
    visible ids verbatim, each sentinel replaced by its target span, spans missing from a budget-truncated target as
    one-or-more unknown ids."""
    visible = tensor[~input_mask].tolist() or [first_sentinel]
    target = tensor[~target_mask].tolist()
    spans, closed, current = {}, set(), None
    for token in target:
        if token in sentinel_ids:
            if current is not None:
                closed.add(current)
            current = token
            spans.setdefault(token, [])
        elif current is not None:
            spans[current].append(token)
    pattern, exact = "", True
    for token in visible:
        if token not in sentinel_ids:
            pattern += f" {token}"
            continue
        known = spans.get(token, [])
        pattern += "".join(f" {t}" for t in known)
        if token not in closed:
            pattern += r"( \d+)*" if known else r"( \d+)+"
            exact = False
    return pattern, exact


@pytest.mark.parametrize("case_name", PARITY_CASES)
def test_fixture_ids_match_our_encoding(official_tokenizer, case_name):
    case = official_case(case_name)
    tensors, raw = case["tensors"], case["info"]["raw_samples"]
    sentinels = set(official_tokenizer.sentinel_ids.values())
    checked = exact = 0
    for modality in TEXT_MODALITIES:
        if f"input.{modality}.tensor" not in tensors:
            continue
        for b, sample in enumerate(raw):
            ours = official_tokenizer(sample[modality]).input_ids + [official_tokenizer.eos_token_id]
            pattern, is_exact = _pattern(
                tensors[f"input.{modality}.tensor"][b],
                tensors[f"input.{modality}.input_mask"][b],
                tensors[f"input.{modality}.target_mask"][b],
                sentinels,
                official_tokenizer.sentinel_id(1),
            )
            assert re.fullmatch(pattern, "".join(f" {t}" for t in ours)), (modality, b, pattern, ours)
            checked += 1
            exact += is_exact
    assert checked >= 4 and exact >= 1


def test_merge_sentinel_spans(official_tokenizer):
    tok = official_tokenizer
    a, dog, on, grass = tok("a dog on grass").input_ids
    s1, s2, s3, eos = tok.sentinel_id(1), tok.sentinel_id(2), tok.sentinel_id(3), tok.eos_token_id
    merged = tok.merge_sentinel_spans([a, s1, grass, s2], [s1, dog, on, s2, eos, s3])
    assert merged == [a, dog, on, grass, eos]


def test_train_new_reproduces_the_released_layout(trained_tokenizer):
    tok = trained_tokenizer
    assert (tok.pad_token_id, tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2, 3)
    assert tok.convert_tokens_to_ids(["[S_1]", "[S_199]", "v0=0", "v1=0", "v3=999"]) == [5, 203, 204, 1204, 4203]
    assert tok.convert_tokens_to_ids(["airplane", "dining table", "zebra"]) == [4204, 4231, 4283]
    assert len(tok) <= 4284 + 80
    ids = tok("v0=1 v1=2 v2=3 v3=4 dining table beach").input_ids
    assert ids[:5] == [205, 1206, 2207, 3208, 4231]
    assert all(i >= 4284 for i in ids[5:]) and tok.unk_token_id not in ids
    if OFFICIAL_JSON.exists():
        official = FourMTokenizer(tokenizer_file=str(OFFICIAL_JSON)).convert_ids_to_tokens(list(range(4284)))
        assert tok.convert_ids_to_tokens(list(range(4284))) == official


def test_train_new_custom_layout():
    tok = FourMTokenizer.train_new(CORPUS, vocab_size=200, num_sentinels=10, num_value_bins=20, object_classes=("cat",))
    assert tok.convert_tokens_to_ids(["[S_9]", "v0=0", "v3=19", "cat"]) == [13, 14, 93, 94]
    assert tok.num_value_bins == 20 and len(tok.sentinel_ids) == 10
    assert tok.convert_tokens_to_ids("v0=20") == tok.unk_token_id


def test_save_and_reload(trained_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    trained_tokenizer.save_pretrained(tmp_path)
    text = "a dog [S_2] on a dining table v2=7 [EOS]"
    for cls in (FourMTokenizer, AutoTokenizer):
        reloaded = cls.from_pretrained(tmp_path)
        assert isinstance(reloaded, FourMTokenizer)
        assert reloaded(text).input_ids == trained_tokenizer(text).input_ids
        assert reloaded.eos_token_id == 3 and reloaded.sentinel_id(2) == 6


def test_errors():
    with pytest.raises(ValueError, match="tokenizer_file"):
        FourMTokenizer()
    with pytest.raises(ValueError, match="reserved tokens"):
        FourMTokenizer.train_new(CORPUS, vocab_size=100)
    tok = FourMTokenizer.train_new(CORPUS, vocab_size=120, num_sentinels=2, num_value_bins=2, object_classes=())
    with pytest.raises(ValueError, match=r"\[S_5\] is not in the vocabulary"):
        tok.sentinel_id(5)
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    plain = Tokenizer(WordLevel({"[PAD]": 0, "[UNK]": 1, "[EOS]": 2}, unk_token="[UNK]"))
    with pytest.raises(ValueError, match="Not a 4M text tokenizer"):
        FourMTokenizer(tokenizer_object=plain)


def test_coco_classes_are_the_80_sorted_names():
    assert len(COCO_CLASSES) == 80 and list(COCO_CLASSES) == sorted(COCO_CLASSES)
