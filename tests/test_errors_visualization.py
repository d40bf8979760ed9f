"""Bad inputs to plot_modalities and the renderers: each raises a clear error naming the modality, the sample and the
expected value (never a KeyError: 0, an IndexError or PIL's own complaint)."""

import numpy as np
import pytest
import torch
from PIL import Image

from fourm_hf import ModalityFamily, register_family
from fourm_hf.data.serialization import HumanPose
from fourm_hf.evaluation.visualization import plot_modalities

RGB = np.zeros((2, 16, 16, 3), np.uint8)
DET = {"boxes": [(0.1, 0.2, 0.5, 0.6)], "labels": ["dog"]}


def wrong_size_renderer(value, background, size):
    return Image.new("RGB", (size + 1, size))


@pytest.mark.parametrize(
    "decoded, kwargs, error, message",
    [
        # the dict and its batches
        ([RGB], {}, TypeError, r"decoded must be a dict \{modality name: batch\}.*got list"),
        ({}, {}, ValueError, "Nothing to plot"),
        (
            {"det": DET},
            {},
            TypeError,
            r"decoded\['det'\] must be a batch .*got dict; wrap a single sample as \[sample\]",
        ),
        ({"caption": "a dog"}, {}, TypeError, r"decoded\['caption'\] must be a batch.*got str"),
        ({"caption": 5}, {}, TypeError, r"decoded\['caption'\] must be a batch.*got int"),
        ({"caption": []}, {}, ValueError, r"decoded\['caption'\] is an empty batch \(0 samples\)"),
        ({"rgb@224": RGB[:0]}, {}, ValueError, r"decoded\['rgb@224'\] is an empty batch"),
        (
            {"caption": ["a dog"]},
            {"sample": 1},
            ValueError,
            r"sample=1 is out of range: decoded\['caption'\] has 1 sample",
        ),
        ({"caption": ["a", "b"], "det": [DET]}, {"sample": 1}, ValueError, r"decoded\['det'\] has 1 sample"),
        # arguments
        ({"caption": ["a"]}, {"sample": -1}, ValueError, "sample must be >= 0, got -1"),
        ({"caption": ["a"]}, {"sample": 0.0}, TypeError, "sample must be an integer, got float"),
        ({"caption": ["a"]}, {"tile_size": 0}, ValueError, "tile_size must be >= 1, got 0"),
        ({"caption": ["a"]}, {"tile_size": -64}, ValueError, "tile_size must be >= 1, got -64"),
        ({"caption": ["a"]}, {"tile_size": 64.0}, TypeError, "tile_size must be an integer, got float"),
        ({"caption": ["a"]}, {"columns": 0}, ValueError, "columns must be >= 1, got 0"),
        ({"caption": ["a"]}, {"columns": "2"}, TypeError, "columns must be an integer, got str"),
        ({"caption": ["a"]}, {"save_path": 3}, TypeError, "save_path must be a file path, got int"),
        (
            {"caption": ["a"]},
            {"save_path": "/nonexistent/folder/grid.png"},
            FileNotFoundError,
            r"the folder '/nonexistent/folder' does not exist; create it first",
        ),
        # names
        ({"captoin": ["a"]}, {}, ValueError, r"Unknown modality family 'captoin'\. Did you mean 'caption'\?"),
        ({"t5_caption": [np.zeros((3, 8))]}, {}, ValueError, r"No renderer for modalities \['t5_caption'\]"),
        # values of the wrong type or shape for their renderer
        ({"caption": [5]}, {}, TypeError, r"decoded\['caption'\]\[0\] cannot be drawn: expected a string, got int 5"),
        (
            {"det": [{"boxes": [(0.1, 0.2, 0.5, 0.6)]}]},
            {},
            ValueError,
            r"decoded\['det'\]\[0\] cannot be drawn: expected a dict with 'boxes' and 'labels', got \['boxes'\]",
        ),
        ({"det": [{"boxes": [(0.1, 0.2, 0.5, 0.6)], "labels": []}]}, {}, ValueError, "got 1 boxes but 0 labels"),
        ({"det": [{"boxes": [(0.1, 0.2, 0.5)], "labels": ["dog"]}]}, {}, ValueError, r"box 0 must be 4 finite numbers"),
        ({"det": [{"boxes": [(0.1, np.nan, 0.5, 0.6)], "labels": ["dog"]}]}, {}, ValueError, "box 0 must be 4 finite"),
        (
            {"det": [{"boxes": [(0.1, 0.2, 0.5, 0.6)], "labels": [7]}]},
            {},
            TypeError,
            "label 0 must be a string, got int",
        ),
        ({"det": [{"boxes": "0 0 1 1", "labels": ["dog"]}]}, {}, TypeError, r"boxes must be a list of \(xmin"),
        ({"det": [[(0.1, 0.2, 0.5, 0.6)]]}, {}, ValueError, r"expected a dict with 'boxes' and 'labels', got list"),
        (
            {"rgb@224": [np.zeros((16, 16, 3), np.float32)]},
            {},
            ValueError,
            r"decoded\['rgb@224'\]\[0\] cannot be drawn: expected an image .*uint8 when it has channels.*float32",
        ),
        ({"rgb@224": [np.zeros((16, 16, 2), np.uint8)]}, {}, ValueError, r"expected an image of shape .*\(16, 16, 2\)"),
        ({"rgb@224": [np.zeros(16, np.uint8)]}, {}, ValueError, r"expected an image of shape.*got shape \(16,\)"),
        (
            {"rgb@224": [None]},
            {},
            TypeError,
            r"decoded\['rgb@224'\]\[0\] cannot be drawn: expected an image .*NoneType",
        ),
        ({"rgb@224": [np.zeros((16, 16, 3), bool)]}, {}, TypeError, "expected an image .*got dtype bool"),
        (
            {"tok_depth@224": [np.zeros((1, 16, 16))]},
            {},
            ValueError,
            r"expected a depth map of shape \(H, W\), got shape",
        ),
        (
            {"tok_depth@224": [np.zeros((0, 16))]},
            {},
            ValueError,
            r"expected a depth map of shape \(H, W\), got shape \(0, 16\)",
        ),
        ({"tok_semseg@224": [np.zeros((16, 16), np.float32)]}, {}, TypeError, "expected a class-id map .*float32"),
        ({"tok_clip@224": [np.zeros((16, 16))]}, {}, ValueError, r"expected a feature map of shape \(C, h, w\)"),
        ({"color_palette": [[(255, 0)]]}, {}, ValueError, r"colour 0 must be 3 values in \[0, 255\]"),
        ({"color_palette": [[(300, 0, 0)]]}, {}, ValueError, "colour 0 must be 3 values"),
        ({"color_palette": ["red"]}, {}, TypeError, r"expected a list of \(r, g, b\) colours, got str"),
        ({"metadata": [["brightness", 0.5]]}, {}, TypeError, "expected a dict of metadata fields, got list"),
        ({"human_poses": [[(0.1, 0.2, 0.3, 0.4)]]}, {}, TypeError, r"expected a list of HumanPose; item 0 \(tuple\)"),
        ({"sam_instance": [[DET]]}, {}, TypeError, "expected a list of SAM queries; item 0 .dict. has no"),
    ],
)
def test_plot_rejects(decoded, kwargs, error, message):
    with pytest.raises(error, match=message):
        plot_modalities(decoded, **kwargs)


