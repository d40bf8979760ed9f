"""FourMProcessor: modality-dict layout, round trips through tiny trained modality tokenizers, save/load, bad input."""

import numpy as np
import pytest
import torch

from fourm_hf import (
    FourMForMaskedModeling,
    FourMImageProcessor,
    FourMProcessor,
    FourMTokenizer,
    FourMVQVAE,
    FourMVQVAEConfig,
    ModalityFamily,
    register_modality,
)
from fourm_hf.data.sequences import mask_spans
from fourm_hf.data.serialization import boxes_to_text

CORPUS = ["a photo of a red car parked next to a tall tree.", "two dogs, playing with a ball on the beach"] * 5
# Tiny image-token modalities: 32x32 inputs, 8x8 patches -> 16 tokens, codebooks of 64.
register_modality("tok_rgb@32", "image_tokens", vocab_size=64, image_size=32, patch_size=8)
register_modality("tok_semseg@32", "image_tokens", vocab_size=64, image_size=32, patch_size=8)


@pytest.fixture(scope="module")
def tokenizer():
    return FourMTokenizer.train_new(CORPUS, vocab_size=4284 + 60)


@pytest.fixture(scope="module")
def image_processor():
    return FourMImageProcessor(image_size=32, patch_size=8)


def _tiny_vqvae(**kwargs) -> FourMVQVAE:
    torch.manual_seed(0)
    config = FourMVQVAEConfig(
        image_size=32, patch_size=8, encoder_hidden_size=64, encoder_num_layers=1, encoder_num_heads=2,
        decoder_hidden_size=64, decoder_num_layers=1, decoder_num_heads=2, codebook_size=64, latent_dim=16, **kwargs,
    )  # fmt: skip
    return FourMVQVAE(config).eval()


def _train(model: FourMVQVAE, batches, steps: int) -> FourMVQVAE:
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains fastest on one thread, and shares the CI cores better
    model.train()
    try:
        for step in range(steps):
            loss = model(batches(step)).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _two_tone_images(seed: int, n: int) -> np.ndarray:
    """uint8 (n, 32, 32, 3) images: a random colour left of a random column, another right of it."""
    rng = np.random.default_rng(seed)
    colors = rng.integers(0, 256, (n, 2, 3))
    left = np.arange(32)[None, :] < rng.integers(4, 28, n)[:, None]  # (n, 32)
    images = np.where(left[:, None, :, None], colors[:, None, None, 0], colors[:, None, None, 1])
    return np.broadcast_to(images, (n, 32, 32, 3)).astype(np.uint8)


def _label_maps(seed: int, n: int) -> np.ndarray:
    """Raw COCO-style label maps (n, 32, 32): background 3, a random rectangle of class 7 or 20, a void border."""
    rng = np.random.default_rng(seed)
    maps = np.full((n, 32, 32), 3, np.int64)
    for m in maps:
        y, x = rng.integers(0, 20, 2)
        m[y : y + 12, x : x + 12] = rng.choice([7, 20])
        m[:, :2] = 255
    return maps


@pytest.fixture(scope="module")
def rgb_tokenizers(image_processor):
    """An untrained and a trained RGB VQ-VAE (150 steps on two-tone images, about 5 s)."""
    untrained = _tiny_vqvae()
    trained = _train(
        _tiny_vqvae(),
        lambda step: torch.from_numpy(image_processor.preprocess_rgb(list(_two_tone_images(step, 32)), "tokenizer")),
        steps=150,
    )
    return untrained, trained


@pytest.fixture(scope="module")
def semseg_tokenizers(image_processor):
    kwargs = {"num_classes": 134, "num_channels": 8, "reconstruction_loss": "cross_entropy"}
    untrained = _tiny_vqvae(**kwargs)
    trained = _train(
        _tiny_vqvae(**kwargs),
        lambda step: torch.from_numpy(image_processor.preprocess_semseg(list(_label_maps(step, 32)))),
        steps=100,
    )
    return untrained, trained


# --- layout ------------------------------------------------------------------------------------------------------------


