"""Bad inputs to FourMImageProcessor: each raises a clear error naming the modality, the image and the expectation."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fourm_hf import FourMImageProcessor

RGB = np.zeros((32, 32, 3), np.uint8)
GREY = np.zeros((32, 32), np.uint8)


@pytest.fixture
def processor():
    return FourMImageProcessor()


def with_nan(shape):
    array = np.zeros(shape, np.float32)
    array.flat[0] = np.nan
    return array


@pytest.mark.parametrize(
    "call, error, message",
    [
        # empty batches
        (lambda p: p.preprocess_rgb([]), ValueError, r"rgb: got an empty batch \(0 images\)"),
        (lambda p: p.preprocess_rgb(np.zeros((0, 32, 32, 3), np.uint8)), ValueError, "rgb: got an empty batch"),
        (lambda p: p.preprocess_depth([]), ValueError, "depth: got an empty batch"),
        (lambda p: p.preprocess_semseg(np.zeros((0, 32, 32), np.uint8)), ValueError, "semseg: got an empty batch"),
        (lambda p: p.preprocess_normals(()), ValueError, "normal: got an empty batch"),
        (lambda p: p.preprocess_edges([]), ValueError, "edge: got an empty batch"),
        (lambda p: p.preprocess_features(np.zeros((0, 8, 2, 2))), ValueError, r"features: got an empty batch"),
        (lambda p: p([]), ValueError, "rgb: got an empty batch"),
        # not images
        (lambda p: p.preprocess_rgb([RGB, None]), TypeError, "rgb: image 1 of the batch is NoneType"),
        (lambda p: p.preprocess_rgb("photo.png"), TypeError, r"rgb: image 0 of the batch is str; load it first"),
        (lambda p: p.preprocess_depth(Path("depth.png")), TypeError, "depth: image 0 of the batch is PosixPath"),
        (
            lambda p: p.preprocess_features(None),
            TypeError,
            "features: expected a feature map array or tensor, got NoneType",
        ),
        # channels
        (
            lambda p: p.preprocess_rgb(np.zeros((32, 32, 4), np.uint8)),
            ValueError,
            r"rgb: expected an image with 3 channel.*\(32, 32, 4\) \(drop the alpha channel",
        ),
        (
            lambda p: p.preprocess_rgb(np.zeros((32, 32, 2), np.uint8)),
            ValueError,
            r"rgb: expected an image with 3 .*\(32, 32, 2\)",
        ),
        (
            lambda p: p.preprocess_rgb(np.zeros((32, 32, 0), np.uint8)),
            ValueError,
            r"rgb: expected an image with 3 .*\(32, 32, 0\)",
        ),
        (lambda p: p.preprocess_rgb(GREY), ValueError, r"rgb: expected an image with 3 channel.*\(32, 32, 1\)"),
        (
            lambda p: p.preprocess_normals(np.zeros((32, 32, 4), np.uint8)),
            ValueError,
            "normal: expected an image with 3",
        ),
        (
            lambda p: p.preprocess_edges(np.zeros((1, 32, 32, 3), np.uint8)),
            ValueError,
            "edge: expected an image with 1",
        ),
        # dimensions
        (lambda p: p.preprocess_rgb(np.zeros(32, np.uint8)), ValueError, r"rgb: expected an image .*got shape \(32,\)"),
        (lambda p: p.preprocess_rgb(np.uint8(3)), ValueError, r"rgb: expected an image .*got shape \(\)"),
        (lambda p: p.preprocess_depth(np.zeros((2, 1, 32, 32, 1))), ValueError, "depth: expected an image with 1"),
        (
            lambda p: p.preprocess_rgb(np.zeros((0, 32, 3), np.uint8)),
            ValueError,
            r"rgb: image 0 is empty: shape \(0, 32, 3\)",
        ),
        (lambda p: p.preprocess_depth(np.zeros((8, 64), np.float32)), ValueError, "depth: image of 8x64 is smaller"),
        # dtypes
        (lambda p: p.preprocess_rgb(np.ones((32, 32, 3), bool)), TypeError, "rgb: image 0 has dtype bool"),
        (lambda p: p.preprocess_rgb(np.ones((32, 32, 3), complex)), TypeError, "rgb: image 0 has dtype complex128"),
        (lambda p: p.preprocess_rgb(np.full((32, 32, 3), "a", object)), TypeError, "rgb: image 0 has dtype object"),
        (lambda p: p.preprocess_depth(np.ones((32, 32), bool)), TypeError, "depth: image 0 has dtype bool"),
        (lambda p: p.preprocess_edges(np.ones((32, 32), np.complex64)), TypeError, "edge: image 0 has dtype complex64"),
        (lambda p: p.preprocess_semseg(np.ones((32, 32), bool)), TypeError, "semseg: image 0 has dtype bool"),
        (
            lambda p: p.preprocess_semseg(np.zeros((32, 32), np.float32)),
            TypeError,
            r"integer class ids.*\.astype\(np.int64\)",
        ),
        (
            lambda p: p.preprocess_features(np.zeros((1, 8, 2, 2), bool)),
            TypeError,
            "features: expected float values, got dtype bool",
        ),
        # values
        (
            lambda p: p.preprocess_rgb(np.full((32, 32, 3), 2.0)),
            ValueError,
            r"rgb: float images must be in \[0, 1\], image 0 \(float64\) has values in \[2, 2\]",
        ),
        (
            lambda p: p.preprocess_rgb(np.full((32, 32, 3), 200, np.int64)),
            ValueError,
            r"\(int64\).*pass uint8 for 0-255",
        ),
        (lambda p: p.preprocess_rgb(torch.full((3, 32, 32), -0.5)), ValueError, r"float images must be in \[0, 1\]"),
        (
            lambda p: p.preprocess_rgb([RGB, with_nan((32, 32, 3))]),
            ValueError,
            "rgb: image 1 has 1 NaN or infinite values",
        ),
        (lambda p: p.preprocess_depth(with_nan((32, 32))), ValueError, r"depth: image 0 has 1 NaN.*np.nan_to_num"),
        (
            lambda p: p.preprocess_normals(np.full((32, 32, 3), np.inf, np.float32)),
            ValueError,
            "normal: image 0 has 3072 NaN",
        ),
        (lambda p: p.preprocess_edges(np.full((32, 32), -3.0)), ValueError, r"edge: float inputs must be in \[-1, 1\]"),
        (lambda p: p.preprocess_features(with_nan((1, 8, 2, 2))), ValueError, "features: 1 NaN or infinite values"),
        (
            lambda p: p.preprocess_semseg(np.full((32, 32), -1)),
            ValueError,
            r"semseg: labels must be in \[0, 133\).*\[-1\]",
        ),
        (
            lambda p: p.preprocess_semseg(np.full((32, 32), 134), shifted=True),
            ValueError,
            r"labels must be in \[0, 134\), got \[134\]",
        ),
        (lambda p: p.preprocess_semseg(GREY, shifted="no"), TypeError, "semseg: shifted must be True or False"),
        # sizes
        (lambda p: p.preprocess_rgb(RGB, size=40), ValueError, "rgb: size 40 is not a multiple of the patch size 16"),
        (lambda p: p.preprocess_rgb(RGB, size=-32), ValueError, "rgb: size must be >= 1, got -32"),
        (lambda p: p.preprocess_rgb(RGB, size=0), ValueError, "rgb: size must be >= 1, got 0"),
        (lambda p: p.preprocess_depth(GREY, size=224.0), TypeError, "depth: size must be an integer, got float 224.0"),
        (lambda p: p.preprocess_semseg(GREY, size="32"), TypeError, "semseg: size must be an integer, got str"),
        (lambda p: p.crop_and_resize(RGB, 0, 3, "rgb"), ValueError, "rgb: size must be >= 1, got 0"),
        (
            lambda p: p.crop_and_resize(RGB[..., 0], 32, 3, "edges"),
            ValueError,
            r"edges: crop_and_resize takes .*\(H, W, C\), got \(32, 32\)",
        ),
        # normalisation names
        (
            lambda p: p.preprocess_rgb(RGB, normalization="imagnet"),
            ValueError,
            r"rgb: normalization must be one of \['imagenet', 'tokenizer'\], got 'imagnet'\. Did you mean 'imagenet'\?",
        ),
        (
            lambda p: p.postprocess_rgb(np.zeros((1, 3, 4, 4)), normalization="tokeniser"),
            ValueError,
            "Did you mean 'tokenizer'",
        ),
        # back to images
        (lambda p: p.postprocess_rgb(np.zeros((0, 3, 4, 4))), ValueError, r"rgb: pixel_values is empty"),
        (lambda p: p.postprocess_rgb(np.full((1, 3, 4, 4), "x")), TypeError, "rgb: pixel_values has dtype <U1"),
        (lambda p: p.postprocess_signed(np.full((1, 3, 4, 4), np.nan)), ValueError, "values has 48 NaN or infinite"),
        (
            lambda p: p.postprocess_rgb(np.zeros((3, 4, 4))),
            ValueError,
            r"rgb: expected \(B, 3, H, W\), got \(3, 4, 4\)",
        ),
        (
            lambda p: p.postprocess_signed(np.zeros((4, 4))),
            ValueError,
            r"postprocess_signed: expected values of shape \(B, C, H, W\)",
        ),
        (
            lambda p: p.postprocess_semseg(np.zeros((1, 4, 4), np.float32)),
            ValueError,
            r"semseg: expected integer class ids of shape \(B, H, W\)",
        ),
        (
            lambda p: p.postprocess_semseg(np.zeros((4, 4), np.int64)),
            ValueError,
            r"semseg: expected integer class ids .*\(4, 4\)",
        ),
    ],
)
def test_bad_images(processor, call, error, message):
    with pytest.raises(error, match=message):
        call(processor)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"image_size": 224.0}, TypeError, "image_size must be an integer, got float 224.0"),
        ({"image_size": 0}, ValueError, "image_size must be >= 1, got 0"),
        ({"patch_size": -16}, ValueError, "patch_size must be >= 1, got -16"),
        ({"patch_size": True}, TypeError, "patch_size must be an integer, got bool"),
        ({"resample": "bicubic"}, ValueError, r"resample must be a PILImageResampling \(NEAREST=0.*got 'bicubic'"),
        ({"resample": 17}, ValueError, "resample must be a PILImageResampling"),
        ({"do_center_crop": "yes"}, TypeError, "do_center_crop must be True or False, got str"),
        ({"image_mean": (0.5, 0.5)}, ValueError, r"image_mean must be 3 numbers \(one per RGB channel\)"),
        ({"image_std": (0.5, 0.0, 0.5)}, ValueError, "image_std must be > 0, got 0.0"),
        ({"image_std": "0.5"}, ValueError, "image_std must be 3 numbers"),
        ({"depth_scale": 0}, ValueError, "depth_scale must be > 0, got 0"),
        ({"depth_truncation": 0.5}, ValueError, r"depth_truncation must be in \[0, 0.5\), got 0.5"),
        ({"depth_epsilon": float("nan")}, ValueError, "depth_epsilon must be a finite number"),
        ({"num_semseg_classes": 0}, ValueError, "num_semseg_classes must be >= 1, got 0"),
        ({"semseg_void_label": 255.0}, TypeError, "semseg_void_label must be an integer, got float"),
        ({"imgae_size": 448}, TypeError, r"unknown argument 'imgae_size'\. Did you mean 'image_size'\?"),
        ({"size": 448}, TypeError, r"unknown argument 'size'\. Did you mean 'image_size'\?"),
        ({"num_classes": 150}, TypeError, r"unknown argument 'num_classes'\. Did you mean 'num_semseg_classes'\?"),
    ],
)
def test_bad_settings(kwargs, error, message):
    with pytest.raises(error, match=message):
        FourMImageProcessor(**kwargs)


def test_valid_inputs_still_work(processor):
    """The checks let every documented input through: PIL (RGBA converted), uint8 and float arrays, tensors,
    integer depth, single-channel batches, and the saved processor reloads."""
    rgba = Image.fromarray(np.zeros((32, 32, 4), np.uint8))
    assert processor.preprocess_rgb([rgba, RGB, torch.rand(3, 32, 32)], size=32).shape == (3, 3, 32, 32)
    assert processor.preprocess_rgb(torch.rand(3, 32, 32, dtype=torch.bfloat16), size=32).dtype == np.float32
    assert processor.preprocess_depth(np.full((2, 32, 32), 1000, np.uint16), size=32).shape == (2, 1, 32, 32)
    assert processor.preprocess_semseg(np.full((32, 32), 255, np.uint8), size=32).max() == 0
    assert processor.preprocess_edges(GREY, size=32).shape == (1, 1, 32, 32)
    assert processor.preprocess_features(np.zeros((8, 2, 2), np.float16)).dtype == np.float32
    reloaded = FourMImageProcessor.from_dict(processor.to_dict())
    assert reloaded.to_dict() == processor.to_dict()
