"""Renderers: one decoded sample of a modality -> a square PIL tile.

A renderer is called as `render(value, background, size)`: `value` is one sample of `FourMProcessor.postprocess`
output, `background` the sample's RGB tile (or None) for modalities drawn over the image (boxes), `size` the tile side.
Each modality family names its renderer in its description (`fourm_hf.modalities`); `plot_modalities` lays tiles out.
Images are shown as they are, depth through a blue-to-red colour map, segmentation with one fixed colour per class
(void black), feature maps by their first three principal components, palettes as swatches, text as wrapped text.
"""

from __future__ import annotations

import math
import numbers
import textwrap
from collections.abc import Callable, Mapping, Sequence
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


def _array(value: Any, what: str, ndims: tuple[int, ...], kinds: str = "uif") -> np.ndarray:
    """`value` as an array with one of `ndims` dimensions and a dtype of `kinds` (NumPy kind letters), else a clear
    `TypeError` / `ValueError` naming what the renderer expected."""
    if value is None or isinstance(value, (str, bytes, Mapping)):
        raise TypeError(f"expected {what}, got {type(value).__name__}.")
    array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
    if array.dtype.kind not in kinds:
        raise TypeError(f"expected {what}, got dtype {array.dtype}.")
    if array.ndim not in ndims or 0 in array.shape:
        raise ValueError(f"expected {what}, got shape {array.shape}.")
    return array


def _boxes(boxes: Any, labels: Any) -> None:
    """Boxes `(xmin, ymin, xmax, ymax)` of finite numbers, as many as the labels (strings)."""
    if isinstance(boxes, (str, Mapping)) or not isinstance(boxes, (Sequence, np.ndarray)):
        raise TypeError(f"boxes must be a list of (xmin, ymin, xmax, ymax), got {type(boxes).__name__}.")
    if isinstance(labels, str) or not isinstance(labels, (Sequence, np.ndarray)):
        raise TypeError(f"labels must be a list of strings, one per box, got {type(labels).__name__}.")
    if len(boxes) != len(labels):
        raise ValueError(f"got {len(boxes)} boxes but {len(labels)} labels; give one label per box.")
    for index, (box, label) in enumerate(zip(boxes, labels)):
        if not isinstance(label, str):
            raise TypeError(f"label {index} must be a string, got {type(label).__name__} {label!r}.")
        coordinates = list(box) if isinstance(box, (Sequence, np.ndarray)) else None
        if coordinates is None or len(coordinates) != 4 or not all(_is_finite(c) for c in coordinates):
            raise ValueError(f"box {index} must be 4 finite numbers (xmin, ymin, xmax, ymax), got {box!r}.")


def _is_finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


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
    what = "an image of shape (H, W, 3), (H, W, 4) or (H, W)"
    array = _array(value, what, (2, 3))
    array = array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
    if array.ndim == 3 and (array.shape[-1] not in (3, 4) or array.dtype != np.uint8):
        raise ValueError(f"expected {what} (uint8 when it has channels), got {array.dtype} {array.shape}.")
    return _to_tile(array, size)


def render_depth(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """Depth map `(H, W)` through the depth colour map."""
    return _to_tile(colorize_depth(_array(value, "a depth map of shape (H, W)", (2,))), size)


def render_semseg(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """Class-id map `(H, W)` with one colour per class."""
    return _to_tile(colorize_semseg(_array(value, "a class-id map of shape (H, W)", (2,), "ui")), size, nearest=True)


def render_feature_map(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """Feature map `(C, h, w)` by its first three principal components."""
    return _to_tile(pca_rgb(_array(value, "a feature map of shape (C, h, w)", (3,))), size)


def render_global_embedding(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """A global embedding: its size, as text."""
    return _text_tile(f"global embedding, {np.size(value)} values", size)


def render_text(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """A string as wrapped text."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__} {value!r}.")
    return _text_tile(value, size)


def render_boxes(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """`{"boxes", "labels"}` drawn over the sample's image."""
    if not isinstance(value, Mapping) or not {"boxes", "labels"} <= set(value):
        got = sorted(value) if isinstance(value, Mapping) else type(value).__name__
        raise ValueError(f"expected a dict with 'boxes' and 'labels', got {got}.")
    _boxes(value["boxes"], value["labels"])
    return _draw_boxes(background, value["boxes"], value["labels"], size)


def _objects(value: Any, attributes: tuple[str, ...], what: str) -> None:
    """A list of objects that all have `attributes` (poses, SAM queries)."""
    if isinstance(value, (str, Mapping)) or not isinstance(value, Sequence):
        raise TypeError(f"expected a list of {what}, got {type(value).__name__}.")
    for index, item in enumerate(value):
        missing = [name for name in attributes if not hasattr(item, name)]
        if missing:
            raise TypeError(f"expected a list of {what}; item {index} ({type(item).__name__}) has no {missing}.")


def render_human_poses(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """The boxes of `HumanPose`s drawn over the sample's image."""
    _objects(value, ("box",), "HumanPose")
    return _draw_boxes(background, [pose.box for pose in value], ["human"] * len(value), size)


def render_sam_instances(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """SAM queries: instance boxes and query points over the sample's image."""
    _objects(value, ("point", "instances"), "SAM queries")
    return _sam_boxes(value, background, size)


def render_palette(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """RGB triples as colour swatches."""
    if isinstance(value, (str, Mapping)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"expected a list of (r, g, b) colours, got {type(value).__name__}.")
    for index, color in enumerate(value):
        channels = list(color) if isinstance(color, (Sequence, np.ndarray)) else None
        if channels is None or len(channels) != 3 or not all(_is_finite(c) and 0 <= c <= 255 for c in channels):
            raise ValueError(f"colour {index} must be 3 values in [0, 255] (r, g, b), got {color!r}.")
    return _palette_tile(value, size)


def render_metadata(value: Any, background: Image.Image | None, size: int) -> Image.Image:
    """A metadata dict as `key: value` text."""
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a dict of metadata fields, got {type(value).__name__}.")
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
