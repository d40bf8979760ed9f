"""Lay several decoded modalities out in one PNG grid, with PIL only.

`plot_modalities(processor.postprocess(outputs))` draws one tile per modality of a sample with the renderer its family
names (`fourm_hf.evaluation.rendering`); boxes and other overlays are drawn on the sample's RGB image.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from PIL import Image, ImageDraw

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
        sample (`int`, *optional*, defaults to 0): which sample of the batch to draw.
        tile_size (`int`, *optional*, defaults to 224): side of each tile in pixels.
        columns (`int`, *optional*, defaults to 4): tiles per row.
        save_path (`str`, *optional*): also write the grid there (PNG by extension).

    Returns:
        `PIL.Image.Image`: the grid; boxes are drawn over the sample's RGB image when the dict has one.
    """
    if not decoded:
        raise ValueError("Nothing to plot: `decoded` is empty.")
    families = {name: get_modality(name).family if name in MODALITIES else get_family(name) for name in decoded}
    missing = [name for name, family in families.items() if not family.has("render")]
    if missing:
        raise ValueError(
            f"No renderer for modalities {missing}: their families have none; give one with "
            "register_family(ModalityFamily(..., render=...))."
        )
    renderers = {name: family.function("render") for name, family in families.items()}
    rgb_names = [name for name, family in families.items() if family.name in ("rgb", "tok_rgb")]
    background = render_image(decoded[rgb_names[0]][sample], None, tile_size) if rgb_names else None

    rows = -(-len(decoded) // columns)
    grid = Image.new("RGB", (columns * tile_size, rows * (tile_size + TITLE_HEIGHT)), "white")
    draw = ImageDraw.Draw(grid)
    for index, (name, batch) in enumerate(decoded.items()):
        tile = renderers[name](batch[sample], background, tile_size)
        left, top = (index % columns) * tile_size, (index // columns) * (tile_size + TITLE_HEIGHT)
        draw.text((left + 4, top + 4), name, fill="black")
        grid.paste(tile, (left, top + TITLE_HEIGHT))
    if save_path is not None:
        grid.save(save_path)
    return grid


__all__ = ["plot_modalities"]
