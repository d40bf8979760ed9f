"""Chained generation (`fourm_hf.generation`): schedules, processors, the official generation cases, KV cache,
guidance, seeds, schemes, recipes and errors. Speed is measured in benchmarks/bench_generation.py, not here."""

import math

import pytest
import torch
from conftest import OFFICIAL_4M, PARITY_CASES, official_case
from transformers import ClassifierFreeGuidanceLogitsProcessor, LogitsProcessor, LogitsProcessorList

from fourm_hf import (
    FourMConfig,
    FourMForMaskedModeling,
    FourMGenerationConfig,
    FourMTargetSchedule,
    SpecialTokens,
    generate_with_super_resolution,
    get_modality,
)
from fourm_hf.generation import schedules, schemes
from fourm_hf.generation.logits_process import FourMGuidanceLogitsProcessor, sampling_warpers

S1, S2, EOS, PAD = 5, 6, 3, 0  # [S_1], [S_2], [EOS], [PAD] in the released WordPiece tokenizer


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models decode faster on one thread than on two contended CPU cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(**overrides) -> FourMForMaskedModeling:
    torch.manual_seed(0)
    kwargs = dict(
        hidden_size=32, num_encoder_layers=2, num_decoder_layers=2, num_attention_heads=4,
        encoder_modalities=["rgb@224", "tok_depth@224", "tok_normal@224", "caption", "det"],
        decoder_modalities=["tok_depth@224", "tok_normal@224", "caption", "det"],
    )  # fmt: skip
    kwargs.update(overrides)
    return FourMForMaskedModeling(FourMConfig(**kwargs)).eval()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def rgb(batch: int = 2, seed: int = 0) -> dict:
    return {"rgb@224": {"tensor": torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(seed))}}


def config(*targets, **kwargs) -> FourMGenerationConfig:
    return FourMGenerationConfig(targets=list(targets), **{"conditions": ["rgb@224"], **kwargs})


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k]["tensor"], b[k]["tensor"]) for k in a)


# ----------------------------------------------------------------------------------------------------------------
# Schedules (expected values: the official examples quoted in spec_generation_training.md A.3)


def test_cosine_token_schedule_matches_official_examples():
    assert schedules.cosine_token_schedule(8, 784) == [30, 85, 127, 150, 150, 127, 85, 30]
    assert schedules.cosine_token_schedule(1, 196) == [196]
    for steps, tokens in [(8, 196), (25, 196), (12, 16)]:
        counts = schedules.cosine_token_schedule(steps, tokens)
        assert len(counts) == steps and sum(counts) == tokens
        # the official formula: round(T (c_i - c_{i+1})), c_i = (1 + cos(pi i / S)) / 2, remainder last
        c = [0.5 * (1 + math.cos(math.pi * i / steps)) for i in range(steps + 1)]
        assert counts[:-1] == [round(tokens * (c[i] - c[i + 1])) for i in range(steps - 1)]


def test_linear_token_schedule_matches_official_examples():
    assert schedules.linear_token_schedule(25, 196) == [8] * 21 + [7] * 4
    assert schedules.linear_token_schedule(49, 196) == [4] * 49
    assert schedules.linear_token_schedule(8, 196) == [25] * 4 + [24] * 4
    assert schedules.linear_token_schedule(1, 196) == [196]


def test_temperature_schedules_match_official_examples():
    linear8 = schedules.linear_token_schedule(8, 196)
    assert schedules.linear_temperature_schedule(1.0, linear8) == pytest.approx(
        [1.0, 0.872, 0.745, 0.617, 0.49, 0.367, 0.245, 0.122], abs=1e-3
    )
    assert schedules.onex_temperature_schedule(3.0, linear8, 0.5, 0.5) == pytest.approx(
        [2.68, 1.98, 1.54, 1.22, 0.98, 0.79, 0.64, 0.5], abs=6e-3
    )
    onex49 = schedules.onex_temperature_schedule(6.0, schedules.linear_token_schedule(49, 196), 0.5, 0.5)
    assert onex49[:3] == pytest.approx([5.89, 4.69, 3.97], abs=6e-3)
    assert onex49[-3:] == pytest.approx([0.53, 0.51, 0.5], abs=6e-3)
    target = FourMTargetSchedule(
        "tok_rgb@224", "roar", num_steps=8, temperature=3.0, temperature_schedule="onex:0.5:0.5"
    )
    assert target.temperatures(target.token_counts(196)) == pytest.approx(
        [2.68, 1.98, 1.54, 1.22, 0.98, 0.79, 0.64, 0.5], abs=6e-3
    )


