"""Bad inputs to `FourMProcessor` (its call and `postprocess`) and to the text tokenizer `FourMTokenizer`: each
raises a `TypeError` / `ValueError` (`OSError` for files) naming the argument or modality, what was expected and
what was given."""

import json
import re

import numpy as np
import pytest
import torch

from fourm_hf import (
    FourMImageProcessor,
    FourMProcessor,
    FourMTokenizer,
    FourMVQVAE,
    FourMVQVAEConfig,
    SpecialTokens,
    register_modality,
)

CORPUS = ["a photo of a red car parked next to a tall tree.", "two dogs, playing with a ball on the beach"] * 5
IMAGE = np.zeros((32, 32, 3), np.uint8)


@pytest.fixture(scope="module")
def tokenizer():
    return FourMTokenizer.train_new(CORPUS, vocab_size=4284 + 60)


@pytest.fixture(scope="module")
def vq_model():
    torch.manual_seed(0)
    config = FourMVQVAEConfig(
        image_size=32, patch_size=8, num_channels=3, codebook_size=64, latent_dim=8, encoder_hidden_size=32,
        encoder_num_layers=1, encoder_num_heads=2, decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=2,
    )  # fmt: skip
    return FourMVQVAE(config).eval()


@pytest.fixture
def processor(tokenizer, vq_model):
    """A 32-pixel processor with a VQ model for `tok_rgb@32` (16 tokens, codebook of 64); the registrations are
    undone after each test."""
    register_modality("rgb@32", patch_size=8, overwrite=True)
    register_modality("tok_rgb@32", vocab_size=64, patch_size=8, overwrite=True)
    return FourMProcessor(
        FourMImageProcessor(image_size=32, patch_size=8), tokenizer, vq_models={"tok_rgb@32": vq_model}
    )


