"""Bad inputs to the 4M model: `forward` (masked model and encoder) and `generate`. Every mistake raises a
`TypeError` / `ValueError` naming the culprit, from one check (`validation_fourm.check_modalities`), so forward and
generate say the same thing."""

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList

from fourm_hf import (
    FourMConfig,
    FourMEncoderModel,
    FourMForMaskedModeling,
    FourMGenerationConfig,
    FourMTargetSchedule,
)

ENCODER = ["rgb@224", "tok_depth@224", "caption", "t5_caption"]
DECODER = ["tok_depth@224", "caption"]


@pytest.fixture(scope="module")
def config():
    return FourMConfig(
        hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=4,
        encoder_modalities=ENCODER, decoder_modalities=DECODER,
    )  # fmt: skip


@pytest.fixture(scope="module")
def model(config):
    torch.manual_seed(0)
    return FourMForMaskedModeling(config).eval()


def rgb(batch: int = 1) -> dict:
    return {"rgb@224": {"tensor": torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))}}


def depth(**entry) -> dict:
    return {"tok_depth@224": {"tensor": torch.zeros(1, 196, dtype=torch.long), **entry}}


def caption(ids=(5, 1010, 3), **entry) -> dict:
    return {"caption": {"tensor": torch.tensor([list(ids)]), **entry}}


CHAIN = FourMGenerationConfig(targets=[FourMTargetSchedule("tok_depth@224", temperature=0.0)])

# (inputs, error, message): refused identically by forward and generate
BAD_MODALITIES = [
    # the dict itself
    ([rgb()], TypeError, r"modalities must be a dict .* got list \(a list of samples\?"),
    ("rgb@224", TypeError, "modalities must be a dict"),
    ({}, ValueError, "modalities is empty"),
    ({3: {"tensor": torch.zeros(1, 196, dtype=torch.long)}}, TypeError, "modality names are strings, got int 3"),
    ({"rgb@22": rgb()["rgb@224"]}, ValueError, r"Unknown modality 'rgb@22'.*Did you mean 'rgb@224'\?"),
    ({"rgb@448": rgb()["rgb@224"]}, ValueError, "no embedding for modality 'rgb@448'"),
    # one entry
    ({"rgb@224": torch.randn(1, 3, 224, 224)}, TypeError, r"modalities\['rgb@224'\] must be a dict .*\{'tensor': x\}"),
    ({"rgb@224": [1, 2]}, TypeError, r"modalities\['rgb@224'\] must be a dict with a 'tensor' entry"),
    ({"rgb@224": {"pixels": torch.randn(1, 3, 224, 224)}}, ValueError, r"unknown entries \['pixels'\]"),
    ({"rgb@224": {**rgb()["rgb@224"], "input_masks": None}}, ValueError, r"Did you mean 'input_mask'\?"),
    ({"rgb@224": {"input_mask": torch.zeros(1, 196, dtype=torch.bool)}}, ValueError, r"'tensor' entry; it has"),
    ({"rgb@224": {"tensor": np.zeros((1, 3, 224, 224), np.float32)}}, TypeError, "torch.Tensor, got ndarray"),
    # empty batches and shapes
    ({"rgb@224": {"tensor": torch.randn(0, 3, 224, 224)}}, ValueError, r"rgb@224: the tensor is an empty batch"),
    (depth(tensor=torch.zeros(0, 196, dtype=torch.long)), ValueError, "tok_depth@224: the tensor is an empty batch"),
    ({"caption": {"tensor": torch.zeros(1, 0, dtype=torch.long)}}, ValueError, "caption: the tensor has a dimension"),
    ({"rgb@224": {"tensor": torch.tensor(1.0)}}, ValueError, r"rgb@224 expects pixels of shape \(batch, \*\(3, 224"),
    ({"rgb@224": {"tensor": torch.randn(1, 224, 224, 3)}}, ValueError, "rgb@224 expects pixels of shape"),
    (depth(tensor=torch.zeros(1, 195, dtype=torch.long)), ValueError, r"\(batch, 196\) or \(batch, 14, 14\)"),
    ({"caption": {"tensor": torch.tensor([5, 1010, 3])}}, ValueError, r"caption expects token ids of shape \(batch"),
    ({"t5_caption": {"tensor": torch.randn(1, 4, 8)}}, ValueError, r"t5_caption expects features of shape"),
    (
        {**rgb(1), **caption(), "tok_depth@224": {"tensor": torch.zeros(2, 196, dtype=torch.long)}},
        ValueError,
        "same batch size",
    ),
    # dtypes and values
    ({"rgb@224": {"tensor": torch.randint(0, 256, (1, 3, 224, 224))}}, TypeError, "floating-point pixels, got"),
    (
        {"rgb@224": {"tensor": torch.full((1, 3, 224, 224), float("nan"))}},
        ValueError,
        "rgb@224: pixels holds 150528 NaN or infinite",
    ),
    ({"t5_caption": {"tensor": torch.full((1, 4, 4096), float("inf"))}}, ValueError, "t5_caption: features holds"),
    ({"t5_caption": {"tensor": torch.zeros(1, 4, 4096, dtype=torch.long)}}, TypeError, "floating-point features"),
    (depth(tensor=torch.full((1, 196), 0.5)), TypeError, r"integer token ids, got torch.float32 \(with fractional"),
    (depth(tensor=torch.full((1, 196), 2.0)), TypeError, r"whole numbers: convert with .long\(\)"),
    (depth(tensor=torch.ones(1, 196, dtype=torch.bool)), TypeError, "integer token ids, got torch.bool"),
    (depth(tensor=torch.full((1, 196), 8192)), ValueError, r"tok_depth@224 token ids must lie in \[0, 8192\)"),
    (caption((5, -1, 3)), ValueError, r"caption token ids must lie in \[0, 30000\), got values in \[-1, 5\]"),
    (caption([5] * 600), ValueError, "caption: at most 512 visible tokens per sample, got 600"),
    # masks
    (
        {"rgb@224": {**rgb()["rgb@224"], "input_mask": torch.zeros(1, 10, dtype=torch.bool)}},
        ValueError,
        r"rgb@224: input_mask must have shape \(batch, tokens\) = \(1, 196\), got \(1, 10\)",
    ),
    (depth(target_mask=torch.zeros(196, dtype=torch.bool)), ValueError, r"target_mask must have shape .* got \(196,\)"),
    (depth(input_mask=torch.zeros(1, 196)), TypeError, r"\['input_mask'\] must hold booleans .* got torch.float32"),
    (depth(input_mask=torch.full((1, 196), 2)), ValueError, r"booleans or 0 / 1, got values in \[2, 2\]"),
    (depth(input_mask=np.zeros((1, 196), bool)), TypeError, r"\['input_mask'\] must be a torch.Tensor, got ndarray"),
    (
        depth(target_mask=torch.zeros(1, 196, dtype=torch.bool), decoder_attention_mask=torch.full((1, 196), -1)),
        ValueError,
        r"decoder_attention_mask'\] must hold integers >= 0",
    ),
    (depth(decoder_attention_mask=torch.zeros(1, 196)), TypeError, r"decoder_attention_mask'\] must hold integers"),
    # a target the model cannot decode
    (
        {"rgb@224": {**rgb()["rgb@224"], "target_mask": torch.zeros(1, 196, dtype=torch.bool)}},
        ValueError,
        r"rgb@224 has target positions \(target_mask False\) but the model cannot predict it",
    ),
]