def test_target_schedule_defaults():
    assert FourMTargetSchedule("caption").scheme == "autoregressive"
    depth = FourMTargetSchedule("tok_depth@224", num_steps=8)
    assert (depth.scheme, depth.token_schedule) == ("maskgit", "cosine")
    assert FourMTargetSchedule("tok_depth@224", "roar", num_steps=8).token_schedule == "linear"
    assert FourMTargetSchedule("tok_depth@224", guidance_scale=3).guidance_scale == 3.0  # ints are fine here


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"modality": "tok_dept@224"}, ValueError, "Unknown modality 'tok_dept@224'"),
        ({"modality": "rgb@224"}, ValueError, "input-only"),
        ({"modality": "t5_caption"}, ValueError, "input-only"),
        ({"modality": "tok_depth@224", "scheme": "autoregressive"}, ValueError, "image modality"),
        ({"modality": "caption", "scheme": "maskgit"}, ValueError, "only be generated with scheme='autoregressive'"),
        ({"modality": "tok_depth@224", "scheme": "diffusion"}, ValueError, "scheme must be one of"),
        ({"modality": "tok_depth@224", "num_steps": 197}, ValueError, "num_steps=197 is more than the 196 tokens"),
        ({"modality": "tok_dinov2_global", "num_steps": 12}, ValueError, "steps \\[0, 11\\] with no token"),
        ({"modality": "tok_depth@224", "num_steps": 0}, ValueError, "num_steps must be >= 1"),
        ({"modality": "tok_depth@224", "num_steps": 2.0}, TypeError, "num_steps must be an int"),
        ({"modality": "tok_depth@224", "num_tokens": 300}, ValueError, "has 196 tokens"),
        ({"modality": "tok_depth@224", "token_schedule": "square"}, ValueError, "token_schedule must be one of"),
        ({"modality": "tok_depth@224", "temperature": -1.0}, ValueError, "temperature must be >= 0"),
        ({"modality": "tok_depth@224", "temperature_schedule": "onex:0.5"}, ValueError, "Unknown temperature_sched"),
        ({"modality": "tok_depth@224", "temperature_schedule": "onex:a:b"}, ValueError, "must be numbers"),
        ({"modality": "tok_depth@224", "guidance_schedule": "cosine"}, ValueError, "guidance_schedule must be"),
        ({"modality": "tok_depth@224", "guidance_scale": "2"}, TypeError, "guidance_scale must be a number"),
        ({"modality": "caption", "num_steps": 4}, ValueError, "apply to maskgit/roar targets"),
        ({"modality": "caption", "num_tokens": 1}, ValueError, r"num_tokens must be in \[2, 257\]"),
    ],
)
def test_invalid_target_schedules(kwargs, error, match):
    with pytest.raises(error, match=match):
        FourMTargetSchedule(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"targets": [FourMTargetSchedule("caption")] * 2}, "repeated: \\['caption'\\]"),
        ({"conditions": ["caption"], "targets": [FourMTargetSchedule("caption")]}, "both conditions and targets"),
        ({"targets": [FourMTargetSchedule("tok_depth@224", guidance_scale=2.0)]}, "needs conditions"),
        (
            {"conditions": ["rgb@224"], "targets": [FourMTargetSchedule("tok_depth@224", guidance_scale=[2.0, 1.0])]},
            "has 2 weights but 1 guidance groups",
        ),
        (
            {
                "guidance_groups": [["rgb@224"], ["det"]],
                "targets": [FourMTargetSchedule("tok_depth@224", guidance_scale=2.0)],
            },
            "one weight per group",
        ),
        ({"conditions": ["rgb@224"], "guidance_groups": [["det"]], "targets": []}, "not both"),
        ({"guidance_groups": [[]], "targets": []}, "empty groups"),
        ({"conditions": ["rgb@225"], "targets": []}, "Unknown modality 'rgb@225'"),
        ({"top_k": -1}, "top_k must be"),
        ({"top_k": 1.5}, "vocabulary fraction"),
        ({"top_p": 1.5}, "top_p must be"),
        ({"use_cache": "yes"}, "use_cache must be a bool"),
        ({"steps": 3}, "Unknown FourMGenerationConfig arguments: \\['steps'\\]"),
    ],
)
def test_invalid_generation_configs(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        FourMGenerationConfig(**kwargs)


def test_guidance_plan_grows_conditions():
    depth, normal = FourMTargetSchedule("tok_depth@224", guidance_scale=2.0), FourMTargetSchedule("tok_normal@224")
    caption = FourMTargetSchedule("caption", guidance_scale=1.5)
    plan = FourMGenerationConfig(conditions=["rgb@224"], targets=[depth, caption, normal], grow_conditioning=True)
    assert plan.guidance_plan() == [
        ([["rgb@224"]], [2.0]),
        ([["rgb@224", "tok_depth@224"]], [1.5]),  # autoregressive outputs never join
        ([["rgb@224", "tok_depth@224"]], None),  # scale 1: unguided
    ]
    multi = FourMGenerationConfig(
        guidance_groups=[["rgb@224"], ["det"]], grow_conditioning=True,
        targets=[FourMTargetSchedule("tok_depth@224", guidance_scale=[1.0, 2.0]),
                 FourMTargetSchedule("tok_normal@224", guidance_scale=[1.0, 2.0, 0.5])],
    )  # fmt: skip
    assert multi.guidance_plan()[1] == ([["rgb@224"], ["det"], ["tok_depth@224"]], [1.0, 2.0, 0.5])


# ----------------------------------------------------------------------------------------------------------------
# Processors


def test_guidance_processor_matches_transformers_and_weighted_sum():
    cond1, cond2, uncond = torch.randn(3, 4, 10).unbind(0)
    single = FourMGuidanceLogitsProcessor([3.0])(None, torch.cat([cond1, uncond]))
    input_ids = torch.zeros(4, 1, dtype=torch.long)  # transformers checks the doubled batch against it
    reference = ClassifierFreeGuidanceLogitsProcessor(3.0)(input_ids, torch.cat([cond1, uncond]))
    torch.testing.assert_close(single, reference)
    multi = FourMGuidanceLogitsProcessor([2.0, -0.5])(None, torch.cat([cond1, cond2, uncond]))
    torch.testing.assert_close(multi, uncond + 2.0 * (cond1 - uncond) - 0.5 * (cond2 - uncond))
    # scales <= 1 are allowed (transformers' processor refuses them): 0 is the unconditional pass
    torch.testing.assert_close(FourMGuidanceLogitsProcessor([0.0])(None, torch.cat([cond1, uncond])), uncond)


def test_top_p_keeps_the_official_nucleus():
    """The transformers top-p warper keeps the same tokens as the official rule: sort descending, drop tokens whose
    preceding cumulative probability already exceeds p (so the first token crossing p is kept)."""
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(0)) * 3
    for top_p in (0.3, 0.8, 0.95):
        kept = torch.isfinite(sampling_warpers(0, top_p, 30000, [1.0])(None, logits.clone(), cur_step=0))
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        before = sorted_logits.softmax(-1).cumsum(-1) - sorted_logits.softmax(-1)
        expected = torch.zeros_like(kept).scatter(1, order, before <= top_p)
        assert torch.equal(kept, expected)