def test_sequence_inputs_and_empty_targets(tokenizer, image_processor):
    processor = FourMProcessor(image_processor, tokenizer)
    det = {"boxes": [(0.1, 0.2, 0.5, 0.6), (0.0, 0.0, 0.2, 0.2)], "labels": ["dog", "sports ball"]}
    batch = processor(
        text=["two dogs", "a red car on the beach"],
        inputs={"det": [det, "v0=1 v1=2 v2=3 v3=4 cat"]},
        targets=["tok_rgb@32", "metadata"],
    )
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    first, second = (tokenizer(t).input_ids + [eos] for t in ("two dogs", "a red car on the beach"))
    caption = batch["caption"]
    assert caption["tensor"].tolist() == [first + [pad] * (len(second) - len(first)), second]
    assert caption["input_mask"].tolist() == [
        [False] * len(first) + [True] * (len(second) - len(first)),
        [False] * len(second),
    ]
    assert caption["target_mask"].all() and not caption["decoder_attention_mask"].any()
    det_ids = tokenizer(boxes_to_text(det["boxes"], det["labels"])).input_ids + [eos]
    assert batch["det"]["tensor"][0, : len(det_ids)].tolist() == det_ids
    assert det_ids[:5] == tokenizer.convert_tokens_to_ids(["v0=0", "v1=0", "v2=200", "v3=200", "sports ball"])

    image_target = batch["tok_rgb@32"]
    assert image_target["tensor"].shape == (2, 16) and not image_target["tensor"].any()
    assert image_target["input_mask"].all() and not image_target["target_mask"].any()
    text_target = batch["metadata"]
    s1, s2 = tokenizer.sentinel_id(1), tokenizer.sentinel_id(2)
    assert text_target["tensor"][0].tolist() == [s1, s1] + [pad] * 37 + [s2]
    assert text_target["input_mask"][0].tolist() == [False] + [True] * 39
    assert torch.equal(text_target["target_mask"], ~text_target["input_mask"])
    assert text_target["decoder_attention_mask"][0].tolist() == [0] + [1] * 39


def test_long_sequences_are_truncated_and_keep_eos(tokenizer, image_processor):
    processor = FourMProcessor(image_processor, tokenizer)
    caption = processor(text=" ".join(["dogs"] * 300))["caption"]
    assert caption["tensor"].shape == (1, 256) and caption["tensor"][0, -1] == tokenizer.eos_token_id
    assert not caption["input_mask"].any()


def test_processor_output_runs_through_the_model(tokenizer, tiny_config):
    processor = FourMProcessor(FourMImageProcessor(), tokenizer)
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    batch = processor(images=[image, image], text=["a dog", "two red cars"], targets=["tok_depth@224"])
    assert batch["rgb@224"]["tensor"].shape == (2, 3, 224, 224)
    model = FourMForMaskedModeling(tiny_config).eval()
    with torch.no_grad():
        output = model(batch, num_encoder_tokens=256, num_decoder_tokens=196, return_logits=True)
    assert output.logits["tok_depth@224"].shape == (2 * 196, 8192)
    assert torch.isfinite(output.loss)


# --- decoding ----------------------------------------------------------------------------------------------------------


def test_sequence_round_trips(tokenizer, image_processor):
    processor = FourMProcessor(image_processor, tokenizer)
    inputs = {
        "caption": ["A red car, next to a tree.", "two dogs"],
        "det": [{"boxes": [(0.1, 0.2, 0.5, 0.6)], "labels": ["dining table"]}, {"boxes": [], "labels": []}],
        "metadata": [{"original_width": 640, "n_humans": 2}, {"brightness": 255.0}],
        "color_palette": [[(10, 20, 30)], [(0, 0, 0), (255, 255, 255)]],
    }
    decoded = processor.postprocess(processor(inputs=inputs))
    assert decoded["caption"] == ["a red car, next to a tree.", "two dogs"]
    assert decoded["det"][0]["labels"] == ["dining table"] and decoded["det"][1] == {"boxes": [], "labels": []}
    np.testing.assert_allclose(decoded["det"][0]["boxes"][0], (100 / 999, 200 / 999, 500 / 999, 599 / 999))
    assert decoded["metadata"] == [{"original_width": 640, "n_humans": 2}, {"brightness": 255.0}]
    assert decoded["color_palette"] == inputs["color_palette"]


def test_boxes_use_the_tokenizers_value_bins(image_processor):
    """A tokenizer trained with 64 coordinate bins (not the released 1,000): boxes are written and read in its bins."""
    tokenizer = FourMTokenizer.train_new(CORPUS, vocab_size=300, num_sentinels=8, num_value_bins=64, object_classes=())
    processor = FourMProcessor(image_processor, tokenizer)
    det = {"boxes": [(0.1, 0.2, 0.5, 1.0)], "labels": ["car"]}
    batch = processor(inputs={"det": [det]})
    ids = batch["det"]["tensor"][0, :4].tolist()
    assert tokenizer.convert_ids_to_tokens(ids) == ["v0=6", "v1=13", "v2=32", "v3=63"]  # round(c * 63)
    decoded = processor.postprocess(batch)["det"][0]
    assert decoded["labels"] == ["car"]
    np.testing.assert_allclose(decoded["boxes"][0], (6 / 63, 13 / 63, 32 / 63, 1.0))