@pytest.mark.parametrize("inputs, error, message", BAD_MODALITIES)
def test_forward_and_generate_refuse_bad_modalities(model, inputs, error, message):
    with pytest.raises(error, match=message) as forward_error:
        model(inputs)
    with pytest.raises(error) as generate_error:
        model.generate(inputs, CHAIN, progress_bar=False)
    assert str(generate_error.value) == str(forward_error.value)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"num_encoder_tokens": 2.5}, TypeError, "num_encoder_tokens must be an integer, got float 2.5"),
        ({"num_encoder_tokens": 0}, ValueError, r"num_encoder_tokens must be in \[1, 392\] \(the tokens given\)"),
        ({"num_encoder_tokens": 500}, ValueError, r"num_encoder_tokens must be in \[1, 392\]"),
        ({"num_decoder_tokens": -1}, ValueError, r"num_decoder_tokens must be in \[1, 196\]"),
        ({"num_decoder_tokens": "all"}, TypeError, "num_decoder_tokens must be an integer, got str"),
        ({"loss_type": "mood"}, ValueError, r"loss_type must be one of \['mod', 'token'\].*Did you mean 'mod'\?"),
        ({"return_logits": "yes"}, TypeError, "return_logits must be True or False, got str"),
        (
            {"num_encoder_token": 4},
            TypeError,
            r"unexpected keyword argument\(s\) \['num_encoder_token'\].*Did you mean",
        ),
    ],
)
def test_forward_refuses_bad_arguments(model, kwargs, error, message):
    inputs = {**rgb(), **depth(input_mask=torch.ones(1, 196, dtype=torch.bool), target_mask=torch.zeros(1, 196).bool())}
    with pytest.raises(error, match=message):
        model(inputs, **kwargs)