# ----------------------------------------------------------------------------------------------------------------
# Calling the processor


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        # the arguments themselves
        ({"inputs": ["a dog"]}, TypeError, r"inputs must be a dict \{modality name: raw data\}, got list"),
        ({"inputs": {3: "a dog"}}, TypeError, "inputs: modality names are strings, got int 3"),
        ({"inputs": {"captoin": "a dog"}}, ValueError, r"Unknown modality 'captoin'. Did you mean 'caption'\?"),
        ({"images": [IMAGE], "inputs": {"rgb@32": [IMAGE]}}, ValueError, "'rgb@32' is given twice: as images= and"),
        ({"text": "a dog", "inputs": {"caption": "a cat"}}, ValueError, "'caption' is given twice: as text= and"),
        ({}, ValueError, "Give at least one input modality or `batch_size`"),
        # empty batches
        ({"images": []}, ValueError, r"got an empty batch \(0 images\)"),
        ({"text": []}, ValueError, r"caption: got an empty batch \(0 samples\)"),
        ({"inputs": {"det": []}}, ValueError, r"det: got an empty batch \(0 samples\)"),
        ({"inputs": {"tok_rgb@32": torch.zeros(0, 16, dtype=torch.long)}}, ValueError, "the token ids is an empty"),
        (
            {"inputs": {"t5_caption": np.zeros((0, 4, 4096))}},
            ValueError,
            "t5_caption: the embeddings is an empty batch",
        ),
        # text: strings only (token ids go to the model)
        ({"text": 5}, TypeError, r"caption: sample 0 must be text \(a str\), got int 5 \(the processor tokenises"),
        ({"text": ["a dog", None]}, TypeError, r"caption: sample 1 must be text \(a str\), got NoneType"),
        ({"text": torch.tensor([[5, 6, 3]])}, TypeError, r"sample 0 must be text .* give token ids to the model"),
        ({"inputs": {"caption": [[5, 6, 3]]}}, TypeError, "caption: sample 0 must be text"),
        # image tokens: counts, dtypes, ranges and VQ models
        (
            {"inputs": {"tok_rgb@32": torch.zeros(1, 15, dtype=torch.long)}},
            ValueError,
            r"tok_rgb@32: expected 16 token ids per sample, as \(B, 16\) or \(B, 4, 4\) integers, got shape \(1, 15\)",
        ),
        ({"inputs": {"tok_rgb@32": [list(range(15))]}}, ValueError, "expected 16 token ids per sample"),
        ({"inputs": {"tok_rgb@32": np.zeros((2, 17), np.int64)}}, ValueError, r"got shape \(2, 17\) \(17 per sample\)"),
        (
            {"inputs": {"tok_rgb@32": torch.full((1, 16), 0.5)}},
            TypeError,
            r"tok_rgb@32: token ids must be integers, got torch.float32 of shape \(1, 16\)",
        ),
        (
            {"inputs": {"tok_rgb@32": torch.full((1, 16), 64)}},
            ValueError,
            r"tok_rgb@32 token ids must lie in \[0, 64\)",
        ),
        (
            {"inputs": {"tok_rgb@32": torch.full((1, 4, 4), -1)}},
            ValueError,
            r"must lie in \[0, 64\), got values in \[-1",
        ),
        (
            {"inputs": {"tok_semseg@224": np.zeros((1, 224, 224), np.int64)}},
            ValueError,
            r"tok_semseg@224: no VQ model; pass vq_models=\{'tok_semseg@224': model\}",
        ),
        # features
        (
            {"inputs": {"t5_caption": np.zeros((1, 4, 3))}},
            ValueError,
            r"t5_caption: expected embeddings \(B, L, 4096\)",
        ),
        ({"inputs": {"t5_caption": np.full((1, 4, 4096), np.nan)}}, ValueError, "16384 NaN or infinite"),
        ({"inputs": {"t5_caption": "a dog"}}, TypeError, "t5_caption: expected numeric embeddings"),
        # serialised sequences: the serialiser's error, with the sample
        ({"inputs": {"det": {"boxes": [5], "labels": ["dog"]}}}, TypeError, r"det sample 0: det box 0: a box is 4 "),
        (
            {"inputs": {"det": [{"boxes": [], "labels": []}, {"boxes": [(10, 20, 612, 400)], "labels": ["dog"]}]}},
            ValueError,
            r"det sample 1: .* look like pixel coordinates \(max 612\)",
        ),
        (
            {"inputs": {"det": {"boxes": [(0.1, 0.1, 0.2, 0.2)], "labels": ["dog", "cat"]}}},
            ValueError,
            "det: got 1 boxes but 2 labels",
        ),
        ({"inputs": {"metadata": {"brightnes": 3}}}, ValueError, r"unknown field 'brightnes'.*'brightness'\?"),
        ({"inputs": {"color_palette": [[(300, 0, 0)]]}}, ValueError, r"colour 0 must be 3 integers in \[0, 255\]"),
        # targets
        ({"text": "a dog", "targets": ["dett"]}, ValueError, r"Unknown modality 'dett'. Did you mean 'det'\?"),
        ({"text": "a dog", "targets": ["det", "det"]}, ValueError, r"targets lists \['det'\] more than once"),
        ({"text": "a dog", "targets": [3]}, TypeError, r"targets\[0\] must be a modality name \(a string\), got int"),
        ({"text": "a dog", "targets": 3}, TypeError, "targets must be a modality name or a list of names"),
        ({"text": "a dog", "targets": ["caption"]}, ValueError, "'caption' is both an input and a target"),
        ({"text": "a dog", "targets": ["rgb@32"]}, ValueError, "rgb@32 is a pixels modality and cannot be a target"),
        (
            {"text": "a dog", "targets": ["det"], "target_lengths": {"det": -5}},
            ValueError,
            r"target_lengths\['det'\] must be in \[2, 257\]",
        ),
        ({"text": "a dog", "targets": ["det"], "target_lengths": {"det": 100_000}}, ValueError, r"in \[2, 257\]"),
        (
            {"text": "a dog", "targets": ["det"], "target_lengths": {"det": 2.5}},
            TypeError,
            r"target_lengths\['det'\] must be an integer, got float 2.5",
        ),
        ({"text": "a dog", "targets": ["det"], "target_lengths": [5]}, TypeError, "target_lengths must be a dict"),
        (
            {"text": "a dog", "targets": ["det"], "target_lengths": {"dte": 5}},
            ValueError,
            r"target_lengths names 'dte', which is not among the targets \['det'\]. Did you mean 'det'\?",
        ),
        (
            {"text": "a dog", "targets": ["tok_rgb@32"], "target_lengths": {"tok_rgb@32": 8}},
            ValueError,
            "only sequence targets take a length",
        ),
        # batch sizes
        ({"targets": ["caption"], "batch_size": 0}, ValueError, "batch_size must be >= 1, got 0"),
        ({"targets": ["caption"], "batch_size": 2.0}, TypeError, "batch_size must be an integer, got float 2.0"),
        ({"text": ["a", "b"], "inputs": {"det": "v0=1 v1=1 v2=2 v3=2 dog"}}, ValueError, "same batch size"),
        ({"text": "a dog", "targets": ["det"], "batch_size": 3}, ValueError, "same batch size"),
    ],
)
def test_processor_call_errors(processor, kwargs, error, message):
    with pytest.raises(error, match=message):
        processor(**kwargs)


