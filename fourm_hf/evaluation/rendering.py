"""Renderers: one decoded sample of a modality -> a square PIL tile.

A renderer is called as `render(value, background, size)`: `value` is one sample of `FourMProcessor.postprocess`
output, `background` the sample's RGB tile (or None) for modalities drawn over the image (boxes), `size` the tile side.
Each modality family names its renderer in its description (`fourm_hf.modalities`); `plot_modalities` lays tiles out.
Images are shown as they are, depth through a blue-to-red colour map, segmentation with one fixed colour per class
(void black), feature maps by their first three principal components, palettes as swatches, text as wrapped text.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


def render_image(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """uint8 image `(H, W, 3)` / `(H, W)` as it is."""
    return _to_tile(value, size)


def render_depth(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """Depth map `(H, W)` through the depth colour map."""
    return _to_tile(colorize_depth(value), size)


def render_semseg(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """Class-id map `(H, W)` with one colour per class."""
    return _to_tile(colorize_semseg(value), size, nearest=True)


def render_feature_map(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """Feature map `(C, h, w)` by its first three principal components."""
    return _to_tile(pca_rgb(value), size)


def render_global_embedding(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """A global embedding: its size, as text."""
    return _text_tile(f"global embedding, {np.size(value)} values", size)


def render_text(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """A string as wrapped text."""
    return _text_tile(str(value), size)


def render_boxes(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """`{"boxes", "labels"}` drawn over the sample's image."""
    return _draw_boxes(background, value["boxes"], value["labels"], size)


def render_human_poses(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """The boxes of `HumanPose`s drawn over the sample's image."""
    return _draw_boxes(background, [pose.box for pose in value], ["human"] * len(value), size)


def render_sam_instances(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """SAM queries: instance boxes and query points over the sample's image."""
    return _sam_boxes(value, background, size)


def render_palette(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """RGB triples as colour swatches."""
    return _palette_tile(value, size)


def render_metadata(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """A metadata dict as `key: value` text."""
    return _text_tile("; ".join(f"{k}: {x:.3g}" if isinstance(x, float) else f"{k}: {x}" for k, x in value.items()), size)


__all__ = [
    "Renderer",
    "colorize_depth",
    "colorize_semseg",
    "pca_rgb",
    "render_boxes",
    "render_depth",
    "render_feature_map",
    "render_global_embedding",
    "render_human_poses",
    "render_image",
    "render_metadata",
    "render_palette",
    "render_sam_instances",
    "render_semseg",
    "render_text",
]