def test_forward_wants_the_model_dtype_generate_casts(model):
    """The forward refuses pixels of another dtype than the model's (outside autocast); generate casts them."""
    pixels = {"rgb@224": {"tensor": torch.randn(1, 3, 224, 224, dtype=torch.float64)}}
    with pytest.raises(TypeError, match=r"rgb@224: pixels are torch.float64 but the model runs in torch.float32"):
        model(pixels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model({"rgb@224": {"tensor": torch.randn(1, 3, 224, 224).half()}}).encoder_last_hidden_state.numel()
        with pytest.raises(TypeError, match="pixels are torch.float64"):  # autocast leaves float64 alone
            model(pixels)
    assert model.generate(pixels, CHAIN, progress_bar=False, seed=0)["tok_depth@224"]["tensor"].shape == (1, 196)


def test_forward_accepts_what_trainer_passes(model):
    """`Trainer` passes `num_items_in_batch` to forwards that take `**kwargs`; it is not a typo."""
    assert model(rgb(), num_items_in_batch=3).loss is None


def test_encoder_model_errors(config):
    encoder = FourMEncoderModel(config).eval()
    with pytest.raises(ValueError, match="exactly one of `modalities` and `pixel_values`"):
        encoder()
    with pytest.raises(TypeError, match="pixel_values must be a torch.Tensor, got ndarray"):
        encoder(pixel_values=np.zeros((1, 3, 224, 224), np.float32))
    with pytest.raises(ValueError, match=r"pixel_values must have shape \(batch, channels, height, width\)"):
        encoder(pixel_values=torch.zeros(3, 224, 224))
    with pytest.raises(ValueError, match="no pixel modality at resolution 100"):
        encoder(pixel_values=torch.zeros(1, 3, 100, 100))
    with pytest.raises(ValueError, match="rgb@224: pixels holds"):
        encoder(pixel_values=torch.full((1, 3, 224, 224), float("nan")))
    with pytest.raises(ValueError, match="no embedding for modality 'tok_normal@224'"):
        encoder({"tok_normal@224": {"tensor": torch.zeros(1, 196, dtype=torch.long)}})
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['pixel_value'\]"):
        encoder(rgb(), pixel_value=torch.zeros(1))
    # an encoder ignores targets: a processor batch with a blank target is fine
    target = {"target_mask": torch.zeros(1, 196, dtype=torch.bool), "input_mask": torch.ones(1, 196, dtype=torch.bool)}
    assert encoder({**rgb(), **depth(**target)}).last_hidden_state.shape[0] == 1


@pytest.mark.parametrize(
    "inputs, chain, kwargs, error, message",
    [
        (rgb(), "rgb_to_all", {}, TypeError, r"got str 'rgb_to_all' \(for a recipe, pass e.g. FourMGenerationConfig"),
        (rgb(), 5, {}, TypeError, "generation_config must be a FourMGenerationConfig or a list"),
        (rgb(), ["tok_depth@224"], {}, TypeError, r"targets\[0\] must be a FourMTargetSchedule .* got str"),
        (
            rgb(),
            CHAIN,
            {"targets": "caption"},
            TypeError,
            r"targets must be a list of FourMTargetSchedule, got str "
            r"'caption' \(use \[FourMTargetSchedule\('caption'\)\]\)",
        ),
        (rgb(), CHAIN, {"temperature": 0.5}, ValueError, "unknown argument 'temperature'"),
        (rgb(), CHAIN, {"top_pp": 0.5}, ValueError, r"unknown argument 'top_pp'.*Did you mean 'top_p'\?"),
        (rgb(), CHAIN, {"top_p": 1.5}, ValueError, r"top_p must be in \[0, 1\], got 1.5"),
        (rgb(), CHAIN, {"targets": []}, ValueError, "no targets"),
        (rgb(), CHAIN, {"seed": 1.5}, TypeError, "seed must be an integer, got float 1.5"),
        (rgb(), CHAIN, {"seed": "1"}, TypeError, "seed must be an integer, got str"),
        (rgb(), CHAIN, {"seed": 2**70}, ValueError, r"seed must be in \[-9223372036854775808, 9223372036854775807\]"),
        (rgb(), CHAIN, {"progress_bar": "no"}, TypeError, "progress_bar must be True or False, got str"),
        (rgb(), CHAIN, {"logits_processor": 3}, TypeError, "logits_processor must be a LogitsProcessorList"),
        (
            rgb(),
            CHAIN,
            {"logits_processor": LogitsProcessorList([3])},
            TypeError,
            r"logits_processor\[0\] must be a LogitsProcessor, got int",
        ),
        (rgb(), [FourMTargetSchedule("tok_normal@224")], {}, ValueError, "The model cannot generate tok_normal@224"),
        (rgb(), CHAIN, {"conditions": ["tok_depth@224"]}, ValueError, "cannot be both conditions and targets"),
        (rgb(), CHAIN, {"conditions": ["caption"]}, ValueError, "Guidance condition 'caption' is not among the inputs"),
        (
            {**rgb(), **depth()},
            CHAIN,
            {},
            ValueError,
            "tok_depth@224 is a target of the generation config but is given as a complete input",
        ),
        (
            {**rgb(), **caption(target_mask=torch.tensor([[True, False, False]]))},
            CHAIN,
            {},
            ValueError,
            r"caption is requested as a target .* but the generation config does not generate it",
        ),
        (
            {
                **rgb(2),
                "tok_depth@224": {
                    "tensor": torch.zeros(2, 196, dtype=torch.long),
                    "target_mask": torch.tensor([[False] * 196, [False] * 10 + [True] * 186]),
                },
            },
            CHAIN,
            {},
            ValueError,
            r"every sample needs the same, non-zero number of target positions",
        ),
    ],
)
def test_generate_refuses_bad_arguments(model, inputs, chain, kwargs, error, message):
    with pytest.raises(error, match=message):
        model.generate(inputs, chain, **{"progress_bar": False, **kwargs})