def test_processor_accepts_one_target_name_and_token_id_lists(processor):
    assert list(processor(text="a dog", targets=None)) == ["caption"]
    batch = processor(text="a dog", targets="det", inputs={"tok_rgb@32": [list(range(16))]})
    assert set(batch) == {"caption", "det", "tok_rgb@32"} and batch["tok_rgb@32"]["tensor"].tolist() == [
        list(range(16))
    ]


def test_images_need_their_pixel_modality(tokenizer):
    processor = FourMProcessor(FourMImageProcessor(image_size=96, patch_size=16), tokenizer)
    with pytest.raises(ValueError, match=r"images= fills the modality 'rgb@96', which is not registered; register"):
        processor(images=[np.zeros((96, 96, 3), np.uint8)])


def test_long_sequences_are_cut_with_a_count(processor, caplog):
    batch = processor(text=["dogs " * 300, "a dog"])
    assert batch["caption"]["tensor"].shape == (2, 256)
    assert (
        "caption: 1 of 2 samples have more than 255 tokens; samples [0] are cut to 255 tokens + [EOS], " in caplog.text
    )
    assert re.search(r"dropping \d+ tokens in all", caplog.text)


def test_vq_models_must_be_a_dict_of_models(tokenizer):
    image_processor = FourMImageProcessor(image_size=224)
    with pytest.raises(TypeError, match="vq_models must be a dict keyed by modality name, got list"):
        FourMProcessor(image_processor, tokenizer, vq_models=[object()])
    with pytest.raises(TypeError, match=r"vq_models\['tok_rgb@224'\] must have `encode` and `decode`, got str"):
        FourMProcessor(image_processor, tokenizer, vq_models={"tok_rgb@224": "model"})
    with pytest.raises(ValueError, match="only image-token modalities have one"):
        FourMProcessor(image_processor, tokenizer, vq_models={"caption": object()})


# ----------------------------------------------------------------------------------------------------------------
# postprocess


def _caption(ids=(4300, 4301, 3), **entry):
    return {"caption": {"tensor": torch.tensor([list(ids)]), **entry}}