def test_top_k_fraction_and_temperature_schedule():
    warpers = sampling_warpers(0.001, 1.0, 30000, [2.0, 0.5])  # top-k 30 of 30000 tokens
    scores = torch.randn(3, 30000)
    out = warpers(None, scores.clone(), cur_step=1)
    assert (torch.isfinite(out).sum(-1) == 30).all()
    top = scores.topk(30).indices
    torch.testing.assert_close(out.gather(1, top), scores.gather(1, top) / 0.5)


# ----------------------------------------------------------------------------------------------------------------
# The official generation cases


_models: dict = {}


def _official_model(name, checkpoints):
    if name not in _models:
        _models[name] = FourMForMaskedModeling.from_pretrained(str(checkpoints[name])).eval()
    return _models[name]


def _official_inputs(spec: dict) -> dict:
    """Conditions as the fixture README describes them."""
    from tokenizers import Tokenizer

    batch, inputs = spec["batch"], {}
    for name in spec["cond"]:
        info = get_modality(name)
        if info.kind == "pixels":
            g = torch.Generator().manual_seed(11)
            inputs[name] = {"tensor": torch.randn(batch, 3, info.image_size, info.image_size, generator=g)}
        elif name == "caption":
            tokenizer = Tokenizer.from_file(str(OFFICIAL_4M / "text_tokenizer_4m_wordpiece_30k.json"))
            ids = [*tokenizer.encode(spec["caption_text"]).ids, tokenizer.token_to_id("[EOS]")]
            inputs[name] = {"tensor": torch.tensor([ids] * batch)}
        else:
            g = torch.Generator().manual_seed(13)
            inputs[name] = {"tensor": torch.randint(0, info.vocab_size, (batch, info.num_tokens), generator=g)}
    return inputs