def test_builtin_serialisers_of_a_registered_family_work(tokenizer, image_processor):
    """A family may serialise and parse with builtins (no signature to inspect for value bins)."""
    family = ModalityFamily("tags", "sequence", serialize=str, parse=str)
    register_modality("tags", family=family, vocab_size=len(tokenizer), max_length=16, max_tokens=16)
    processor = FourMProcessor(image_processor, tokenizer)
    assert processor.postprocess(processor(inputs={"tags": ["two dogs"]}))["tags"] == ["two dogs"]


def test_span_masked_sequences_are_merged(tokenizer, image_processor):
    processor = FourMProcessor(image_processor, tokenizer)
    ids = tokenizer("a dog on grass").input_ids + [tokenizer.eos_token_id]
    keep = [i % 3 == 0 for i in range(len(ids) - 1)] + [False]  # several spans, [EOS] hidden
    visible, target = mask_spans(ids, keep, tokenizer.sentinel_id)
    assert len(visible) < len(ids)
    tensor = torch.tensor([visible + [tokenizer.pad_token_id] + target])
    input_mask = torch.tensor([[False] * len(visible) + [True] * (1 + len(target))])
    target_mask = torch.tensor([[True] * (len(visible) + 1) + [False] * len(target)])
    entry = {"tensor": tensor, "input_mask": input_mask, "target_mask": target_mask}
    assert processor.postprocess({"caption": entry}) == {"caption": ["a dog on grass"]}


def _pixel_error(processor, name, images):
    batch = processor(inputs={name: list(images)})
    assert batch[name]["tensor"].shape == (len(images), 16)
    decoded = processor.postprocess(batch)[name]
    return float(np.abs(decoded.astype(np.float64) - images).mean() / 255)


def test_rgb_round_trip_improves_with_training(tokenizer, image_processor, rgb_tokenizers):
    images = _two_tone_images(seed=1000, n=16)
    untrained, trained = (
        _pixel_error(FourMProcessor(image_processor, tokenizer, vq_models={"tok_rgb@32": m}), "tok_rgb@32", images)
        for m in rgb_tokenizers
    )
    # measured: 0.36 untrained, 0.09 trained (mean absolute error on the [0, 1] scale)
    assert trained < 0.15 and trained < untrained / 2.5, (untrained, trained)


def test_semseg_round_trip_improves_with_training(tokenizer, image_processor, semseg_tokenizers):
    maps = _label_maps(seed=1000, n=16)
    accuracies = []
    for model in semseg_tokenizers:
        processor = FourMProcessor(image_processor, tokenizer, vq_models={"tok_semseg@32": model})
        decoded = processor.postprocess(processor(inputs={"tok_semseg@32": maps}))["tok_semseg@32"]
        assert decoded.shape == maps.shape and set(np.unique(decoded)) <= set(range(133)) | {255}
        accuracies.append(float((decoded == maps).mean()))
    untrained, trained = accuracies
    # measured: 0.00 untrained, 0.86 trained (pixel accuracy)
    assert trained > 0.75 and trained > untrained + 0.5, accuracies


# --- saving and loading ------------------------------------------------------------------------------------------------


def test_save_and_load_with_modality_tokenizers(
    tokenizer, image_processor, rgb_tokenizers, semseg_tokenizers, tmp_path
):
    from transformers import AutoProcessor

    vq_models = {"tok_rgb@32": rgb_tokenizers[1], "tok_semseg@32": semseg_tokenizers[1]}
    processor = FourMProcessor(image_processor, tokenizer, vq_models=vq_models)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "tok_rgb@32" / "model.safetensors").exists()
    inputs = {
        "tok_rgb@32": list(_two_tone_images(5, 2)),
        "tok_semseg@32": _label_maps(5, 2),
        "caption": ["a dog", "a cat"],
    }
    expected = processor(inputs=inputs)
    for cls in (FourMProcessor, AutoProcessor):
        loaded = cls.from_pretrained(tmp_path)
        assert isinstance(loaded, FourMProcessor) and sorted(loaded.vq_models) == sorted(vq_models)
        assert isinstance(loaded.tokenizer, FourMTokenizer) and isinstance(loaded.image_processor, FourMImageProcessor)
        got = loaded(inputs=inputs)
        for name in inputs:
            assert torch.equal(got[name]["tensor"], expected[name]["tensor"]), name


