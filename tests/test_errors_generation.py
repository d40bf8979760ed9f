"""Bad generation settings: `FourMTargetSchedule`, `FourMGenerationConfig`, the token / temperature schedules and
the recipes. Each raises a `TypeError` / `ValueError` naming the field (and the target), with the close match of a
typo'd name."""

import pytest
import torch

from fourm_hf import (
    FourMConfig,
    FourMForMaskedModeling,
    FourMGenerationConfig,
    FourMTargetSchedule,
    generate_with_super_resolution,
)
from fourm_hf.generation import recipes, schedules
from fourm_hf.generation.logits_process import FourMGuidanceLogitsProcessor, FourMTemperatureScheduleLogitsWarper

DEPTH = "tok_depth@224"


@pytest.fixture(scope="module")
def model_config():
    return FourMConfig(
        hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=4,
        encoder_modalities=["rgb@224", DEPTH, "caption"], decoder_modalities=[DEPTH, "caption"],
    )  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        # the modality
        ({"modality": 3}, TypeError, "A modality name is a string, got int 3"),
        ({"modality": "tok_dept@224"}, ValueError, r"Unknown modality 'tok_dept@224'. Did you mean 'tok_depth@224'"),
        ({"modality": "rgb@224"}, ValueError, r"rgb@224 \(pixels\) cannot be generated: it is an input-only"),
        # integers: floats, bools, strings and out-of-range values
        ({"num_steps": 2.5}, TypeError, "tok_depth@224: num_steps must be an integer, got float 2.5"),
        ({"num_steps": 2.0}, TypeError, r"num_steps must be an integer, got float 2.0 \(use // for integer division"),
        ({"num_steps": True}, TypeError, "num_steps must be an integer, got bool"),
        ({"num_steps": 0}, ValueError, "tok_depth@224: num_steps must be >= 1, got 0"),
        ({"num_steps": -3}, ValueError, "num_steps must be >= 1, got -3"),
        ({"num_steps": 197}, ValueError, "num_steps=197 is more than the 196 tokens to decode"),
        ({"num_tokens": 0}, ValueError, "tok_depth@224: num_tokens must be >= 1, got 0"),
        ({"num_tokens": 300}, ValueError, "tok_depth@224 has 196 tokens; num_tokens=300 is too many"),
        ({"num_tokens": "all"}, TypeError, "num_tokens must be an integer, got str"),
        # numbers: strings, NaN, infinity, negatives
        ({"temperature": "0.5"}, TypeError, "tok_depth@224: temperature must be a number, got str '0.5'"),
        ({"temperature": -1}, ValueError, "tok_depth@224: temperature must be >= 0, got -1"),
        ({"temperature": float("nan")}, ValueError, "temperature must be a finite number, got nan"),
        ({"temperature": float("inf")}, ValueError, "temperature must be a finite number, got inf"),
        ({"guidance_scale": "2"}, TypeError, "tok_depth@224: guidance_scale must be a number or a list of numbers"),
        ({"guidance_scale": {"rgb@224": 2}}, TypeError, "guidance_scale must be a number or a list of numbers"),
        ({"guidance_scale": float("nan")}, ValueError, "guidance_scale must be a finite number, got nan"),
        ({"guidance_scale": [1.0, float("inf")]}, ValueError, r"guidance_scale\[1\] must be a finite number"),
        ({"guidance_scale": [2.0, None]}, TypeError, r"guidance_scale\[1\] must be a number, got NoneType"),
        ({"guidance_scale": []}, ValueError, "guidance_scale list is empty"),
        # names with close matches
        (
            {"scheme": "maskgi"},
            ValueError,
            r"scheme must be one of \['autoregressive', 'maskgit', 'roar'\], got "
            r"'maskgi'. Did you mean 'maskgit'\?",
        ),
        ({"scheme": 3}, ValueError, "scheme must be one of"),
        ({"scheme": "autoregressive"}, ValueError, "tok_depth@224 is an image modality; use scheme="),
        ({"token_schedule": "cosin"}, ValueError, r"token_schedule must be one of \['cosine', 'linear'\].*'cosine'\?"),
        (
            {"temperature_schedule": "linea"},
            ValueError,
            r"Unknown temperature_schedule 'linea' for tok_depth@224.*Did you mean 'linear'\?",
        ),
        ({"temperature_schedule": 0.5}, TypeError, "tok_depth@224: temperature_schedule must be a string, got float"),
        ({"temperature_schedule": "onex:0.5"}, ValueError, "Unknown temperature_schedule 'onex:0.5'"),
        ({"temperature_schedule": "onex:a:b"}, ValueError, "min_temperature and power must be numbers"),
        ({"temperature_schedule": "onex:-1:0.5"}, ValueError, "min_temperature must be >= 0, got -1.0"),
        ({"temperature_schedule": "onex:0.5:0"}, ValueError, "power must be > 0, got 0.0"),
        ({"temperature_schedule": "onex:nan:0.5"}, ValueError, "min_temperature must be a finite number"),
        (
            {"guidance_schedule": "constnt"},
            ValueError,
            r"guidance_schedule must be one of \['constant'\].*Did you mean",
        ),
    ],
)
def test_invalid_image_target_schedules(kwargs, error, message):
    with pytest.raises(error, match=message):
        FourMTargetSchedule(**{"modality": DEPTH, **kwargs})


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"scheme": "maskgit"}, ValueError, "caption is a sequence and can only be generated with scheme="),
        ({"num_steps": 3}, ValueError, "num_steps, token_schedule and temperature_schedule apply to maskgit/roar"),
        ({"num_tokens": -5}, ValueError, r"caption: num_tokens must be in \[2, 257\] \(a blank target is \[S_1\]"),
        ({"num_tokens": 100_000}, ValueError, r"num_tokens must be in \[2, 257\] .* got 100000"),
        ({"num_tokens": 12.0}, TypeError, "caption: num_tokens must be an integer, got float 12.0"),
    ],
)
def test_invalid_sequence_target_schedules(kwargs, error, message):
    with pytest.raises(error, match=message):
        FourMTargetSchedule(**{"modality": "caption", **kwargs})


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        # targets: a list of schedules (a bare name is named whole, with the fix)
        (
            {"targets": "caption"},
            TypeError,
            r"targets must be a list of FourMTargetSchedule, got str 'caption' "
            r"\(use \[FourMTargetSchedule\('caption'\)",
        ),
        ({"targets": FourMTargetSchedule("caption")}, TypeError, "targets must be a list of FourMTargetSchedule"),
        (
            {"targets": ["caption"]},
            TypeError,
            r"targets\[0\] must be a FourMTargetSchedule .* got str 'caption' \(use "
            r"FourMTargetSchedule\('caption'\)",
        ),
        ({"targets": [FourMTargetSchedule("caption"), 5]}, TypeError, r"targets\[1\] must be a FourMTargetSchedule"),
        (
            {"targets": [{"modality": "caption", "temprature": 0.1}]},
            TypeError,
            r"targets\[0\] has unknown FourMTargetSchedule fields \['temprature'\].*Did you mean 'temperature'\?",
        ),
        ({"targets": [{"temperature": 0.1}]}, TypeError, r"targets\[0\] needs a 'modality' entry"),
        ({"targets": [{"modality": "caption", "temperature": -1.0}]}, ValueError, "caption: temperature must be >= 0"),
        ({"targets": [FourMTargetSchedule("caption")] * 2}, ValueError, r"repeated: \['caption'\]"),
        # conditions and guidance groups
        (
            {"conditions": ["caption"], "targets": [FourMTargetSchedule("caption")]},
            ValueError,
            r"\['caption'\] cannot be both conditions and targets",
        ),
        ({"conditions": ["rgb@22"]}, ValueError, r"Unknown modality 'rgb@22'. Did you mean 'rgb@224'\?"),
        ({"conditions": [3]}, TypeError, r"conditions\[0\] must be a modality name \(a string\), got int 3"),
        ({"conditions": 3}, TypeError, "conditions must be a modality name or a list of names, got int"),
        (
            {"guidance_groups": ["rgb@224"]},
            TypeError,
            r"guidance_groups\[0\] must be a list of modality names, got the "
            r"string 'rgb@224'; write \['rgb@224'\]",
        ),
        ({"guidance_groups": "rgb@224"}, TypeError, "guidance_groups must be a list of groups"),
        ({"guidance_groups": [[]]}, ValueError, "guidance_groups must not contain empty groups"),
        ({"guidance_groups": [["rgb@224"]], "conditions": ["det"]}, ValueError, "either `conditions`"),
        ({"targets": [FourMTargetSchedule(DEPTH, guidance_scale=2.0)]}, ValueError, "needs conditions to guide with"),
        # sampling
        ({"top_k": -1}, ValueError, "top_k must be >= 0, got -1"),
        ({"top_k": 1.5}, ValueError, r"top_k \(a float is a vocabulary fraction\) must be in \[0, 1\], got 1.5"),
        ({"top_k": float("nan")}, ValueError, "top_k .* must be a finite number, got nan"),
        ({"top_k": "5"}, TypeError, "top_k must be an int >= 0 or a vocabulary fraction in"),
        ({"top_p": 1.5}, ValueError, r"top_p must be in \[0, 1\], got 1.5"),
        ({"top_p": float("nan")}, ValueError, "top_p must be a finite number, got nan"),
        ({"top_p": "0.8"}, TypeError, "top_p must be a number, got str"),
        ({"grow_conditioning": "yes"}, TypeError, "grow_conditioning must be a bool"),
        ({"batch_guidance": 1}, TypeError, "batch_guidance must be a bool"),
        ({"temprature": 0.1}, ValueError, r"Unknown FourMGenerationConfig arguments: \['temprature'\]"),
        ({"num_beams": 2}, ValueError, r"\['num_beams'\] are transformers generation settings"),
        ({"pad_token_id": -1}, ValueError, "pad_id must be a token id >= 0"),
        ({"sentinel_token_ids": "abc"}, TypeError, r"sentinel_ids\[0\] must be an int token id, got str"),
    ],
)
def test_invalid_generation_configs(kwargs, error, message):
    with pytest.raises(error, match=message):
        FourMGenerationConfig(**kwargs)


