"""Bad inputs to the masking collator and its mixtures (`fourm_hf.data.masking`): each raises a `TypeError` /
`ValueError` (`FileNotFoundError` for a missing file) naming the sample, modality, entry or file, and long sequences
are not cut silently."""

import json

import numpy as np
import pytest
import torch

from fourm_hf import FourMConfig
from fourm_hf.data.masking import (
    FourMMaskingCollator,
    MaskingMixture,
    ModalityAlphas,
    SeededMaskingDataset,
    load_mixture,
)

MIXTURE = {
    "rgb@224": {"input_alphas": [1.0], "target_alphas": [0.0]},
    "tok_depth@224": {"input_alphas": [1.0], "target_alphas": [1.0]},
    "caption": {"input_alphas": [1.0], "target_alphas": [1.0], "keep": ["random"]},
}
SAMPLE = {
    "rgb@224": np.zeros((3, 224, 224), np.float32),
    "tok_depth@224": np.zeros(196, np.int64),
    "caption": np.array([1010, 1011, 3]),
}


@pytest.fixture(scope="module")
def collator():
    return FourMMaskingCollator(MaskingMixture.from_dict(MIXTURE, input_tokens=64, target_tokens=64), seed=0)


def entry(**values):
    return {**MIXTURE["caption"], **values}


@pytest.mark.parametrize(
    "samples, error, message",
    [
        # the batch
        (SAMPLE, TypeError, r"expected a list of samples, got a dict \(one sample\? wrap it in a list"),
        (5, TypeError, r"expected a list of samples \(dicts\), got int"),
        ("abc", TypeError, "expected a list of samples"),
        ([], ValueError, "Cannot collate an empty list of samples"),
        ([SAMPLE, 5], TypeError, r"sample 1: a sample must be a dict \{modality name: data\}, got int"),
        (
            [SAMPLE, {k: v for k, v in SAMPLE.items() if k != "caption"}],
            ValueError,
            r"sample 1: missing \['caption'\], which the mixture 'custom' needs",
        ),
        # raw text where ids are expected
        (
            [{**SAMPLE, "caption": "a dog"}],
            TypeError,
            r"sample 0: caption is raw text \('a dog'\); the collator takes pre-tokenised ids .*pretokenize.* "
            r"tokenizer\(text\).input_ids",
        ),
        ([{**SAMPLE, "caption": ["a dog", "a cat"]}], TypeError, "caption is raw text"),
        ([{**SAMPLE, "caption": np.array(["a dog"])}], TypeError, "caption is raw text"),
        # token ids
        (
            [{**SAMPLE, "caption": np.array([10, 99_999, 3])}],
            ValueError,
            r"sample 0: caption token ids must lie in \[0, 30000\), got values in \[3, 99999\]",
        ),
        ([{**SAMPLE, "caption": np.array([10, -4, 3])}], ValueError, r"must lie in \[0, 30000\).*\[-4, 10\]"),
        ([{**SAMPLE, "caption": np.array([1.5, 2.0])}], TypeError, "caption expects integer token ids, got float64"),
        ([{**SAMPLE, "caption": np.array([10.0, 3.0])}], TypeError, r"whole numbers: cast with .astype\(np.int64\)"),
        ([{**SAMPLE, "caption": {"chunks": 5}}], TypeError, "caption: 'chunks' must be a list of token id lists"),
        ([{**SAMPLE, "caption": {"chunks": [[10, 99_999]]}}], ValueError, "caption token ids must lie in"),
        ([{**SAMPLE, "caption": {"ids": [10]}}], ValueError, r"a chunked sequence is \{'chunks'"),
        ([{**SAMPLE, "caption": np.zeros((2, 3), np.int64)}], ValueError, "holds one sequence per crop but the sample"),
        (
            [{**SAMPLE, "tok_depth@224": np.full(196, 8192)}],
            ValueError,
            r"tok_depth@224 token ids must lie in \[0, 8192",
        ),
        ([{**SAMPLE, "tok_depth@224": np.full(196, 0.5)}], TypeError, "tok_depth@224 expects integer token ids"),
        ([{**SAMPLE, "tok_depth@224": np.zeros(195, np.int64)}], ValueError, "expected 196 image tokens"),
        # pixels
        (
            [{**SAMPLE, "rgb@224": np.full((3, 224, 224), np.nan, np.float32)}],
            ValueError,
            "sample 0: rgb@224: pixels holds 150528 NaN or infinite",
        ),
        ([{**SAMPLE, "rgb@224": np.zeros((3, 100, 100), np.float32)}], ValueError, r"expected float pixels of shape"),
        ([{**SAMPLE, "rgb@224": None}], ValueError, "rgb@224: expected float pixels"),
    ],
)
def test_collator_refuses_bad_samples(collator, samples, error, message):
    with pytest.raises(error, match=message):
        collator(samples)