def test_unknown_extension_and_wrong_tiles(tmp_path):
    with pytest.raises(ValueError, match=r"unknown image extension '\.pgnn'; use e\.g\. '\.png'"):
        plot_modalities({"caption": ["a"]}, save_path=tmp_path / "grid.pgnn")
    register_family(ModalityFamily("wrong_tiles", "sequence", render=wrong_size_renderer))
    with pytest.raises(ValueError, match=r"The renderer of 'wrong_tiles' must return a 64x64 tile, got 65x64"):
        plot_modalities({"wrong_tiles": ["a"]}, tile_size=64)


def test_valid_values_still_draw(tmp_path):
    """Tensors, (H, W, 1) images, the second sample, poses and empty detections all draw."""
    pose = HumanPose(
        box=(0.1, 0.1, 0.5, 0.9), pose_tokens=[0] * 8, global_orient=[0.0] * 9, betas=[0.0] * 10, camera=[0.0] * 3
    )
    decoded = {
        "rgb@224": torch.zeros(2, 16, 16, 3, dtype=torch.uint8),
        "tok_canny_edge@224": np.zeros((2, 16, 16, 1), np.uint8),
        "det": [DET, {"boxes": [], "labels": []}],
        "human_poses": [[], [pose]],
        "caption": ["a", "b"],
    }
    grid = plot_modalities(decoded, sample=1, tile_size=32, columns=2, save_path=tmp_path / "grid.png")
    assert grid.size == (64, 3 * (32 + 20))
