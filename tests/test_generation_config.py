"""`FourMGenerationConfig` as a transformers `GenerationConfig` (save / load / dict / JSON / copy / validate / update),
the modality specs it carries into a fresh process, its special tokens, and the recipes built from a model's own
modalities and resolutions."""

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GenerationConfig, LogitsProcessor
from transformers.generation.configuration_utils import GenerationMode
from transformers.testing_utils import CaptureLogger

from fourm_hf import (
    FourMConfig,
    FourMForMaskedModeling,
    FourMGenerationConfig,
    FourMTargetSchedule,
    ModalityFamily,
    SpecialTokens,
    register_modality,
)
from fourm_hf.generation import recipes

ROOT = Path(__file__).resolve().parents[1]


def chain(**kwargs) -> FourMGenerationConfig:
    targets = [
        FourMTargetSchedule("tok_depth@224", "roar", num_steps=4, temperature_schedule="onex:0.5:0.5"),
        FourMTargetSchedule("caption", temperature=0.3, guidance_scale=1.5),
    ]
    return FourMGenerationConfig(
        **{"conditions": ["rgb@224"], "targets": targets, "grow_conditioning": True, "top_p": 0.8, **kwargs}
    )


# ----------------------------------------------------------------------------------------------------------------
# GenerationConfig behaviour


def test_save_and_load_round_trip(tmp_path):
    config = chain(top_k=20, use_cache=False, batch_guidance=False)
    config.save_pretrained(tmp_path)
    loaded = FourMGenerationConfig.from_pretrained(tmp_path)
    assert loaded == config and loaded.to_dict() == config.to_dict()
    assert isinstance(loaded.targets[0], FourMTargetSchedule)
    assert loaded.targets[0].temperature_schedule == "onex:0.5:0.5"
    assert (loaded.top_k, loaded.top_p, loaded.use_cache, loaded.batch_guidance) == (20, 0.8, False, False)
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    assert sorted(saved["modality_specs"]) == ["caption", "rgb@224", "tok_depth@224"]
    assert "sentinel_token_ids" not in saved and "do_sample" not in saved  # defaults are not written
    # a default config writes nothing but the version
    FourMGenerationConfig().save_pretrained(tmp_path / "default")
    assert list(json.loads((tmp_path / "default" / "generation_config.json").read_text())) == ["transformers_version"]


def test_dict_json_and_copy_round_trips():
    config = chain()
    assert FourMGenerationConfig.from_dict(config.to_dict()) == config
    assert FourMGenerationConfig.from_dict(json.loads(config.to_json_string(use_diff=False))) == config
    assert FourMGenerationConfig.from_dict(json.loads(config.to_json_string())) == config  # the diff only
    copied = copy.deepcopy(config)
    assert copied == config and hash(copied) == hash(config)
    copied.targets[0].temperature = 2.0
    assert config.targets[0].temperature == 1.0 and copied != config


def test_update_validates_and_returns_unused():
    config = chain()
    assert config.update(top_k=5, use_cache=False, foo=1) == {"foo": 1}
    assert (config.top_k, config.use_cache) == (5, False)
    with pytest.raises(ValueError, match="top_p must be in \\[0, 1\\]"):
        config.update(top_p=2.0)
    with pytest.raises(ValueError, match="\\['num_beams'\\] are transformers generation settings that 4M"):
        chain().update(num_beams=2)


