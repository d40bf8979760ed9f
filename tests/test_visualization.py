"""plot_modalities: grid layout, colour maps, boxes drawn on the RGB image, errors."""

import numpy as np
import pytest
from PIL import Image

from fourm_hf.evaluation.rendering import DEPTH_COLORS, SEMSEG_PALETTE, colorize_depth, pca_rgb
from fourm_hf.evaluation.visualization import plot_modalities

TILE, TITLE = 224, 20


@pytest.fixture
def decoded():
    image = np.zeros((1, TILE, TILE, 3), np.uint8)
    image[0, :, :112] = (200, 180, 150)
    depth = np.add.outer(np.arange(TILE), np.arange(TILE))[None].astype(np.float32)
    semseg = np.full((1, TILE, TILE), 3)
    semseg[0, :, :10] = 255
    return {
        "rgb@224": image,
        "tok_depth@224": depth,
        "tok_semseg@224": semseg,
        "det": [{"boxes": [(0.1, 0.2, 0.5, 0.6)], "labels": ["dog"]}],
        "caption": ["a dog"],
        "color_palette": [[(255, 0, 0), (0, 0, 255)]],
    }


def _tile(grid: Image.Image, index: int, columns: int = 4) -> np.ndarray:
    left, top = (index % columns) * TILE, (index // columns) * (TILE + TITLE) + TITLE
    return np.asarray(grid)[top : top + TILE, left : left + TILE]


def test_grid_tiles(decoded, tmp_path):
    grid = plot_modalities(decoded, save_path=tmp_path / "grid.png")
    assert grid.size == (4 * TILE, 2 * (TILE + TITLE))
    assert Image.open(tmp_path / "grid.png").size == grid.size
    rgb, depth, semseg, det, _, palette = (_tile(grid, i) for i in range(6))
    assert np.array_equal(rgb, decoded["rgb@224"][0])
    # depth: nearest = first colour-map anchor, farthest = last
    assert np.array_equal(depth[0, 0], DEPTH_COLORS[0]) and np.array_equal(depth[-1, -1], DEPTH_COLORS[-1])
    # segmentation: one palette colour per class, void black
    assert np.array_equal(semseg[5, 100], SEMSEG_PALETTE[3]) and not semseg[5, 5].any()
    # det: a red frame on the RGB image (right edge at x = 0.5 * 223, mid-height), the image elsewhere
    assert tuple(det[int(0.4 * 223), int(0.5 * 223)]) == (255, 0, 0)
    assert tuple(det[200, 20]) == (200, 180, 150) and tuple(det[200, 200]) == (0, 0, 0)
    assert tuple(palette[100, 50]) == (255, 0, 0) and tuple(palette[100, 200]) == (0, 0, 255)


def test_colour_maps():
    ramp = colorize_depth(np.linspace(0.0, 1.0, 8)[None])
    assert np.array_equal(ramp[0], DEPTH_COLORS.astype(np.uint8))
    assert (colorize_depth(np.ones((4, 4))) == DEPTH_COLORS[0]).all()  # a constant map gets the first colour
    features = np.zeros((16, 4, 4))
    features[0] = np.arange(16).reshape(4, 4)  # all the variance on one direction
    rgb = pca_rgb(features)
    assert rgb.shape == (4, 4, 3) and {rgb[..., 0].min(), rgb[..., 0].max()} == {0, 255}


def test_errors(decoded):
    with pytest.raises(ValueError, match=r"No renderer for modalities \['t5_caption'\]"):
        plot_modalities({"t5_caption": [np.zeros((3, 8))]})
    with pytest.raises(ValueError, match="Nothing to plot"):
        plot_modalities({})