@pytest.mark.parametrize(
    "outputs, kwargs, error, message",
    [
        ([_caption()], {}, TypeError, r"outputs must be a modality dict .* got list"),
        ({}, {}, ValueError, "outputs is empty"),
        (
            _caption(),
            {"names": ["det"]},
            ValueError,
            r"names \['det'\] are not in the outputs, which hold \['caption'\]",
        ),
        (_caption(), {"names": ["captoin"]}, ValueError, r"not in the outputs.*Did you mean 'caption'\?"),
        (_caption(), {"names": [0]}, TypeError, r"names\[0\] must be a modality name \(a string\), got int 0"),
        ({0: torch.zeros(1, 3, dtype=torch.long)}, {}, TypeError, "A modality name is a string, got int 0"),
        (
            {"caption": {"input_mask": torch.zeros(1, 3, dtype=torch.bool)}},
            {},
            ValueError,
            r"outputs\['caption'\] must be a dict with a 'tensor' entry; it has \['input_mask'\]",
        ),
        ({"caption": {"tensor": [[5, "x"]]}}, {}, TypeError, r"outputs\['caption'\]\['tensor'\] must be a tensor"),
        (
            _caption(input_mask=torch.zeros(1, 2, dtype=torch.bool)),
            {},
            ValueError,
            r"caption: input_mask must have shape \(batch, tokens\) = \(1, 3\), got \(1, 2\)",
        ),
        (
            _caption(target_mask=torch.zeros(3, dtype=torch.bool)),
            {},
            ValueError,
            r"target_mask must have shape .*\(3,\)",
        ),
        (_caption(input_mask=torch.zeros(1, 3)), {}, TypeError, r"\['input_mask'\] must hold booleans"),
        ({"caption": torch.tensor([5, 6, 3])}, {}, ValueError, r"caption expects token ids of shape \(batch, length\)"),
        ({"caption": torch.tensor([[5.5, 6.0, 3.0]])}, {}, TypeError, "caption expects integer token ids"),
        ({"caption": torch.zeros(0, 3, dtype=torch.long)}, {}, ValueError, "caption: the tensor is an empty batch"),
        (_caption((4300, 99_999)), {}, ValueError, r"caption token ids must lie in \[0, 30000\)"),
        (
            _caption((4300, 5000, 3)),
            {},
            ValueError,
            r"caption sample 0: token ids must lie in \[0, 4344\) \(the text tokenizer's vocabulary\), got \[5000\]",
        ),
        (
            {"rgb@32": torch.zeros(1, 3, 16, 16)},
            {},
            ValueError,
            r"rgb@32 expects pixels of shape \(batch, \*\(3, 32, 32",
        ),
        ({"rgb@32": torch.full((1, 3, 32, 32), float("nan"))}, {}, ValueError, "rgb@32: pixels holds 3072 NaN"),
        ({"tok_rgb@32": torch.full((1, 16), 0.5)}, {}, TypeError, "tok_rgb@32 expects integer token ids"),
        ({"tok_rgb@32": torch.zeros(1, 15, dtype=torch.long)}, {}, ValueError, r"\(batch, 16\) or \(batch, 4, 4\)"),
        ({"tok_rgb@32": torch.full((1, 16), 99)}, {}, ValueError, r"tok_rgb@32 token ids must lie in \[0, 64\)"),
        ({"tok_semseg@224": torch.zeros(1, 196, dtype=torch.long)}, {}, ValueError, "tok_semseg@224: no VQ model"),
        (
            {"t5_caption": torch.zeros(1, 4, 4096)},
            {"names": ["t5_caption"]},
            ValueError,
            r"\['t5_caption'\] are input features with no decoder",
        ),
        (
            {"tok_rgb@32": torch.zeros(1, 16, dtype=torch.long)},
            {"num_step": 3},
            TypeError,
            r"decode argument\(s\) \['num_step'\] that no VQ model accepts",
        ),
        (_caption(), {"num_steps": 3}, TypeError, r"\['num_steps'\] that no VQ model accepts \(no VQ model decodes\)"),
    ],
)
def test_postprocess_errors(processor, outputs, kwargs, error, message):
    with pytest.raises(error, match=message):
        processor.postprocess(outputs, **kwargs)


def test_postprocess_accepts_arrays_one_name_and_skips_features_with_a_warning(processor, caplog):
    outputs = {"caption": {"tensor": np.array([[4300, 3]])}, "t5_caption": torch.zeros(1, 4, 4096)}
    assert processor.postprocess(outputs, names="caption") == {"caption": [processor.decode_text([4300])]}
    assert set(processor.postprocess(outputs)) == {"caption"}
    assert "postprocess skips ['t5_caption']: input features have no decoder" in caplog.text