def test_transformers_fields_stay_coherent():
    """transformers' own validation (strict: every "minor issue" raises) accepts the 4M settings, where a plain
    GenerationConfig with the same sampling values is flagged (they need do_sample)."""
    config = chain(top_k=10)
    config.validate(strict=True)
    assert config.do_sample is True and config.get_generation_mode() == GenerationMode.SAMPLE
    with pytest.raises(ValueError, match="do_sample"):
        GenerationConfig(top_k=10, top_p=0.8).validate(strict=True)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_beams": 4}, ValueError, "\\['num_beams'\\] are transformers generation settings"),
        ({"temperature": 0.7, "max_length": 20}, ValueError, "\\['max_length', 'temperature'\\] are transformers"),
        ({"do_sample": "no"}, TypeError, "do_sample must be True or False, got str 'no'"),
        ({"num_return_sequences": 0}, ValueError, "num_return_sequences must be >= 1, got 0"),
        ({"max_new_tokens": 2.0}, TypeError, "max_new_tokens must be an integer, got float"),
        ({"pad_token_id": -1}, ValueError, "pad_token_id / eos_token_id / sentinel_token_ids: pad_id must be"),
        ({"sentinel_token_ids": [4, 4, 5]}, ValueError, "sentinel_ids must be distinct"),
        ({"special_tokens": SpecialTokens(), "eos_token_id": 3}, ValueError, "Pass either special_tokens or"),
        ({"special_tokens": {"pad_id": 0}}, TypeError, "special_tokens must be a SpecialTokens, got dict"),
        ({"modality_specs": ["rgb@224"]}, TypeError, "modality_specs must be a dict of saved specs, got list"),
    ],
)
def test_config_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        FourMGenerationConfig(**kwargs)


def test_from_model_config_is_an_empty_chain():
    config = FourMGenerationConfig.from_model_config(FourMConfig())
    assert isinstance(config, FourMGenerationConfig) and config.targets == [] and config._from_model_config
    assert config.special_tokens == SpecialTokens()
    model = FourMForMaskedModeling(
        FourMConfig(hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=4)
    )
    assert isinstance(model.generation_config, FourMGenerationConfig) and model.generation_config.targets == []


# ----------------------------------------------------------------------------------------------------------------
# Special tokens


class ForceTokens(LogitsProcessor):
    """Forces `tokens[t]` at autoregressive step t."""

    def __init__(self, tokens):
        self.tokens = tokens

    def __call__(self, input_ids, scores, cur_step):
        if cur_step < len(self.tokens):
            scores[:] = -math.inf
            scores[:, self.tokens[cur_step]] = 0.0
        return scores


def test_special_tokens_reach_generation(tmp_path):
    custom = SpecialTokens(pad_id=1, eos_id=2, sentinel_ids=(7, 8, 9, 10))
    config = FourMGenerationConfig(targets=[FourMTargetSchedule("caption", num_tokens=6, temperature=0.0)],
                                   special_tokens=custom)  # fmt: skip
    assert config.special_tokens == custom and (config.pad_token_id, config.sentinel_token_ids) == (1, [7, 8, 9, 10])
    config.save_pretrained(tmp_path)
    assert FourMGenerationConfig.from_pretrained(tmp_path).special_tokens == custom

    torch.manual_seed(0)
    model = FourMForMaskedModeling(FourMConfig(
        hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=4,
        encoder_modalities=["rgb@224", "caption"], decoder_modalities=["caption"],
    )).eval()  # fmt: skip
    inputs = {"rgb@224": {"tensor": torch.randn(1, 3, 224, 224)}}
    blank = model._prepare_generation_inputs(inputs, config)["caption"]
    assert blank["tensor"].tolist() == [[8, 8, 1, 1, 1, 9]]  # [S_1] [S_1] [PAD] ... [S_2] of the custom layout
    # decoding stops at the custom [S_2] (9) and the span replaces the custom [S_1] (8)
    out = model.generate(inputs, config, logits_processor=[ForceTokens([1040, 1041, 9])], progress_bar=False)
    assert out["caption"]["tensor"].tolist() == [[1040, 1041]]
    # the same through generate's keyword: the default layout's [S_2] is 6, so 9 ([S_5]) no longer stops decoding
    out = model.generate(inputs, config, logits_processor=[ForceTokens([1040, 9, 6])], progress_bar=False,
                         special_tokens=SpecialTokens())  # fmt: skip
    assert out["caption"]["tensor"].tolist() == [[1040]]


# ----------------------------------------------------------------------------------------------------------------
# Modality specs travel with the config