def _official_config(spec: dict, use_cache: bool) -> FourMGenerationConfig:
    targets = []
    for i, name in enumerate(spec["targets"]):
        scheme = spec["schemes"][i]
        steps = {} if scheme == "autoregressive" else {"num_steps": spec["steps"][i]}
        targets.append(FourMTargetSchedule(
            name, scheme, num_tokens=spec["tokens_per_target"][i], temperature=spec["temps"][i],
            guidance_scale=spec["cfg_scales"][i], **steps,
        ))  # fmt: skip
    return FourMGenerationConfig(
        conditions=spec["cond"], targets=targets, grow_conditioning=spec.get("cfg_grow", False), use_cache=use_cache
    )


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no_cache"])
@pytest.mark.parametrize("case_name", PARITY_CASES)
def test_official_generation_cases(case_name, use_cache, official_checkpoints):
    case = official_case(case_name)
    model = _official_model(case_name, official_checkpoints)
    for index, spec in enumerate(case["info"]["generation"]):
        out = model.generate(_official_inputs(spec), _official_config(spec, use_cache), seed=0, progress_bar=False)
        for target in spec["targets"]:
            expected = case["tensors"][f"generation.{index}.{target}"]
            assert torch.equal(out[target]["tensor"], expected), f"generation.{index}.{target}"
            assert torch.equal(out[target]["input_mask"], case["tensors"][f"generation.{index}.{target}.input_mask"])


# ----------------------------------------------------------------------------------------------------------------
# Cache, guidance batching, seeds


def test_cached_decoding_matches_uncached(model):
    chain = config(
        FourMTargetSchedule("tok_depth@224", num_steps=2, temperature=0.0),
        FourMTargetSchedule("caption", num_tokens=48, temperature=0.0),  # greedy
        FourMTargetSchedule("det", num_tokens=48, temperature=1.0, guidance_scale=2.0),  # sampled and guided
        top_k=100, top_p=0.9, grow_conditioning=True,
    )  # fmt: skip
    cached = model.generate(rgb(), chain, seed=1, progress_bar=False)
    uncached = model.generate(rgb(), chain, seed=1, progress_bar=False, use_cache=False)
    assert same(cached, uncached)
    assert cached["caption"]["tensor"].shape[0] == 2 and cached["det"]["tensor"].shape[0] == 2


@pytest.mark.parametrize("scheme", ["maskgit", "roar"])
def test_batched_guidance_matches_separate_passes(model, scheme):
    chain = config(
        FourMTargetSchedule("tok_depth@224", scheme, num_steps=3, temperature=1.0, guidance_scale=2.0),
        FourMTargetSchedule("caption", num_tokens=24, temperature=1.0, guidance_scale=3.0),
        grow_conditioning=True,
    )
    batched = model.generate(rgb(), chain, seed=5, progress_bar=False)
    separate = model.generate(rgb(), chain, seed=5, progress_bar=False, batch_guidance=False)
    assert same(batched, separate)
    unguided = model.generate(rgb(), chain, seed=5, progress_bar=False, conditions=[], grow_conditioning=False,
                              targets=[FourMTargetSchedule("tok_depth@224", scheme, num_steps=3, temperature=1.0)])
    assert not torch.equal(unguided["tok_depth@224"]["tensor"], batched["tok_depth@224"]["tensor"])


def test_seeds_make_sampling_reproducible(model):
    chain = config(
        FourMTargetSchedule("tok_depth@224", "maskgit", num_steps=4, temperature=1.0),
        FourMTargetSchedule("caption", num_tokens=16, temperature=1.0),
    )
    first = model.generate(rgb(), chain, seed=7, progress_bar=False)
    assert same(first, model.generate(rgb(), chain, seed=7, progress_bar=False))
    other = model.generate(rgb(), chain, seed=8, progress_bar=False)
    for name in ("tok_depth@224", "caption"):
        assert not torch.equal(first[name]["tensor"], other[name]["tensor"])
    torch.manual_seed(3)
    unseeded = model.generate(rgb(), chain, progress_bar=False)
    torch.manual_seed(3)
    assert same(unseeded, model.generate(rgb(), chain, progress_bar=False))


def test_batch_matches_single_samples(model):
    chain = config(
        FourMTargetSchedule("tok_depth@224", "roar", num_steps=2, temperature=0.0, guidance_scale=1.5),
        FourMTargetSchedule("caption", num_tokens=16, temperature=0.0),
    )
    batch = model.generate(rgb(2), chain, seed=0, progress_bar=False)
    for i in range(2):
        single = model.generate({"rgb@224": {"tensor": rgb(2)["rgb@224"]["tensor"][i : i + 1]}}, chain, seed=0,
                                progress_bar=False)  # fmt: skip
        for name in ("tok_depth@224", "caption"):
            assert torch.equal(batch[name]["tensor"][i : i + 1], single[name]["tensor"])


