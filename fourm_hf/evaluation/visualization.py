"""Lay several decoded modalities out in one PNG grid, with PIL only.

`plot_modalities(processor.postprocess(outputs))` draws one tile per modality of a sample: images as they are,
depth through a blue-to-red colour map, segmentation with one fixed colour per class (void black), feature maps by
their first three principal components, boxes (det, human poses, SAM instances) on the sample's RGB image, palettes
as colour swatches and text-like modalities as wrapped text.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from transformers.utils import logging

logger = logging.get_logger(__name__)

TITLE_HEIGHT = 20
BOX_COLOR = (255, 0, 0)
# Anchors of a perceptually ordered blue -> cyan -> green -> yellow -> red colour map (low -> high depth).
DEPTH_COLORS = np.array(
    [[48, 18, 59], [70, 107, 227], [40, 188, 235], [50, 241, 153], [164, 252, 60], [251, 185, 56], [225, 68, 10],
     [122, 4, 3]],
    dtype=np.float64,
)  # fmt: skip
SEMSEG_VOID = 255
# One colour per class id (0-254), fixed by a seeded generator; void is black.
SEMSEG_PALETTE = np.random.default_rng(0).integers(40, 256, (256, 3)).astype(np.uint8)
SEMSEG_PALETTE[SEMSEG_VOID] = 0


def colorize_depth(depth: np.ndarray) -> np.ndarray:
    """Depth `(H, W)` -> uint8 RGB `(H, W, 3)`, min-max normalised per image (near = blue, far = red)."""
    depth = np.asarray(depth, dtype=np.float64)
    span = depth.max() - depth.min()
    scaled = (depth - depth.min()) / span if span > 0 else np.zeros_like(depth)
    position = scaled * (len(DEPTH_COLORS) - 1)
    low = np.clip(np.floor(position).astype(int), 0, len(DEPTH_COLORS) - 2)
    weight = (position - low)[..., None]
    return ((1 - weight) * DEPTH_COLORS[low] + weight * DEPTH_COLORS[low + 1]).round().astype(np.uint8)


def colorize_semseg(labels: np.ndarray) -> np.ndarray:
    """Class ids `(H, W)` (raw COCO ids, 255 = void) -> uint8 RGB `(H, W, 3)` from `SEMSEG_PALETTE`."""
    return SEMSEG_PALETTE[np.clip(np.asarray(labels), 0, SEMSEG_VOID)]


def pca_rgb(features: np.ndarray) -> np.ndarray:
    """Feature map `(C, h, w)` -> uint8 RGB `(h, w, 3)`: its first three principal components, min-max scaled."""
    channels, height, width = features.shape
    flat = features.reshape(channels, -1).T.astype(np.float64)
    flat = flat - flat.mean(0)
    _, _, vt = np.linalg.svd(flat, full_matrices=False)
    components = flat @ vt[:3].T
    components = np.pad(components, ((0, 0), (0, 3 - components.shape[1])))
    span = components.max(0) - components.min(0)
    components = (components - components.min(0)) / np.where(span > 0, span, 1)
    return (components.reshape(height, width, 3) * 255).round().astype(np.uint8)


def _to_tile(array: np.ndarray, size: int, nearest: bool = False) -> Image.Image:
    image = Image.fromarray(np.ascontiguousarray(array))
    return image.convert("RGB").resize((size, size), Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR)


def _text_tile(text: str, size: int) -> Image.Image:
    tile = Image.new("RGB", (size, size), "white")
    lines = textwrap.wrap(text, width=max(8, size // 7)) or [""]
    ImageDraw.Draw(tile).multiline_text((6, 6), "\n".join(lines), fill="black", font=ImageFont.load_default())
    return tile


def _draw_boxes(background: Image.Image | None, boxes, labels, size: int) -> Image.Image:
    """Boxes normalised to [0, 1] (xmin, ymin, xmax, ymax) with labels, on `background` or a white canvas."""
    tile = background.copy() if background is not None else Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(tile)
    for (xmin, ymin, xmax, ymax), label in zip(boxes, labels):
        corners = [xmin * (size - 1), ymin * (size - 1), xmax * (size - 1), ymax * (size - 1)]
        draw.rectangle(corners, outline=BOX_COLOR, width=2)
        left, top, right, bottom = draw.textbbox((corners[0] + 2, corners[1] + 2), label)
        draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill=BOX_COLOR)
        draw.text((corners[0] + 2, corners[1] + 2), label, fill="white")
    return tile


def _palette_tile(colors, size: int) -> Image.Image:
    tile = Image.new("RGB", (size, size), "white")
    if colors:
        width = size / len(colors)
        draw = ImageDraw.Draw(tile)
        for i, color in enumerate(colors):
            draw.rectangle(
                [round(i * width), 0, round((i + 1) * width) - 1, size - 1], fill=tuple(int(c) for c in color)
            )
    return tile


def _sam_boxes(queries, background: Image.Image | None, size: int, frame: int = 224) -> Image.Image:
    boxes = [[c / (frame - 1) for c in inst.box] for q in queries for inst in q.instances]
    tile = _draw_boxes(background, boxes, [""] * len(boxes), size)
    draw = ImageDraw.Draw(tile)
    for q in queries:
        x, y = (c / (frame - 1) * (size - 1) for c in q.point)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(0, 255, 0))
    return tile


Renderer = Callable[[Any, Image.Image | None, int], Image.Image]

# Modality family (the name before "@") -> renderer of one sample: (value, RGB background or None, size) -> tile.
RENDERERS: dict[str, Renderer] = {
    "rgb": lambda v, bg, s: _to_tile(v, s),
    "tok_rgb": lambda v, bg, s: _to_tile(v, s),
    "tok_normal": lambda v, bg, s: _to_tile(v, s),
    "tok_canny_edge": lambda v, bg, s: _to_tile(v, s),
    "tok_sam_edge": lambda v, bg, s: _to_tile(v, s),
    "tok_depth": lambda v, bg, s: _to_tile(colorize_depth(v), s),
    "tok_semseg": lambda v, bg, s: _to_tile(colorize_semseg(v), s, nearest=True),
    "tok_clip": lambda v, bg, s: _to_tile(pca_rgb(v), s),
    "tok_dinov2": lambda v, bg, s: _to_tile(pca_rgb(v), s),
    "tok_imagebind": lambda v, bg, s: _to_tile(pca_rgb(v), s),
    "tok_dinov2_global": lambda v, bg, s: _text_tile(f"global embedding, {np.size(v)} values", s),
    "tok_imagebind_global": lambda v, bg, s: _text_tile(f"global embedding, {np.size(v)} values", s),
    "det": lambda v, bg, s: _draw_boxes(bg, v["boxes"], v["labels"], s),
    "human_poses": lambda v, bg, s: _draw_boxes(bg, [p.box for p in v], ["human"] * len(v), s),
    "sam_instance": lambda v, bg, s: _sam_boxes(v, bg, s),
    "color_palette": lambda v, bg, s: _palette_tile(v, s),
    "caption": lambda v, bg, s: _text_tile(v, s),
    "metadata": lambda v, bg, s: _text_tile(
        "; ".join(f"{k}: {x:.3g}" if isinstance(x, float) else f"{k}: {x}" for k, x in v.items()), s
    ),
}


def plot_modalities(
    decoded: Mapping[str, Any],
    sample: int = 0,
    tile_size: int = 224,
    columns: int = 4,
    save_path: str | os.PathLike | None = None,
) -> Image.Image:
    """Draw one sample of decoded modalities (the output of `FourMProcessor.postprocess`) as a titled grid.

    Args:
        decoded (`Mapping[str, Any]`): per modality name, the batch of decoded values.
        sample (`int`, *optional*, defaults to 0): which sample of the batch to draw.
        tile_size (`int`, *optional*, defaults to 224): side of each tile in pixels.
        columns (`int`, *optional*, defaults to 4): tiles per row.
        save_path (`str`, *optional*): also write the grid there (PNG by extension).

    Returns:
        `PIL.Image.Image`: the grid; boxes are drawn over the sample's RGB image when the dict has one.
    """
    families = {name: name.split("@")[0] for name in decoded}
    unknown = [name for name, family in families.items() if family not in RENDERERS]
    if unknown:
        raise ValueError(f"No renderer for modalities {unknown}; known families: {sorted(RENDERERS)}.")
    if not decoded:
        raise ValueError("Nothing to plot: `decoded` is empty.")
    rgb_names = [name for name, family in families.items() if family in ("rgb", "tok_rgb")]
    background = RENDERERS["rgb"](decoded[rgb_names[0]][sample], None, tile_size) if rgb_names else None

    rows = -(-len(decoded) // columns)
    grid = Image.new("RGB", (columns * tile_size, rows * (tile_size + TITLE_HEIGHT)), "white")
    draw = ImageDraw.Draw(grid)
    for index, (name, batch) in enumerate(decoded.items()):
        tile = RENDERERS[families[name]](batch[sample], background, tile_size)
        left, top = (index % columns) * tile_size, (index // columns) * (tile_size + TITLE_HEIGHT)
        draw.text((left + 4, top + 4), name, fill="black")
        grid.paste(tile, (left, top + TITLE_HEIGHT))
    if save_path is not None:
        grid.save(save_path)
    return grid


__all__ = ["RENDERERS", "colorize_depth", "colorize_semseg", "pca_rgb", "plot_modalities"]