def test_update_checks_what_it_sets_and_keeps_the_config_on_error():
    config = FourMGenerationConfig(targets=[FourMTargetSchedule("caption")], top_p=0.8)
    with pytest.raises(TypeError, match="targets must be a list of FourMTargetSchedule, got str 'det'"):
        config.update(targets="det", top_p=0.5)
    with pytest.raises(TypeError, match=r"conditions\[0\] must be a modality name"):
        config.update(conditions=[None])
    assert [t.modality for t in config.targets] == ["caption"] and config.top_p == 0.8 and config.conditions == []


def test_one_name_is_one_condition():
    """A single condition may be given as a string (unlike targets, which carry settings)."""
    assert FourMGenerationConfig(conditions="rgb@224").conditions == ["rgb@224"]


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: schedules.cosine_token_schedule(0, 10), ValueError, r"num_steps must be in \[1, 10\], got 0"),
        (lambda: schedules.cosine_token_schedule(2.5, 10), TypeError, "num_steps must be an integer, got float"),
        (lambda: schedules.linear_token_schedule(12, 10), ValueError, r"num_steps must be in \[1, 10\], got 12"),
        (lambda: schedules.linear_token_schedule(2, 0), ValueError, "num_tokens must be >= 1, got 0"),
        (lambda: schedules.linear_token_schedule(2, "10"), TypeError, "num_tokens must be an integer, got str"),
        (lambda: schedules.temperature_schedule("linear", -1.0, [3, 3]), ValueError, "temperature must be >= 0"),
        (lambda: schedules.temperature_schedule("linear", float("nan"), [3]), ValueError, "finite number"),
        (
            lambda: schedules.temperature_schedule("onex:0.5:0.5", 1.0, []),
            ValueError,
            "token_counts must be a non-empty",
        ),
        (
            lambda: schedules.temperature_schedule("constant", 1.0, [3, 0]),
            ValueError,
            r"token_counts\[1\] must be >= 1",
        ),
        (lambda: schedules.temperature_schedule("constant", 1.0, [2.5]), TypeError, r"token_counts\[0\] must be an"),
        (
            lambda: schedules.temperature_schedule("cosine", 1.0, [2]),
            ValueError,
            "Unknown temperature_schedule 'cosine'",
        ),
        (lambda: schedules.parse_temperature_schedule(None), TypeError, "temperature_schedule must be a string"),
    ],
)
def test_invalid_schedule_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda c: FourMGenerationConfig.rgb_to_all("model"),
            TypeError,
            "rgb_to_all: model_config must be a FourMConfig, got str",
        ),
        (
            lambda c: FourMGenerationConfig.rgb_to_all(FourMForMaskedModeling(c)),
            TypeError,
            r"got FourMForMaskedModeling \(pass model.config, not the model\)",
        ),
        (
            lambda c: FourMGenerationConfig.rgb_to_all(c, targets=["captio"]),
            ValueError,
            r"The model cannot generate 'captio'.*Did you mean 'caption'\?",
        ),
        (
            lambda c: FourMGenerationConfig.rgb_to_all(c, targets=["tok_normal@224"]),
            ValueError,
            "The model cannot generate 'tok_normal@224'",
        ),
        (lambda c: FourMGenerationConfig.rgb_to_all(c, targets=[]), ValueError, "targets is empty"),
        (lambda c: FourMGenerationConfig.rgb_to_all(c, ["rgb@224", DEPTH], [DEPTH]), ValueError, "cannot be both"),
        (lambda c: FourMGenerationConfig.rgb_to_all(c, targets=["caption", "caption"]), ValueError, "repeated"),
        (lambda c: FourMGenerationConfig.rgb_to_all(c, targets=[3]), TypeError, r"targets\[0\] must be a modality"),
        (
            lambda c: FourMGenerationConfig.rgb_to_all(c, conditions=["rgb@22"]),
            ValueError,
            r"does not take 'rgb@22' as input.*Did you mean 'rgb@224'\?",
        ),
        (lambda c: FourMGenerationConfig.rgb_to_all(c, conditions=5), TypeError, "conditions must be a modality name"),
        (lambda c: FourMGenerationConfig.demo_recipe(c, []), ValueError, "demo_recipe: conditions is empty"),
        (lambda c: FourMGenerationConfig.caption_det_to_all(c), ValueError, "no 'det' input to condition on"),
        (lambda c: FourMGenerationConfig.rgb_to_all(c, temprature=1), ValueError, "Unknown FourMGenerationConfig"),
        (lambda c: FourMGenerationConfig.super_resolution(c, 5), TypeError, "modalities must be a modality name"),
        (
            lambda c: FourMGenerationConfig.super_resolution(c, "rgb@224"),
            ValueError,
            r"Nothing to super-resolve.* among \['rgb@224'\]",
        ),
    ],
)
def test_invalid_recipes(model_config, call, error, message):
    with pytest.raises(error, match=message):
        call(model_config)