FRESH_PROCESS = """
import json, sys
from fourm_hf import FourMGenerationConfig
from fourm_hf.generation import recipes
from fourm_hf.modalities import FAMILIES, MODALITIES

known = {name: name in MODALITIES for name in ("tok_weather@32", "rgb@32")}
config = FourMGenerationConfig.from_pretrained(sys.argv[1])
spec = MODALITIES["tok_weather@32"]
print(json.dumps({
    "known_before": known, "family_known": "tok_weather" in FAMILIES,
    "targets": [t.modality for t in config.targets], "steps": config.targets[0].num_steps,
    "conditions": config.conditions, "spec": [spec.kind, spec.vocab_size, spec.num_tokens, spec.family.name],
    "rgb32_tokens": MODALITIES["rgb@32"].num_tokens,
}))
"""


def test_saved_config_registers_its_modalities_in_a_fresh_process(tmp_path):
    weather = ModalityFamily("tok_weather", "image_tokens")  # a family this package never had
    register_modality("tok_weather@32", family=weather, vocab_size=64, patch_size=8, overwrite=True)
    register_modality("rgb@32", overwrite=True)  # a new resolution of a known family
    config = FourMGenerationConfig(
        conditions=["rgb@32"], targets=[FourMTargetSchedule("tok_weather@32", num_steps=2, guidance_scale=2.0)]
    )
    config.save_pretrained(tmp_path)
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["known_before"] == {"tok_weather@32": False, "rgb@32": False}
    assert report["family_known"] and report["targets"] == ["tok_weather@32"] and report["steps"] == 2
    assert report["conditions"] == ["rgb@32"] and report["spec"] == ["image_tokens", 64, 16, "tok_weather"]
    assert report["rgb32_tokens"] == 4


# ----------------------------------------------------------------------------------------------------------------
# Recipes from the model's own modalities

SMALL = dict(hidden_size=32, num_encoder_layers=1, num_decoder_layers=1, num_attention_heads=4)


@pytest.fixture
def model64() -> FourMConfig:
    for name in ("rgb@64", "tok_rgb@64", "tok_depth@64", "tok_semseg@64"):
        register_modality(name, overwrite=True)  # other tests may have registered them with other patch sizes
    return FourMConfig(
        **SMALL, encoder_modalities=["rgb@64", "tok_rgb@64", "tok_depth@64", "tok_semseg@64", "caption", "det"],
        decoder_modalities=["tok_rgb@64", "tok_depth@64", "tok_semseg@64", "caption", "det"],
    )  # fmt: skip


def test_rgb_to_all_uses_the_model_modalities(model64):
    config = FourMGenerationConfig.rgb_to_all(model64)
    assert config.conditions == ["rgb@64"]
    assert [t.modality for t in config.targets] == ["tok_depth@64", "tok_semseg@64", "caption", "det"]
    depth, caption = config.targets[0], config.targets[2]
    assert (depth.scheme, depth.num_steps, depth.temperature, depth.guidance_scale) == ("roar", 1, 0.01, 2.0)
    assert (caption.scheme, caption.temperature) == ("autoregressive", 0.3)
    assert (config.grow_conditioning, config.top_p, config.top_k) == (True, 0.8, 0)
    # given as tokens, RGB is a condition like the pixels: tok_rgb is not generated, the from-RGB settings apply
    tokens = FourMGenerationConfig.rgb_to_all(model64, conditions=["tok_rgb@64"])
    assert [t.modality for t in tokens.targets] == ["tok_depth@64", "tok_semseg@64", "caption", "det"]


def test_caption_to_all_caps_steps_at_the_grid(model64):
    config = FourMGenerationConfig.caption_to_all(model64, top_p=0.9)
    assert config.conditions == ["caption"] and config.top_p == 0.9
    by_name = {t.modality: t for t in config.targets}
    assert list(by_name) == ["tok_depth@64", "tok_semseg@64", "tok_rgb@64", "det"]
    assert (by_name["tok_depth@64"].num_steps, by_name["tok_depth@64"].temperature_schedule) == (8, "onex:0.5:0.5")
    assert by_name["tok_rgb@64"].num_steps == 16  # the demo's 25 steps, capped at the 4x4 grid
    both = FourMGenerationConfig.caption_det_to_all(model64)
    assert both.conditions == ["caption", "det"] and "det" not in [t.modality for t in both.targets]