# ----------------------------------------------------------------------------------------------------------------
# Parallel schemes


def test_parallel_schemes_decode_every_token_once(model, monkeypatch):
    committed = []

    def recording(scheme):
        class Recording(type(scheme)):
            def select_queries(self, target_mask, num_select, generator):
                committed.append([super().select_queries(target_mask, num_select, generator)])
                return committed[-1][0]

            def accept(self, confidence, num_select):
                indices = super().accept(confidence, num_select)
                committed[-1].append(indices)
                return indices

        return Recording()

    for name in ("maskgit", "roar"):
        monkeypatch.setitem(schemes.DECODING_SCHEMES, name, recording(schemes.DECODING_SCHEMES[name]))
    chain = config(
        FourMTargetSchedule("tok_depth@224", "maskgit", num_steps=8, temperature=1.0),
        FourMTargetSchedule("tok_normal@224", "roar", num_steps=5, temperature=1.0),
    )
    out = model.generate(rgb(), chain, seed=0, progress_bar=False)
    assert len(committed) == 13
    cosine, linear = [7, 21, 32, 38, 38, 32, 21, 7], [40, 39, 39, 39, 39]  # official formulas, by hand
    for steps, expected_counts in ((committed[:8], cosine), (committed[8:], linear)):
        assert [int(accepted.shape[1]) for _, accepted in steps] == expected_counts
        positions = torch.cat([queries.gather(1, accepted) for queries, accepted in steps], dim=1)
        assert torch.equal(positions.sort(dim=1).values, torch.arange(196).expand(2, -1))  # every position once
    # MaskGIT queries every still-masked position; ROAR only the positions it commits
    assert [int(q.shape[1]) for q, _ in committed[:8]] == [196, 189, 168, 136, 98, 60, 28, 7]
    for name in ("tok_depth@224", "tok_normal@224"):
        assert not out[name]["input_mask"].any() and out[name]["target_mask"].all()


def test_inpainting_keeps_given_tokens(model):
    given = torch.randint(0, 8192, (2, 196), generator=torch.Generator().manual_seed(0))
    target_mask = torch.ones(2, 196, dtype=torch.bool)
    target_mask[:, 100:] = False  # decode the second half only
    depth = {"tensor": given, "input_mask": ~target_mask, "target_mask": target_mask}
    chain = config(FourMTargetSchedule("tok_depth@224", num_steps=4, temperature=1.0))
    out = model.generate({**rgb(), "tok_depth@224": depth}, chain, seed=0, progress_bar=False)
    assert torch.equal(out["tok_depth@224"]["tensor"][:, :100], given[:, :100])
    assert not out["tok_depth@224"]["input_mask"].any()
    with pytest.raises(ValueError, match="num_tokens=196, but 96 positions are targets"):
        model.generate({**rgb(), "tok_depth@224": depth}, config(FourMTargetSchedule("tok_depth@224", num_tokens=196)))


# ----------------------------------------------------------------------------------------------------------------
# Autoregressive stopping and prompts


class ForceTokens(LogitsProcessor):
    """Forces token `plan[row][t]` at autoregressive step t (when given), to script a decoding."""

    def __init__(self, plan):
        self.plan, self.calls = plan, 0

    def __call__(self, input_ids, scores, cur_step):
        self.calls += 1
        for row, tokens in enumerate(self.plan):
            if cur_step < len(tokens):
                scores[row] = -math.inf
                scores[row, tokens[cur_step]] = 0.0
        return scores


def test_autoregressive_decoding_stops_when_every_sample_ended(model):
    force = ForceTokens([[1040, 1041, S2, 1042, 1043, 1044], [1050, 1051, 1052, 1053, 1054, S2]])
    chain = config(FourMTargetSchedule("caption", num_tokens=32, temperature=0.0))
    out = model.generate(rgb(), chain, seed=0, logits_processor=LogitsProcessorList([force]), progress_bar=False)
    assert force.calls == 6  # stops once the second sample produced [S_2]
    assert out["caption"]["tensor"].tolist() == [[1040, 1041, PAD, PAD, PAD], [1050, 1051, 1052, 1053, 1054]]
    assert out["caption"]["input_mask"].tolist() == [[False, False, True, True, True], [False] * 5]
    assert out["caption"]["target_mask"].all()