def test_mask_sample_takes_a_generator(collator):
    with pytest.raises(TypeError, match=r"rng must be a numpy.random.Generator \(np.random.default_rng\(seed\)\)"):
        collator.mask_sample(SAMPLE, rng=5)


def test_collator_reads_tensors_and_reports_cut_sequences(caplog):
    collator = FourMMaskingCollator(MaskingMixture.from_dict(MIXTURE, input_tokens=64, target_tokens=64), seed=0)
    batch = collator([{**SAMPLE, "caption": torch.tensor([1010, 1011, 3])}])
    assert batch["modalities"]["caption"]["tensor"].shape == (1, 2 * 257)
    collator([{**SAMPLE, "caption": np.arange(1000, 1400)}])
    assert "caption: a sample has 400 tokens, more than max_tokens=256; its last 144 are dropped" in caplog.text
    chunked = FourMMaskingCollator(MaskingMixture.from_dict({**MIXTURE, "metadata": entry()}), seed=0)
    chunks = [[1010, 1011]] * 30  # 60 tokens: 20 chunks fit in the 40 of metadata
    chunked([{**SAMPLE, "metadata": {"chunks": chunks}}])
    assert "metadata: a sample has 60 tokens, more than max_tokens=40; its last 20 are dropped" in caplog.text


