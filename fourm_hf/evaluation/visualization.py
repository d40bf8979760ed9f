"""Lay several decoded modalities out in one PNG grid, with PIL only.

`plot_modalities(processor.postprocess(outputs))` draws one tile per modality of a sample with the renderer its family
names (`fourm_hf.evaluation.rendering`); boxes and other overlays are drawn on the sample's RGB image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from PIL import Image, ImageDraw

from ..checks import check_int, error_context
from ..modalities import MODALITIES, get_family, get_modality
from .rendering import render_image

TITLE_HEIGHT = 20


def plot_modalities(
    decoded: Mapping[str, Any],
    sample: int = 0,
    tile_size: int = 224,
    columns: int = 4,
    save_path: str | os.PathLike | None = None,
) -> Image.Image:
    """Draw one sample of decoded modalities (the output of `FourMProcessor.postprocess`) as a titled grid.

    Args:
        decoded (`Mapping[str, Any]`): per modality name, the batch of decoded values. A name that is not a
            registered modality but starts with a family name (`"tok_depth@truth"`) is drawn by that family and
            titled as given.
        sample (`int`, *optional*, defaults to 0): which sample of the batch to draw, in `[0, batch size)`.
        tile_size (`int`, *optional*, defaults to 224): side of each tile in pixels.
        columns (`int`, *optional*, defaults to 4): tiles per row.
        save_path (`str`, *optional*): also write the grid there (format by extension, e.g. `.png`); its folder
            must exist.

    Returns:
        `PIL.Image.Image`: the grid; boxes are drawn over the sample's RGB image when the dict has one.
    """
    if not isinstance(decoded, Mapping):
        raise TypeError(
            f"decoded must be a dict {{modality name: batch}} (the output of FourMProcessor.postprocess), got "
            f"{type(decoded).__name__}."
        )
    if not decoded:
        raise ValueError("Nothing to plot: `decoded` is empty.")
    check_int(sample, "sample", minimum=0)
    check_int(tile_size, "tile_size", minimum=1)
    check_int(columns, "columns", minimum=1)
    _check_save_path(save_path)
    for name, batch in decoded.items():
        _check_batch(name, batch, sample)
    families = {name: get_modality(name).family if name in MODALITIES else get_family(name) for name in decoded}
    missing = [name for name, family in families.items() if not family.has("render")]
    if missing:
        raise ValueError(
            f"No renderer for modalities {missing}: their families have none; give one with "
            "register_family(ModalityFamily(..., render=...))."
        )
    renderers = {name: family.function("render") for name, family in families.items()}
    rgb_names = [name for name, family in families.items() if family.name in ("rgb", "tok_rgb")]
    background = _render(render_image, rgb_names[0], decoded, sample, None, tile_size) if rgb_names else None

    rows = -(-len(decoded) // columns)
    grid = Image.new("RGB", (columns * tile_size, rows * (tile_size + TITLE_HEIGHT)), "white")
    draw = ImageDraw.Draw(grid)
    for index, name in enumerate(decoded):
        tile = _render(renderers[name], name, decoded, sample, background, tile_size)
        left, top = (index % columns) * tile_size, (index // columns) * (tile_size + TITLE_HEIGHT)
        draw.text((left + 4, top + 4), name, fill="black")
        grid.paste(tile, (left, top + TITLE_HEIGHT))
    if save_path is not None:
        grid.save(save_path)
    return grid


def _check_save_path(save_path: Any) -> None:
    if save_path is None:
        return
    if not isinstance(save_path, (str, os.PathLike)):
        raise TypeError(f"save_path must be a file path, got {type(save_path).__name__}.")
    folder = os.path.dirname(os.path.abspath(save_path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"save_path {str(save_path)!r}: the folder {folder!r} does not exist; create it first.")
    extension = os.path.splitext(str(save_path))[1].lower()
    if extension not in Image.registered_extensions():
        raise ValueError(f"save_path {str(save_path)!r}: unknown image extension {extension!r}; use e.g. '.png'.")


def _check_batch(name: str, batch: Any, sample: int) -> None:
    """One batch of decoded values, with a `sample`-th entry."""
    if isinstance(batch, (str, bytes, Mapping)) or not hasattr(batch, "__len__") or not hasattr(batch, "__getitem__"):
        raise TypeError(
            f"decoded[{name!r}] must be a batch (a list or array with one entry per sample), got "
            f"{type(batch).__name__}; wrap a single sample as [sample]."
        )
    if len(batch) == 0:
        raise ValueError(f"decoded[{name!r}] is an empty batch (0 samples): nothing to draw.")
    if sample >= len(batch):
        raise ValueError(f"sample={sample} is out of range: decoded[{name!r}] has {len(batch)} sample(s).")


def _render(
    renderer: Callable, name: str, decoded: Mapping[str, Any], sample: int, background: Image.Image | None, size: int
) -> Image.Image:
    """One tile; a renderer's complaint about the value is re-raised naming the modality and the sample."""
    with error_context(f"decoded[{name!r}][{sample}] cannot be drawn"):
        tile = renderer(decoded[name][sample], background, size)
    if not isinstance(tile, Image.Image):
        raise TypeError(f"The renderer of {name!r} must return a PIL image, got {type(tile).__name__}.")
    if tile.size != (size, size):
        width, height = tile.size
        raise ValueError(f"The renderer of {name!r} must return a {size}x{size} tile, got {width}x{height}.")
    return tile


__all__ = ["plot_modalities"]