def test_prompt_completion_stops_at_the_span_end(model):
    """A text prompt with an open sentinel (the official `custom_text` layout): the visible prompt ends with [S_1],
    the hidden tail `[S_1] [PAD] ... [EOS]` is the span; decoding stops at its last token, [EOS]."""
    prompt = torch.tensor([[1100, 1101, S1, S1] + [PAD] * 8 + [EOS]])
    hidden = torch.tensor([[False] * 3 + [True] * 10])
    caption = {"tensor": prompt, "input_mask": hidden, "target_mask": ~hidden}
    force = ForceTokens([[1060, 1061, EOS, 1062]])
    chain = config(FourMTargetSchedule("caption", temperature=0.0))
    out = model.generate({**rgb(1), "caption": caption}, chain, logits_processor=[force], progress_bar=False)
    assert force.calls == 3
    assert out["caption"]["tensor"].tolist() == [[1100, 1101, 1060, 1061, EOS]]


# ----------------------------------------------------------------------------------------------------------------
# Guidance groups, register tokens, dtype, compile


def test_multi_condition_guidance(model):
    inputs = {**rgb(), "det": {"tensor": torch.tensor([[204, 1204, 2204, 3204, 4253, EOS]] * 2)}}
    target = dict(modality="tok_depth@224", num_steps=2, temperature=1.0)
    one_group = FourMGenerationConfig(guidance_groups=[["rgb@224", "det"]],
                                      targets=[FourMTargetSchedule(**target, guidance_scale=[2.0])])  # fmt: skip
    as_conditions = FourMGenerationConfig(conditions=["rgb@224", "det"],
                                          targets=[FourMTargetSchedule(**target, guidance_scale=2.0)])  # fmt: skip
    assert same(model.generate(inputs, one_group, seed=2, progress_bar=False),
                model.generate(inputs, as_conditions, seed=2, progress_bar=False))  # fmt: skip

    two_groups = FourMGenerationConfig(
        guidance_groups=[["rgb@224"], ["det"]], grow_conditioning=True,
        targets=[FourMTargetSchedule(**target, guidance_scale=[2.0, 1.0]),
                 FourMTargetSchedule("caption", num_tokens=12, temperature=1.0, guidance_scale=[1.0, 1.0, 0.5])],
    )  # fmt: skip
    prepared = model._prepare_generation_inputs(inputs, two_groups)
    plan = model._plan_targets(two_groups, prepared)[0]
    passes = schemes.guidance_passes(model.config, prepared, plan, SpecialTokens())
    visible = [{m: int((~p[m]["input_mask"]).sum()) for m in ("rgb@224", "det")} for p in passes]
    assert visible == [{"rgb@224": 392, "det": 0}, {"rgb@224": 0, "det": 12}, {"rgb@224": 0, "det": 2}]
    out = model.generate(inputs, two_groups, seed=2, progress_bar=False)
    assert out["tok_depth@224"]["tensor"].shape == (2, 196) and out["caption"]["tensor"].shape[0] == 2


def test_register_tokens_work():
    registers = tiny_model(num_register_tokens=3)
    chain = config(
        FourMTargetSchedule("tok_depth@224", "roar", num_steps=2, temperature=0.0, guidance_scale=2.0),
        FourMTargetSchedule("caption", num_tokens=12, temperature=0.0),
    )
    cached = registers.generate(rgb(), chain, seed=0, progress_bar=False)
    assert same(cached, registers.generate(rgb(), chain, seed=0, progress_bar=False, use_cache=False))
    assert cached["tok_depth@224"]["tensor"].shape == (2, 196)


def test_bfloat16_generation():
    model16 = tiny_model().to(torch.bfloat16)
    chain = config(
        FourMTargetSchedule("tok_depth@224", num_steps=2, temperature=1.0, guidance_scale=2.0),
        FourMTargetSchedule("caption", num_tokens=12, temperature=1.0),
    )
    out = model16.generate(rgb(), chain, seed=0, progress_bar=False)
    assert same(out, model16.generate(rgb(), chain, seed=0, progress_bar=False))
    depth = out["tok_depth@224"]["tensor"]
    assert depth.dtype == torch.long and depth.shape == (2, 196) and 0 <= int(depth.min()) and int(depth.max()) < 8192