@pytest.mark.parametrize(
    "call, error, message",
    [
        # alphas and keep schemes
        (
            lambda: MaskingMixture.from_dict({**MIXTURE, "caption": entry(input_alphas=[-1.0])}),
            ValueError,
            r"Mixture 'custom', entry 'caption': input_alphas\[0\] must be >= 0, got -1.0",
        ),
        (
            lambda: MaskingMixture.from_dict({**MIXTURE, "caption": entry(input_alphas=[float("nan")])}),
            ValueError,
            r"input_alphas\[0\] must be a finite number",
        ),
        (
            lambda: MaskingMixture.from_dict({**MIXTURE, "caption": entry(target_alphas=["a"])}),
            TypeError,
            r"entry 'caption': target_alphas\[0\] must be a number, got str",
        ),
        (
            lambda: MaskingMixture.from_dict({**MIXTURE, "caption": entry(input_alphas=1.0)}),
            TypeError,
            "input_alphas must be a list with one value per mixture component, got float",
        ),
        (
            lambda: MaskingMixture.from_dict({**MIXTURE, "caption": entry(input_alphas=[1.0, 1.0])}),
            ValueError,
            "every entry needs one value per component",
        ),
        (
            lambda: MaskingMixture.from_dict({**MIXTURE, "caption": entry(keep=["randm"])}),
            ValueError,
            r"keep\[0\] must be one of \['all', 'binary', 'random'\], got 'randm'. Did you mean 'random'\?",
        ),
        (
            lambda: MaskingMixture.from_dict({**MIXTURE, "caption": entry(keep="random")}),
            TypeError,
            "keep must be a list with one value per mixture component, got str",
        ),
        (
            lambda: MaskingMixture.from_dict({**MIXTURE, "caption": {"input_alpha": [1.0], "target_alphas": [1.0]}}),
            ValueError,
            r"entry 'caption' has unknown keys \['input_alpha'\]. Did you mean 'input_alphas'\?",
        ),
        (
            lambda: MaskingMixture.from_dict({**MIXTURE, "caption": {"input_alphas": [1.0]}}),
            ValueError,
            r"it lacks \['target_alphas'\]",
        ),
        (lambda: MaskingMixture.from_dict({**MIXTURE, "caption": [1.0]}), ValueError, "must be a mapping"),
        (lambda: MaskingMixture.from_dict([MIXTURE]), TypeError, "A mixture config is a dict of modality entries"),
        (
            lambda: MaskingMixture.from_dict({"alphas_mixture": MIXTURE, "sampling_weights": [float("nan")]}),
            ValueError,
            r"sampling_weights\[0\] must be a finite number",
        ),
        (
            lambda: MaskingMixture.from_dict({"alphas_mixture": MIXTURE, "sampling_weights": [0.0]}),
            ValueError,
            "sampling_weights must be >= 0 with a positive sum",
        ),
        (
            lambda: MaskingMixture.from_dict({"alphas_mixture": MIXTURE, "sampling_weights": 1.0}),
            TypeError,
            "sampling_weights must be a list",
        ),
        (lambda: ModalityAlphas(input_alphas=(1.0,), target_alphas=(-2,)), ValueError, r"target_alphas\[0\] must be"),
        # token budgets
        (lambda: MaskingMixture.from_dict(MIXTURE, input_tokens=0), ValueError, "at least one encoder token"),
        (lambda: MaskingMixture.from_dict(MIXTURE, target_tokens=0), ValueError, "at least one decoder token"),
        (lambda: MaskingMixture.from_dict(MIXTURE, input_tokens=-5), ValueError, "input_tokens .* must be >= 0"),
        (lambda: MaskingMixture.from_dict(MIXTURE, input_tokens=2.5), TypeError, "must be an integer, got float"),
        (lambda: MaskingMixture.from_dict(MIXTURE, input_tokens="64"), TypeError, "must be an integer, got str"),
        (lambda: MaskingMixture.from_dict(MIXTURE, target_tokens=[10, 5]), ValueError, "min <= max, got \\[10, 5\\]"),
        (lambda: MaskingMixture.from_dict(MIXTURE, target_tokens=[1, 5, 6]), ValueError, r"got 3 values \[1, 5, 6\]"),
        (lambda: MaskingMixture.from_dict(MIXTURE, target_tokens=[1.0, 5]), TypeError, r"target_tokens\[0\] must be"),
        # options, presets, files
        (
            lambda: MaskingMixture.from_dict(MIXTURE, input_token=5),
            TypeError,
            r"Unknown mixture option\(s\) \['input_token'\].*Did you mean 'input_tokens'\?",
        ),
        (lambda: load_mixture("4m7_rgb2all", input_token=5), TypeError, "Unknown mixture option"),
        (lambda: load_mixture("4m7_rgb2al"), ValueError, r"No mixture preset or file '4m7_rgb2al'.*'4m7_rgb2all'\?"),
        (lambda: load_mixture("/no/such/mixture.json"), FileNotFoundError, "'/no/such/mixture.json': the file does"),
        (lambda: load_mixture(5), TypeError, "mixture must be a MaskingMixture, a preset name or a file path, got int"),
        (lambda: MaskingMixture.from_file("/no/such/mixture.json"), FileNotFoundError, "/no/such/mixture.json"),
        (lambda: MaskingMixture.from_file("mixture.txt"), ValueError, "must end in .json, .yaml or .yml"),
        (lambda: load_mixture("4m7_rgb2all").subset(["captoin"]), ValueError, r"has no \['captoin'\].*'caption'\?"),
        (lambda: load_mixture("4m7_rgb2all").subset([3]), TypeError, r"modalities\[0\] must be a modality name"),
        # the collator's own arguments
        (lambda: FourMMaskingCollator(MIXTURE), TypeError, r"got dict \(build one from a dict with MaskingMixture"),
        (
            lambda: FourMMaskingCollator(MaskingMixture.from_dict({**MIXTURE, "captoin": entry()})),
            ValueError,
            r"Mixture 'custom': Unknown modality 'captoin'. Did you mean 'caption'\?",
        ),
        (
            lambda: FourMMaskingCollator(
                MaskingMixture.from_dict(MIXTURE),
                FourMConfig(
                    hidden_size=32,
                    num_encoder_layers=1,
                    num_decoder_layers=1,
                    num_attention_heads=4,
                    encoder_modalities=["rgb@224"],
                    decoder_modalities=["tok_depth@224"],
                ),
            ),
            ValueError,
            r"Mixture 'custom': The model has no embedding for modality 'caption'",
        ),
        (lambda: FourMMaskingCollator("4m7_rgb2all", config="model"), TypeError, "config must be a FourMConfig"),
        (lambda: FourMMaskingCollator("4m7_rgb2all", seed=1.5), TypeError, "seed must be an integer, got float"),
        (lambda: FourMMaskingCollator("4m7_rgb2all", seed=-1), ValueError, "seed must be >= 0, got -1"),
        (lambda: FourMMaskingCollator("4m7_rgb2all", random_crop="no"), TypeError, "random_crop must be True or False"),
        (lambda: FourMMaskingCollator("4m7_rgb2all", special_tokens=5), TypeError, "special_tokens must be a Special"),
        (lambda: FourMMaskingCollator.from_tokenizer("4m7_rgb2all", "tok"), TypeError, "must be a text tokenizer"),
    ],
)
def test_mixture_and_collator_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_mixture_files_name_their_parse_errors(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken.json: not valid JSON: Expecting property name"):
        load_mixture(broken)
    listed = tmp_path / "listed.json"
    listed.write_text(json.dumps([MIXTURE]))
    with pytest.raises(ValueError, match="listed.json: a mixture file holds a mapping, got list"):
        load_mixture(listed)
    yaml = pytest.importorskip("yaml")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("caption: [1, 2\n")
    with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
        load_mixture(bad_yaml)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({**MIXTURE, "caption": entry(input_alphas=[-1.0])}))
    with pytest.raises(ValueError, match=r"Mixture 'good', entry 'caption': input_alphas\[0\] must be >= 0"):
        load_mixture(good)


def test_seeded_dataset_arguments():
    with pytest.raises(TypeError, match=r"dataset must be a map-style dataset .* got int"):
        SeededMaskingDataset(5)
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        SeededMaskingDataset([SAMPLE], seed=-1)
    with pytest.raises(TypeError, match="epoch must be an integer, got float 1.5"):
        SeededMaskingDataset([SAMPLE]).set_epoch(1.5)