# --- bad input ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "inputs, error, message",
    [
        ({"tok_rgb@32": torch.full((1, 16), 64)}, ValueError, r"tok_rgb@32 token ids must lie in \[0, 64\)"),
        ({"tok_semseg@32": np.zeros((1, 32, 32), np.int64)}, ValueError, r"tok_semseg@32: no VQ model"),
        ({"tok_rgb@32": np.zeros((1, 32, 32, 4), np.uint8)}, ValueError, "expected an image with 3 channel"),
        ({"tok_rgb@32": np.zeros((4, 4, 3), np.uint8)}, ValueError, "smaller than one 8x8 patch"),
        ({"tok_semseg@32": np.full((1, 32, 32), 150)}, ValueError, r"semseg: labels must be in \[0, 133\)"),
        ({"det": {"boxes": [(0.1, 0.2, 1.5, 0.3)], "labels": ["dog"]}}, ValueError, r"det box 0.*\[0, 1\]"),
        ({"det": {"boxes": [(0.1, 0.2, 0.5, 0.3)]}}, ValueError, "det: a sample is a dict with 'boxes' and 'labels'"),
        ({"caption": ["a", "b"], "det": "v0=1 v1=1 v2=2 v3=2 dog"}, ValueError, "same batch size"),
        ({"tok_rgb@999": torch.zeros(1, 16)}, ValueError, "Unknown modality 'tok_rgb@999'"),
    ],
)
def test_bad_input(tokenizer, image_processor, rgb_tokenizers, inputs, error, message):
    processor = FourMProcessor(image_processor, tokenizer, vq_models={"tok_rgb@32": rgb_tokenizers[0]})
    with pytest.raises(error, match=message):
        processor(inputs=inputs)


def test_bad_output_and_targets(tokenizer, image_processor, rgb_tokenizers):
    processor = FourMProcessor(image_processor, tokenizer, vq_models={"tok_rgb@32": rgb_tokenizers[0]})
    with pytest.raises(ValueError, match=r"tok_rgb@32 token ids must lie in \[0, 64\)"):
        processor.postprocess({"tok_rgb@32": torch.full((1, 16), 99)})
    with pytest.raises(ValueError, match="cannot be a target"):
        processor(text="a dog", targets=["rgb@224"])
    with pytest.raises(ValueError, match="both an input and a target"):
        processor(text="a dog", targets=["caption"])
    with pytest.raises(ValueError, match="at least one input modality or `batch_size`"):
        processor(targets=["caption"])
    assert processor(targets=["caption"], batch_size=3)["caption"]["tensor"].shape == (3, 256)
    with pytest.raises(ValueError, match="only image-token modalities"):
        FourMProcessor(image_processor, tokenizer, vq_models={"caption": rgb_tokenizers[0]})


def test_diffusion_tokenizer_decoding_takes_sampler_arguments(tokenizer, image_processor):
    from fourm_hf import FourMDiVAE, FourMDiVAEConfig

    torch.manual_seed(0)
    config = FourMDiVAEConfig(
        image_size=32, patch_size=8, encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2,
        codebook_size=16, latent_dim=8, unet_channels=16, unet_channel_mult=(1, 2), unet_num_res_blocks=1,
        unet_attention_resolutions=(2,), unet_norm_groups=8,
    )  # fmt: skip
    divae = FourMDiVAE(config).eval()
    processor = FourMProcessor(image_processor, tokenizer, vq_models={"tok_rgb@32": divae})
    batch = processor(inputs={"tok_rgb@32": list(_two_tone_images(3, 2))})
    images = processor.postprocess(batch, num_steps=2, generator=torch.Generator().manual_seed(0))["tok_rgb@32"]
    with torch.no_grad():
        direct = divae.decode(
            batch["tok_rgb@32"]["tensor"].reshape(2, 4, 4), num_steps=2, generator=torch.Generator().manual_seed(0)
        )
    assert images.shape == (2, 32, 32, 3)
    assert np.array_equal(images, image_processor.postprocess_rgb(direct, "tokenizer"))