def test_compiled_decoder_gives_the_same_tokens():
    """The decoder stack compiles without a graph break; uncached generation (which re-runs it over the prefix)
    gives the same tokens with it compiled."""
    compiled = tiny_model()
    chain = config(
        FourMTargetSchedule("tok_depth@224", num_steps=2, temperature=0.0, guidance_scale=2.0),
        FourMTargetSchedule("caption", num_tokens=10, temperature=0.0),
    )
    reference = compiled.generate(rgb(), chain, seed=0, progress_bar=False, use_cache=False)
    compiled.decoder.compile(backend="eager", fullgraph=True)  # fullgraph: no graph break in the decoder
    try:
        assert same(reference, compiled.generate(rgb(), chain, seed=0, progress_bar=False, use_cache=False))
    finally:
        torch._dynamo.reset()


# ----------------------------------------------------------------------------------------------------------------
# Recipes, configs, progress bar, errors


def test_recipes_follow_the_demo_defaults():
    config7 = FourMConfig()  # the 4M-7 modalities
    rgb_all = FourMGenerationConfig.rgb_to_all(config7)
    assert [t.modality for t in rgb_all.targets] == [
        "tok_clip@224", "tok_depth@224", "tok_normal@224", "tok_semseg@224", "caption", "det"
    ]  # fmt: skip
    clip = rgb_all.targets[0]
    assert (clip.scheme, clip.num_steps, clip.temperature, clip.guidance_scale) == ("roar", 1, 0.01, 2.0)
    assert (rgb_all.targets[4].scheme, rgb_all.targets[4].temperature) == ("autoregressive", 0.3)
    assert (rgb_all.conditions, rgb_all.grow_conditioning, rgb_all.top_p, rgb_all.top_k) == (["rgb@224"], True, 0.8, 0)

    caption_all = FourMGenerationConfig.caption_to_all(config7)
    by_name = {t.modality: t for t in caption_all.targets}
    assert "caption" not in by_name and "tok_rgb@224" in by_name
    assert (by_name["tok_clip@224"].num_steps, by_name["tok_clip@224"].temperature_schedule) == (50, "onex:0.5:0.5")
    assert (by_name["tok_rgb@224"].num_steps, by_name["tok_rgb@224"].guidance_scale) == (25, 2.0)
    assert by_name["tok_depth@224"].temperature == 3.0
    both = FourMGenerationConfig.caption_det_to_all(config7)
    assert both.conditions == ["caption", "det"] and "det" not in [t.modality for t in both.targets]
    with pytest.raises(ValueError, match="does not take 'tok_dinov2@224' as input"):
        FourMGenerationConfig.demo_recipe(config7, ["tok_dinov2@224"])


def sr_model() -> FourMForMaskedModeling:
    return tiny_model(
        encoder_modalities=["rgb@224", "tok_depth@224", "caption", "tok_depth@448"],
        decoder_modalities=["tok_depth@448"],
    )


def test_super_resolution_chain(model):
    sr = sr_model()
    sr_config = FourMGenerationConfig.super_resolution(sr.config, ["rgb@224", "tok_depth@224", "caption", "det"])
    assert sr_config.conditions == ["rgb@224", "tok_depth@224", "caption"]
    (depth,) = sr_config.targets
    assert (depth.modality, depth.scheme, depth.num_steps) == ("tok_depth@448", "maskgit", 8)
    assert depth.token_schedule == "cosine"
    assert (depth.temperature, depth.guidance_scale) == (1.0, 2.0)
    assert depth.token_counts(784) == [30, 85, 127, 150, 150, 127, 85, 30]

    base = FourMGenerationConfig.rgb_to_all(model.config, targets=["tok_depth@224", "caption"])
    base.targets[1].num_tokens = 8
    out = generate_with_super_resolution(model, sr, rgb(1), base, seed=4, progress_bar=False)
    assert out["tok_depth@448"]["tensor"].shape == (1, 784) and not out["tok_depth@448"]["input_mask"].any()
    base_out = model.generate(rgb(1), base, seed=4, progress_bar=False)
    assert torch.equal(out["tok_depth@224"]["tensor"], base_out["tok_depth@224"]["tensor"])
    with pytest.raises(ValueError, match="Nothing to super-resolve"):
        FourMGenerationConfig.super_resolution(sr.config, ["rgb@224"])


