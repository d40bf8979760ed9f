"""FourMImageProcessor: the official normalisation constants per modality, crops, inverses and bad input."""

import numpy as np
import pytest
import torch
from PIL import Image

from fourm_hf import FourMImageProcessor


@pytest.fixture
def processor():
    return FourMImageProcessor()


def test_rgb_normalisations(processor):
    image = np.zeros((224, 224, 3), np.uint8)
    image[...] = (255, 0, 128)
    imagenet = processor.preprocess_rgb(image)
    assert imagenet.shape == (1, 3, 224, 224) and imagenet.dtype == np.float32
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    np.testing.assert_allclose(imagenet[0, :, 100, 100], expected, rtol=1e-6)
    tokenizer = processor.preprocess_rgb(Image.fromarray(image), normalization="tokenizer")
    np.testing.assert_allclose(tokenizer[0, :, 0, 0], [1.0, -1.0, 128 / 127.5 - 1], atol=1e-6)
    floats = processor.preprocess_rgb(image.astype(np.float32) / 255, normalization="tokenizer")
    np.testing.assert_allclose(floats, tokenizer, atol=1e-6)
    # the standard entry point gives the 4M pixel input, as torch tensors on request
    pixel_values = processor(image, return_tensors="pt")["pixel_values"]
    assert isinstance(pixel_values, torch.Tensor) and torch.allclose(pixel_values, torch.from_numpy(imagenet))


def test_center_crop_then_resize(processor):
    # 100 x 300 image: columns 0-99 and 200-299 are white, the central square is black
    image = np.full((100, 300, 3), 255, np.uint8)
    image[:, 100:200] = 0
    out = processor.preprocess_rgb(image, normalization="tokenizer", size=32)
    assert out.shape == (1, 3, 32, 32)
    np.testing.assert_allclose(out, -1.0)  # only the black centre survives
    squashed = FourMImageProcessor(do_center_crop=False).preprocess_rgb(image, normalization="tokenizer", size=32)
    assert squashed[0, 0, 16, 0] == pytest.approx(1.0) and squashed[0, 0, 16, 16] == pytest.approx(-1.0)


def test_rgb_round_trip(processor):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    for normalization in ("imagenet", "tokenizer"):
        back = processor.postprocess_rgb(processor.preprocess_rgb(list(images), normalization), normalization)
        assert back.dtype == np.uint8 and np.array_equal(back, images)


def test_truncated_depth_standardisation(processor):
    rng = np.random.default_rng(0)
    depth = rng.integers(0, 65535, (224, 224), dtype=np.uint16)
    depth[:5] = 65535  # outliers that the truncation must ignore
    out = processor.preprocess_depth(depth)
    assert out.shape == (1, 1, 224, 224)
    # reference: the official recipe in torch (values / 65535, sort, drop 10% each side, unbiased variance)
    values = torch.from_numpy(depth.astype(np.float64) / 65535.0)
    kept = torch.sort(values.reshape(-1))[0][int(0.1 * values.numel()) : int(0.9 * values.numel())]
    expected = (values - kept.mean()) / torch.sqrt(kept.var() + 1e-6)
    np.testing.assert_allclose(out[0, 0], expected.numpy(), atol=1e-5)
    # float maps are not rescaled, and standardisation removes the scale
    metres = processor.preprocess_depth(torch.from_numpy(depth.astype(np.float32) / 65535.0 * 10.0))
    np.testing.assert_allclose(metres, out, atol=1e-3)


def test_normals_and_edges(processor):
    normals = np.zeros((224, 224, 3), np.uint8)
    normals[...] = (0, 255, 51)
    out = processor.preprocess_normals(normals)
    np.testing.assert_allclose(out[0, :, 3, 3], [-1.0, 1.0, 51 / 127.5 - 1], atol=1e-6)
    assert np.array_equal(processor.postprocess_signed(out)[0, 3, 3], [0, 255, 51])
    edges = processor.preprocess_edges(Image.fromarray(np.full((64, 64), 255, np.uint8)), size=32)
    assert edges.shape == (1, 1, 32, 32) and np.allclose(edges, 1.0)


def test_semseg_void_shift(processor):
    labels = np.zeros((224, 224), np.int64)
    labels[:, :100] = 255  # void
    labels[:, 100:] = 132  # the last COCO panoptic class
    out = processor.preprocess_semseg(labels)
    assert out.dtype == np.int64 and out.shape == (1, 224, 224)
    assert set(np.unique(out[0, :, :100])) == {0} and set(np.unique(out[0, :, 100:])) == {133}
    assert np.array_equal(processor.postprocess_semseg(out)[0], labels)
    small = processor.preprocess_semseg(labels, size=32)  # nearest: no new labels appear
    assert set(np.unique(small)) == {0, 133}
    assert np.array_equal(processor.preprocess_semseg(out, shifted=True), out)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda p: p.preprocess_rgb(np.zeros((64, 64, 4), np.uint8)), ValueError, r"rgb: expected an image with 3"),
        (lambda p: p.preprocess_rgb(np.full((64, 64, 3), 2.0)), ValueError, r"float images must be in \[0, 1\]"),
        (lambda p: p.preprocess_depth(np.zeros((1, 64, 64, 3))), ValueError, "depth: expected an image with 1"),
        (lambda p: p.preprocess_semseg(np.full((64, 64), 140)), ValueError, r"labels must be in \[0, 133\)"),
        (lambda p: p.preprocess_semseg(np.zeros((64, 64), np.float32)), TypeError, "integer class ids"),
        (lambda p: p.preprocess_rgb(np.zeros((8, 8, 3), np.uint8)), ValueError, "smaller than one 16x16 patch"),
        (lambda p: p.preprocess_rgb(np.zeros((64, 64, 3), np.uint8), size=40), ValueError, "multiple of the patch"),
        (lambda p: p.preprocess_normals(np.full((64, 64, 3), 3.0)), ValueError, r"normal: float inputs"),
        (lambda p: p.preprocess_features(np.zeros((2, 768, 16, 16)), 512), ValueError, r"\(B, 512, h, w\)"),
    ],
)
def test_bad_input(processor, call, error, message):
    with pytest.raises(error, match=message):
        call(processor)


def test_save_and_load(tmp_path):
    from transformers import AutoImageProcessor

    processor = FourMImageProcessor(image_size=448, depth_truncation=0.2)
    processor.save_pretrained(tmp_path)
    for cls in (FourMImageProcessor, AutoImageProcessor):
        loaded = cls.from_pretrained(tmp_path)
        assert isinstance(loaded, FourMImageProcessor)
        assert loaded.image_size == 448 and loaded.depth_truncation == 0.2 and loaded.to_dict() == processor.to_dict()