# ----------------------------------------------------------------------------------------------------------------
# The text tokenizer


def test_tokenizer_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer_file '/no/such/tokenizer.json' does not exist"):
        FourMTokenizer(tokenizer_file="/no/such/tokenizer.json")
    with pytest.raises(IsADirectoryError, match="is a directory; pass the JSON file in it"):
        FourMTokenizer(tokenizer_file=str(tmp_path))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken.json' is not a `tokenizers` JSON: Expecting property name"):
        FourMTokenizer(tokenizer_file=str(broken))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"vocab": {}}))
    with pytest.raises(ValueError, match=r"other.json' is not a `tokenizers` JSON \(no 'model' entry\)"):
        FourMTokenizer(tokenizer_file=str(other))
    with pytest.raises(TypeError, match="tokenizer_file must be a path, got int 3"):
        FourMTokenizer(tokenizer_file=3)
    with pytest.raises(TypeError, match="tokenizer_object must be a tokenizers.Tokenizer, got dict"):
        FourMTokenizer(tokenizer_object={})


@pytest.mark.parametrize(
    "texts, kwargs, error, message",
    [
        ([], {}, ValueError, "texts is empty: train_new needs at least one training text"),
        (iter([]), {}, ValueError, "texts is empty"),
        ("a dog", {}, TypeError, "texts must be an iterable of strings .* got str; wrap a single text in a list"),
        (5, {}, TypeError, "texts must be an iterable of strings"),
        (["a dog", 3], {}, TypeError, r"texts\[1\] must be a string, got int 3"),
        (CORPUS, {"vocab_size": 4400.0}, TypeError, "vocab_size must be an integer, got float"),
        (CORPUS, {"vocab_size": 100}, ValueError, r"vocab_size \(100\) must exceed the 4284 reserved tokens"),
        (CORPUS, {"num_sentinels": 1}, ValueError, "num_sentinels must be >= 2, got 1"),
        (CORPUS, {"num_value_bins": 0}, ValueError, "num_value_bins must be >= 1, got 0"),
        (CORPUS, {"min_frequency": -1}, ValueError, "min_frequency must be >= 0, got -1"),
        (CORPUS, {"lowercase": "yes"}, TypeError, "lowercase must be True or False"),
        (CORPUS, {"object_classes": "dog"}, TypeError, "object_classes must be a list of class names, got str"),
        (CORPUS, {"object_classes": ["dog", 3]}, TypeError, r"object_classes\[1\] must be a non-empty class name"),
    ],
)
def test_train_new_errors(texts, kwargs, error, message):
    with pytest.raises(error, match=message):
        FourMTokenizer.train_new(texts, **{"vocab_size": 4400, **kwargs})


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda t: t.sentinel_id(999), ValueError, r"Sentinel \[S_999\] is not in the vocabulary \(200 sentinels\)"),
        (lambda t: t.sentinel_id(-1), ValueError, r"Sentinel \[S_-1\] is not in the vocabulary"),
        (lambda t: t.sentinel_id(1.0), TypeError, "sentinel index must be an integer, got float 1.0"),
        (lambda t: t.sentinel_id("1"), TypeError, "sentinel index must be an integer, got str"),
        (lambda t: t.decode([4300, 99_999]), ValueError, r"token ids must lie in \[0, 4344\) .* got \[99999\]"),
        (lambda t: t.decode([-1]), ValueError, r"got \[-1\]"),
        (lambda t: t.decode([1.5]), TypeError, r"token_ids\[0\] must be an int token id, got float 1.5"),
        (lambda t: t.decode("abc"), TypeError, "token_ids must be a sequence of int token ids, got str"),
        (lambda t: t.batch_decode([[4300], [50_000]]), ValueError, r"got \[50000\]"),
        (lambda t: SpecialTokens.from_tokenizer("tokenizer"), TypeError, r"must be a text tokenizer \(with get_vocab"),
    ],
)
def test_tokenizer_errors(tokenizer, call, error, message):
    with pytest.raises(error, match=message):
        call(tokenizer)