def test_generation_config_round_trip(tmp_path, model):
    chain = config(FourMTargetSchedule("tok_depth@224", "roar", num_steps=4, temperature_schedule="onex:0.5:0.5"),
                   FourMTargetSchedule("caption", temperature=0.3), grow_conditioning=True, top_p=0.8)  # fmt: skip
    chain.save_pretrained(tmp_path / "config")
    loaded = FourMGenerationConfig.from_pretrained(tmp_path / "config")
    assert loaded == chain and isinstance(loaded.targets[0], FourMTargetSchedule)
    assert loaded.targets[0].temperature_schedule == "onex:0.5:0.5"

    assert model.can_generate() and isinstance(model.generation_config, FourMGenerationConfig)
    saved = tiny_model()
    saved.generation_config = chain
    saved.save_pretrained(tmp_path / "model")
    restored = FourMForMaskedModeling.from_pretrained(tmp_path / "model")
    assert restored.generation_config == chain
    # the model's generation config is the default; a list of targets replaces its targets
    out = restored.generate(rgb(1), [FourMTargetSchedule("tok_depth@224", temperature=0.0)], progress_bar=False)
    assert out["tok_depth@224"]["tensor"].shape == (1, 196)


def test_progress_bar(model, capsys):
    chain = config(FourMTargetSchedule("tok_depth@224", num_steps=3, temperature=0.0))
    model.generate(rgb(1), chain, progress_bar=True)
    assert "3/3" in capsys.readouterr().err
    model.generate(rgb(1), chain, progress_bar=False)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "inputs, kwargs, error, match",
    [
        ({"tok_dept@224": {"tensor": torch.zeros(1, 196)}}, {}, ValueError, "Unknown modality 'tok_dept@224'"),
        ({"rgb@224": torch.zeros(1, 3, 224, 224)}, {}, TypeError, "must be a dict with a 'tensor' entry"),
        ({}, {}, ValueError, "non-empty dict"),
        ({**rgb(1), "caption": {"tensor": torch.zeros(2, 5, dtype=torch.long)}}, {}, ValueError, "same batch size"),
        ({"rgb@224": {**rgb(1)["rgb@224"], "input_mask": torch.zeros(1, 10, dtype=torch.bool)}}, {}, ValueError,
         "input_mask must have shape \\(batch, tokens\\) = \\(1, 196\\)"),
        (rgb(1), {"targets": []}, ValueError, "no targets"),
        (rgb(1), {"temperature": 0.5}, ValueError, "unknown argument 'temperature'"),
        (rgb(1), {"targets": [FourMTargetSchedule("tok_clip@224")]}, ValueError, "cannot generate tok_clip@224"),
        (rgb(1), {"conditions": ["det"]}, ValueError, "Guidance condition 'det' is not among the inputs"),
        (rgb(1), {"seed": 1.5}, TypeError, "seed must be an int"),
    ],
)
def test_generate_input_errors(model, inputs, kwargs, error, match):
    chain = config(FourMTargetSchedule("tok_depth@224", guidance_scale=2.0))
    with pytest.raises(error, match=match):
        model.generate(inputs, chain, progress_bar=False, **kwargs)


@pytest.mark.parametrize(
    "inputs, error",
    [
        ({"rgb@224": {"tensor": torch.randint(0, 256, (1, 3, 224, 224), dtype=torch.uint8)}}, TypeError),  # 0-255
        ({**rgb(1), "tok_depth@224": {"tensor": torch.full((1, 196), 0.5)}}, TypeError),  # fractional token ids
        ({"rgb@224": {"tensor": torch.randn(1, 3, 112, 112)}}, ValueError),  # wrong image size
        ({**rgb(1), "caption": {"tensor": torch.tensor([5, 1040, 3])}}, ValueError),  # 1-D ids
        ({**rgb(1), "caption": {"tensor": torch.tensor([[5, 30000, 3]])}}, ValueError),  # out of the vocabulary
        ({**rgb(1), "tok_depth@224": {"tensor": torch.zeros(1, 100, dtype=torch.long)}}, ValueError),  # wrong grid
        ({**rgb(1), "caption": {"tensor": torch.zeros(1, 600, dtype=torch.long)}}, ValueError),  # > 512 visible
        ({**rgb(1), "rgb@448": {"tensor": torch.randn(1, 3, 448, 448)}}, ValueError),  # not a modality of the model
    ],
    ids=["uint8_pixels", "float_ids", "image_size", "1d_ids", "out_of_vocab", "grid", "too_long", "unknown"],
)
def test_generate_rejects_what_forward_rejects(model, inputs, error):
    """generate runs the forward's input checks: the same exception, with the same message, for every bad input."""
    with pytest.raises(error) as forward_error:
        model(inputs)
    with pytest.raises(error) as generate_error:
        model.generate(inputs, config(FourMTargetSchedule("tok_normal@224", temperature=0.0)), progress_bar=False)
    assert str(generate_error.value) == str(forward_error.value)
