"""Processor-driven generation with transformers' conventions: `generate(**processor(...))` without a hand-written
config, `max_new_tokens`, `do_sample`, `num_return_sequences`, streamers, and the `FourMGenerateOutput` that
`postprocess` and `plot_modalities` take as it is."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import TextStreamer
from transformers.generation.streamers import BaseStreamer
from transformers.utils import ModelOutput

from conftest import restored_registry, tiny_any_to_any
from fourm_hf import (
    FourMGenerateOutput,
    FourMGenerationConfig,
    FourMTargetSchedule,
    plot_modalities,
)

DEPTH, PIXELS = "tok_depth@32", "rgb@32"
CAPTION_TOKENS = 12


@pytest.fixture(scope="module")
def setup():
    """A tiny untrained 4M (RGB pixels, depth tokens, caption at 32 px) and its processor; the registry is restored
    afterwards."""
    with restored_registry():
        yield tiny_any_to_any(sequences=("caption",))


def images(count: int = 1) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)) for _ in range(count)]


class RecordingStreamer(BaseStreamer):
    def __init__(self):
        self.puts, self.ends = [], 0

    def put(self, value):
        assert self.ends == 0, "put after end"
        self.puts.append(value.clone())

    def end(self):
        self.ends += 1


def caption_ids(output, row: int) -> list[int]:
    """The generated caption of one sample, as ids (the visible part of the merged sequence)."""
    entry = output["caption"]
    return entry["tensor"][row][~entry["input_mask"][row]].tolist()


def test_processor_driven_generation_without_a_config(setup):
    model, processor = setup
    batch = processor(images=images(2), targets=["caption", DEPTH])
    output = model.generate(**batch, seed=0, progress_bar=False)
    assert isinstance(output, FourMGenerateOutput) and isinstance(output, ModelOutput)
    assert set(output) == {PIXELS, DEPTH, "caption"}
    assert output[DEPTH]["tensor"].shape == (2, 16) and bool(output[DEPTH]["target_mask"].all())
    assert bool(output["caption"]["target_mask"].all())
    # the same chain as the recipe for exactly those targets, in the families' order (depth before the caption)
    recipe = FourMGenerationConfig.rgb_to_all(model.config, targets=[DEPTH, "caption"])
    expected = model.generate(batch, recipe, seed=0, progress_bar=False)
    assert all(torch.equal(output[k]["tensor"], expected[k]["tensor"]) for k in expected)
    positional = model.generate(batch, seed=0, progress_bar=False)
    assert all(torch.equal(output[k]["tensor"], positional[k]["tensor"]) for k in output)
    decoded = processor.postprocess(output)
    assert decoded[DEPTH].shape == (2, 32, 32) and len(decoded["caption"]) == 2
    assert all(isinstance(text, str) for text in decoded["caption"])
    assert plot_modalities(decoded).size[0] > 0


def test_without_rgb_the_recipe_uses_the_to_rgb_settings(setup, monkeypatch):
    model, processor = setup
    batch = processor(text=["a red cube"], targets=[DEPTH])
    output = model.generate(**batch, seed=0, progress_bar=False)
    expected = model.generate(batch, FourMGenerationConfig.caption_to_all(model.config, targets=[DEPTH]), seed=0,
                              progress_bar=False)  # fmt: skip
    assert torch.equal(output[DEPTH]["tensor"], expected[DEPTH]["tensor"])


def test_requested_target_missing_from_the_config_raises(setup):
    model, processor = setup
    batch = processor(images=images(), targets=[DEPTH, "caption"])
    with pytest.raises(ValueError, match=r"caption is requested as a target .* does not generate it"):
        model.generate(batch, [FourMTargetSchedule(DEPTH)], progress_bar=False)
    with pytest.raises(ValueError, match="Nothing to generate: no entry"):
        model.generate(**processor(images=images()), progress_bar=False)
    with pytest.raises(TypeError, match="pass them one way"):
        model.generate(batch, **{PIXELS: batch[PIXELS]}, progress_bar=False)
    with pytest.raises(TypeError, match="needs the inputs"):
        model.generate(progress_bar=False)
    with pytest.raises(ValueError, match="unknown argument 'max_new_token'.*max_new_tokens"):
        model.generate(batch, max_new_token=3, progress_bar=False)
    with pytest.raises(TypeError, match="streamer must be a transformers BaseStreamer"):
        model.generate(batch, streamer=print, progress_bar=False)


@pytest.mark.parametrize("use_cache", [True, False])
def test_streamer_receives_the_caption_tokens_in_order(setup, use_cache):
    model, processor = setup
    batch = processor(images=images(), targets=["caption"])
    streamer = RecordingStreamer()
    output = model.generate(**batch, streamer=streamer, seed=1, progress_bar=False, use_cache=use_cache)
    assert streamer.ends == 1 and all(p.shape == (1,) for p in streamer.puts)
    streamed = [int(p[0]) for p in streamer.puts]
    generated = caption_ids(output, 0)
    # every generated token, then (unless the budget ran out) the span's end token [S_2], which is not kept
    assert streamed[: len(generated)] == generated and len(streamed) - len(generated) in (0, 1)
    assert len(streamed) <= CAPTION_TOKENS


def test_text_streamer_prints_the_caption(setup, capsys):
    model, processor = setup
    batch = processor(images=images(), targets=["caption"])
    output = model.generate(batch, streamer=TextStreamer(processor.tokenizer, skip_special_tokens=True), seed=1,
                            progress_bar=False)  # fmt: skip
    printed = capsys.readouterr().out
    text = processor.tokenizer.decode(caption_ids(output, 0), skip_special_tokens=True)
    assert printed.strip() == text.strip() and printed.endswith("\n")


def test_max_new_tokens_caps_sequence_targets(setup):
    model, processor = setup
    batch = processor(images=images(2), targets=["caption"])
    full = model.generate(batch, seed=2, progress_bar=False, top_p=1.0)
    streamer = RecordingStreamer()
    capped = model.generate(batch, seed=2, progress_bar=False, max_new_tokens=3, streamer=streamer, top_p=1.0)
    assert len(streamer.puts) == 3
    for row in range(2):
        assert len(caption_ids(capped, row)) <= 3
        assert caption_ids(capped, row) == caption_ids(full, row)[: len(caption_ids(capped, row))]
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1, got 0"):
        model.generate(batch, max_new_tokens=0, progress_bar=False)


def test_num_return_sequences_and_do_sample(setup):
    model, processor = setup
    batch = processor(images=images(2), targets=[DEPTH, "caption"])
    hot = [FourMTargetSchedule(DEPTH, "maskgit", num_steps=2, temperature=3.0), FourMTargetSchedule("caption", temperature=3.0)]
    sampled = model.generate(batch, hot, num_return_sequences=3, seed=0, progress_bar=False)
    assert sampled[PIXELS]["tensor"].shape[0] == 6 and sampled[DEPTH]["tensor"].shape == (6, 16)
    for i in range(2):  # rows i * 3 ... i * 3 + 2 are copies of input i (transformers' order)
        assert torch.equal(sampled[PIXELS]["tensor"][3 * i], batch[PIXELS]["tensor"][i])
        assert torch.equal(sampled[PIXELS]["tensor"][3 * i + 2], batch[PIXELS]["tensor"][i])
        depths = sampled[DEPTH]["tensor"][3 * i : 3 * i + 3]
        assert not torch.equal(depths[0], depths[1]) and not torch.equal(depths[1], depths[2])
        captions = [caption_ids(sampled, 3 * i + j) for j in range(3)]
        assert captions[0] != captions[1] and captions[1] != captions[2]
    greedy = model.generate(batch, hot, num_return_sequences=3, do_sample=False, seed=0, progress_bar=False)
    cold = [FourMTargetSchedule(DEPTH, "maskgit", num_steps=2, temperature=0.0), FourMTargetSchedule("caption", temperature=0.0)]
    reference = model.generate(batch, cold, seed=5, progress_bar=False)
    for i in range(2):
        for j in range(3):
            assert torch.equal(greedy[DEPTH]["tensor"][3 * i + j], reference[DEPTH]["tensor"][i])
            assert caption_ids(greedy, 3 * i + j) == caption_ids(reference, i)
    assert len(processor.postprocess(greedy)["caption"]) == 6
    with pytest.raises(TypeError, match="do_sample must be True or False"):
        model.generate(batch, hot, do_sample="no", progress_bar=False)


def test_transformers_settings_round_trip(tmp_path):
    config = FourMGenerationConfig(targets=[FourMTargetSchedule("caption")], do_sample=False, num_return_sequences=2,
                                   max_new_tokens=5)  # fmt: skip
    config.validate(strict=True)  # greedy with several sequences and top-k / top-p is coherent in 4M
    config.save_pretrained(tmp_path)
    loaded = FourMGenerationConfig.from_pretrained(tmp_path)
    assert (loaded.do_sample, loaded.num_return_sequences, loaded.max_new_tokens) == (False, 2, 5)


def test_generate_output_feeds_back_into_generate(setup):
    model, processor = setup
    first = model.generate(**processor(images=images(), targets=[DEPTH]), seed=0, progress_bar=False)
    second = model.generate(first, [FourMTargetSchedule("caption", temperature=0.0)], progress_bar=False)
    assert torch.equal(second[DEPTH]["tensor"], first[DEPTH]["tensor"]) and "caption" in second