def test_recipe_errors(model64):
    no_rgb = FourMConfig(**SMALL, encoder_modalities=["tok_depth@64", "caption"], decoder_modalities=["caption"])
    with pytest.raises(ValueError, match="rgb_to_all: the model has no 'rgb' input to condition on"):
        FourMGenerationConfig.rgb_to_all(no_rgb)
    no_caption = FourMConfig(**SMALL, encoder_modalities=["rgb@64"], decoder_modalities=["tok_depth@64"])
    with pytest.raises(ValueError, match="caption_to_all: the model has no 'caption' input"):
        FourMGenerationConfig.caption_to_all(no_caption)
    with pytest.raises(ValueError, match="does not take 'tok_clip@224' as input"):
        FourMGenerationConfig.demo_recipe(model64, ["tok_clip@224"])
    with pytest.raises(ValueError, match="The model cannot generate 'tok_normal@64'"):
        FourMGenerationConfig.rgb_to_all(model64, targets=["tok_normal@64"])

    glow = ModalityFamily(
        "tok_glow", "image_tokens", generation={"from_rgb": {"scheme": "maskgit", "num_steps": 2}}, generation_order=4
    )
    register_modality("tok_glow@64", family=glow, vocab_size=16, patch_size=16, overwrite=True)
    register_modality("tok_bare@64", "image_tokens", vocab_size=16, patch_size=16, overwrite=True)
    custom = FourMConfig(**SMALL, encoder_modalities=["rgb@64", "caption"],
                         decoder_modalities=["tok_glow@64", "tok_bare@64", "tok_depth@64"])  # fmt: skip
    with CaptureLogger(recipes.logger) as captured:  # families outside the recipes' order are named, not dropped silently
        everything = FourMGenerationConfig.rgb_to_all(custom)
    assert [t.modality for t in everything.targets] == ["tok_depth@64", "tok_glow@64"]
    assert "leaves out ['tok_bare@64']" in captured.out
    chosen = FourMGenerationConfig.rgb_to_all(custom, targets=["tok_depth@64", "tok_glow@64"])
    assert [(t.modality, t.scheme, t.num_steps) for t in chosen.targets] == [
        ("tok_depth@64", "roar", 1), ("tok_glow@64", "maskgit", 2)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="tok_glow@64: the 'tok_glow' family has no 'to_rgb' generation settings"):
        FourMGenerationConfig.caption_to_all(custom, targets=["tok_glow@64"])


def test_super_resolution_pairs_families_by_resolution():
    for name in ("rgb@64", "tok_depth@64", "tok_depth@128", "tok_semseg@128", "tok_canny_edge@128"):
        register_modality(name, overwrite=True)
    sr = FourMConfig(
        **SMALL, encoder_modalities=["rgb@64", "tok_depth@64", "caption", "tok_depth@128", "tok_semseg@128"],
        decoder_modalities=["tok_semseg@128", "tok_depth@128", "tok_canny_edge@128"],
    )  # fmt: skip
    config = FourMGenerationConfig.super_resolution(sr, ["rgb@64", "tok_depth@64", "caption", "det"])
    assert config.conditions == ["rgb@64", "tok_depth@64", "caption"]
    (depth,) = config.targets  # no tok_semseg or edges at a lower resolution: nothing to super-resolve there
    assert (depth.modality, depth.scheme, depth.num_steps, depth.token_schedule) == ("tok_depth@128", "maskgit", 8,
                                                                                      "cosine")  # fmt: skip
    assert (depth.temperature, depth.guidance_scale) == (1.0, 2.0)
    with pytest.raises(ValueError, match="Nothing to super-resolve"):
        FourMGenerationConfig.super_resolution(sr, ["rgb@64", "caption"])
    register_modality("tok_canny_edge@64", overwrite=True)
    edges = FourMConfig(**SMALL, encoder_modalities=["tok_canny_edge@64"], decoder_modalities=["tok_canny_edge@128"])
    with pytest.raises(ValueError, match="\\['tok_canny_edge@128'\\] could be super-resolved .* no 'super_resolution'"):
        FourMGenerationConfig.super_resolution(edges, ["tok_canny_edge@64"])