def test_recipes_take_one_name_as_a_string(model_config):
    """`targets="caption"` is the target `caption`, not the modalities 'c', 'a', ..."""
    chain = FourMGenerationConfig.rgb_to_all(model_config, conditions="rgb@224", targets="caption")
    assert [t.modality for t in chain.targets] == ["caption"] and chain.conditions == ["rgb@224"]
    assert recipes.demo_recipe(model_config, "rgb@224", DEPTH)["conditions"] == ["rgb@224"]


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: FourMGuidanceLogitsProcessor([]), ValueError, "weights must be a non-empty list of numbers"),
        (lambda: FourMGuidanceLogitsProcessor(["2"]), TypeError, r"weights\[0\] must be a number, got str"),
        (lambda: FourMGuidanceLogitsProcessor([float("nan")]), ValueError, r"weights\[0\] must be a finite number"),
        (
            lambda: FourMGuidanceLogitsProcessor([2.0])(None, torch.zeros(3, 8)),
            ValueError,
            r"scores must stack 2 passes of equal size .* got shape \(3, 8\)",
        ),
        (lambda: FourMTemperatureScheduleLogitsWarper([1.0, 0.0]), ValueError, r"temperatures\[1\] .* must be > 0"),
        (lambda: FourMTemperatureScheduleLogitsWarper(0.5), ValueError, "temperatures must be a non-empty list"),
        (
            lambda: generate_with_super_resolution("model", "sr_model", {}),
            TypeError,
            r"model must be a 4M model \(FourMForMaskedModeling\), got str",
        ),
    ],
)
def test_invalid_logits_processors_and_chains(call, error, message):
    with pytest.raises(error, match=message):
        call()
