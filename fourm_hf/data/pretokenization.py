"""Pre-tokenisation of multimodal `datasets` for 4M training, as one resumable `Dataset.map`.

Every row gets `num_crops` crop settings `(top, left, height, width, hflip)` in pixels of its images: crop 0 is the
centre square without flip, the others random-resized crops (scale `(min_crop_scale, 1)`, aspect `(3/4, 4/3)`,
flip with probability 1/2), as 4M's `save_vq_tokens.py` draws them. The same crops are applied to every image column
of the row and to its boxes, so all modalities stay aligned:

- image columns become token columns `(num_crops, h * w)` through a VQ model (any object with `encode(batch) -> ids`,
  e.g. [`FourMVQVAE`]; inputs are prepared by the modality family's `preprocess`, as the released VQ models expect),
  or uint8 pixel crops `(num_crops, S, S, 3)` for a pixel modality (4M's RGB input); flipped crops go through the
  family's `hflip` (which also negates the x component of normals);
- text columns become token ids ending with `[EOS]`: text (strings, or samples written by the family's `serialize`),
  one sequence per crop for families whose boxes follow the crops (det: serialised with `boxes_to_text`), or
  `{"chunks": [...]}` for chunk-masked modalities (metadata).

What cannot be kept is reported, never dropped silently: boxes that fall outside a crop (or score below
`min_score`) are left out of that crop's sequence, and sequences longer than the modality's `max_tokens` are stored
whole but cut by the masking collator; one warning per call says how many. Anything else that cannot be
represented (pixel boxes given as normalised ones, a missing image, a float image for a uint8 pixel column, ids outside
the modality's vocabulary...) is an error naming the row and the column.

Crops are drawn from `(seed, row index)`, so the output does not depend on batching or on `num_proc`. With
`num_shards > 1` each shard is cached in its own file: an interrupted run restarts where it stopped. The output is
what [`FourMMaskingCollator`] consumes (it picks one crop per sample). With `output_dir` the shards are also written as
Parquet files or webdataset tar shards in 4M's layout, which [`ShardStream`] streams (see `fourm_hf.data.streaming`).
"""

from __future__ import annotations

import math
import numbers
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image
from transformers.utils import logging

from ..checks import check_bool, check_choice, check_int, check_number, close_match, error_context
from ..modalities import IMAGE_TOKENS, PIXELS, SEQUENCE, ModalitySpec, get_family, get_modality
from ..modalities.families import hflip_image
from ..models.fourm.image_processing_fourm import FourMImageProcessor, check_image_object, check_image_values
from .serialization import NUM_BINS, boxes_to_text
from .streaming import SHARD_FORMATS, run_parallel, write_shard

logger = logging.get_logger(__name__)

CROP_ASPECT = (3 / 4, 4 / 3)
# How det boxes are given: normalised (xmin, ymin, xmax, ymax) in [0, 1] (4M's format), or in pixels of the row's
# images as (xmin, ymin, xmax, ymax) or as COCO's (x, y, width, height).
BOX_FORMATS = ("normalized", "xyxy_pixels", "xywh_pixels")
# Normalised coordinates may overshoot [0, 1] by this much (rounding) before they are taken for pixels.
BOX_TOLERANCE = 1e-3


def _check_column_names(source: Any, modality: Any, column: str) -> None:
    for name, value in (("source", source), ("modality", modality)):
        if not isinstance(value, str) or not value:
            raise TypeError(f"{column}: {name} must be a non-empty column / modality name, got {value!r}.")


@dataclass
class ImageColumn:
    """An image-like source column and the token (or pixel) column made from it.

    Args:
        source (`str`): dataset column holding the images (PIL images or arrays, `(H, W)` or `(H, W, C)`).
        modality (`str`): output column, a registered modality (e.g. `"tok_depth@224"`, `"rgb@224"`); its family
            prepares the crops, at its resolution.
        tokenizer (*optional*): the VQ model: an object with `encode(batch: torch.Tensor) -> ids`, or a callable doing
            that; ids come back as `(B, h, w)` or `(B, h * w)`. Required for image-token modalities, not for pixels.
        processor_kwargs (`dict`, *optional*): keyword arguments of the family's `preprocess`, e.g.
            `{"shifted": True}` for semseg maps already holding shifted ids.
        preprocess_as (`str`, *optional*): prepare the source as this family's input instead of the modality's own,
            e.g. `"rgb"` (ImageNet-normalised RGB) when `tokenizer` is a feature teacher followed by its VQ model.
    """

    source: str
    modality: str
    tokenizer: Any = None
    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    preprocess_as: str | None = None

    def __post_init__(self):
        _check_column_names(self.source, self.modality, "ImageColumn")
        spec = get_modality(self.modality)
        if spec.kind not in (PIXELS, IMAGE_TOKENS):
            raise ValueError(
                f"{self.modality}: an image column makes a pixel or image-token modality, not {spec.kind}; use "
                f"TextColumn({self.source!r}, {self.modality!r})."
            )
        if (self.tokenizer is None) != (spec.kind == PIXELS):
            need = "no tokenizer (pixels are kept)" if spec.kind == PIXELS else "a tokenizer (its VQ model)"
            raise ValueError(f"{self.modality}: a {spec.kind} column needs {need}.")
        if self.tokenizer is not None and not callable(getattr(self.tokenizer, "encode", self.tokenizer)):
            raise TypeError(
                f"{self.modality}: tokenizer must be a VQ model (an object with encode(batch) -> ids) or a callable, "
                f"got {type(self.tokenizer).__name__}."
            )
        if not isinstance(self.processor_kwargs, Mapping):
            raise TypeError(
                f"{self.modality}: processor_kwargs must be a dict of keyword arguments of the family's preprocess, "
                f"got {type(self.processor_kwargs).__name__}."
            )
        family = get_family(self.preprocess_as) if self.preprocess_as is not None else spec.family
        if spec.kind == IMAGE_TOKENS:
            family.function("preprocess")  # a clear error now rather than in the middle of the map

    @property
    def spec(self) -> ModalitySpec:
        return get_modality(self.modality)


@dataclass
class TextColumn:
    """A text-like source column and the id column made from it.

    Args:
        source (`str`): dataset column.
        modality (`str`): output column, a registered sequence modality (e.g. `"caption"`, `"det"`, `"metadata"`).
            Samples are strings, or data that the family's `serialize` (or `serializer`) writes as text. For families
            whose boxes follow the crops (`det`), a sample is 4M's det format `{"instances": [{"boxes": [xmin, ymin,
            xmax, ymax], "class_name", "score"}]}`, coordinates in [0, 1] (or pixels, see `box_format`), cropped
            per crop and binned with the text tokenizer's `num_value_bins`; boxes left outside a crop are reported.
        serializer (`Callable`, *optional*): sample -> string (or list of strings with `chunks`), instead of the
            family's own `serialize`.
        chunks (`bool`, *optional*, defaults to `False`): `serializer` returns a list of strings, masked chunk-wise.
        min_score (`float`, *optional*, defaults to 0.6): det: boxes with a lower score are left out (as 4M does).
        box_format (`str`, *optional*, defaults to `"normalized"`): det: how the boxes are given: `"normalized"`
            (xmin, ymin, xmax, ymax) in [0, 1], or in pixels of the row's images, `"xyxy_pixels"` (xmin, ymin, xmax,
            ymax) or `"xywh_pixels"` (COCO's x, y, width, height); pixel boxes are normalised by the image size.
    """

    source: str
    modality: str
    serializer: Callable[[Any], str | list[str]] | None = None
    chunks: bool = False
    min_score: float = 0.6
    box_format: str = "normalized"

    def __post_init__(self):
        _check_column_names(self.source, self.modality, "TextColumn")
        spec = get_modality(self.modality)
        if spec.kind != SEQUENCE:
            hint = f"; use ImageColumn({self.source!r}, {self.modality!r}, ...)" if spec.is_image else ""
            raise ValueError(f"{self.modality}: a text column makes a sequence modality, not {spec.kind}{hint}.")
        if self.serializer is not None and not callable(self.serializer):
            raise TypeError(
                f"{self.modality}: serializer must be a function sample -> text, got {type(self.serializer).__name__}."
            )
        check_bool(self.chunks, f"{self.modality}: chunks")
        if self.chunks and self.serializer is None:
            raise ValueError(f"{self.modality}: a chunked column needs a serializer returning a list of strings.")
        check_number(self.min_score, f"{self.modality}: min_score")
        check_choice(self.box_format, f"{self.modality}: box_format", BOX_FORMATS)
        if self.box_format != "normalized" and not self.follows_crops:
            raise ValueError(
                f"{self.modality}: box_format applies to boxes that follow the crops (det), not to {self.modality}."
            )

    @property
    def follows_crops(self) -> bool:
        return get_modality(self.modality).family.boxes_follow_crops


# ---------------------------------------------------------------------------------------------------------------------
# Crops


def crop_settings(rng: np.random.Generator, height: int, width: int, num_crops: int, min_scale: float = 0.8) -> np.ndarray:
    """`(num_crops, 5)` int array of `(top, left, crop height, crop width, hflip)`: the centre square first, then
    random-resized crops (area fraction in `(min_scale, 1)`, aspect in (3/4, 4/3), 10 tries before falling back to
    the centre square), each flipped with probability 1/2."""
    check_int(height, "height", minimum=1)
    check_int(width, "width", minimum=1)
    check_int(num_crops, "num_crops", minimum=1)
    check_number(min_scale, "min_scale", 0, 1, open_minimum=True)
    side = min(height, width)
    settings = [((height - side) // 2, (width - side) // 2, side, side, 0)]
    log_ratio = (math.log(CROP_ASPECT[0]), math.log(CROP_ASPECT[1]))
    for _ in range(num_crops - 1):
        crop = settings[0][:4]
        for _attempt in range(10):
            area = height * width * rng.uniform(min_scale, 1.0)
            ratio = math.exp(rng.uniform(*log_ratio))
            w, h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < w <= width and 0 < h <= height:
                crop = (int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w)
                break
        settings.append((*crop, int(rng.random() < 0.5)))
    return np.array(settings, dtype=np.int32)


def crop_boxes(
    instances: Sequence[Mapping[str, Any]],
    crop: Sequence[int],
    height: int,
    width: int,
    min_score: float = 0.6,
    box_format: str = "normalized",
) -> tuple[list[list[float]], list[str]]:
    """Boxes seen through a crop: clipped to it, renormalised, flipped with the crop; boxes left with no area or
    scoring below `min_score` are dropped. `instances` are 4M's `{"boxes", "class_name", "score"}` dicts, boxes in
    `box_format` (see `BOX_FORMATS`; pixel boxes are normalised by `height` and `width`)."""
    top, left, crop_h, crop_w, flip = (int(v) for v in crop)
    boxes, labels = [], []
    for instance, (xmin, ymin, xmax, ymax) in zip(instances, normalized_boxes(instances, height, width, box_format)):
        if _score(instance) < min_score:
            continue
        x0 = np.clip((xmin * width - left) / crop_w, 0.0, 1.0)
        x1 = np.clip((xmax * width - left) / crop_w, 0.0, 1.0)
        y0 = np.clip((ymin * height - top) / crop_h, 0.0, 1.0)
        y1 = np.clip((ymax * height - top) / crop_h, 0.0, 1.0)
        if x1 <= x0 or y1 <= y0:
            continue
        if flip:
            x0, x1 = 1.0 - x1, 1.0 - x0
        boxes.append([float(x0), float(y0), float(x1), float(y1)])
        labels.append(instance["class_name"])
    return boxes, labels


def normalized_boxes(
    instances: Sequence[Mapping[str, Any]], height: int, width: int, box_format: str = "normalized"
) -> list[tuple[float, float, float, float]]:
    """The boxes of det instances as normalised (xmin, ymin, xmax, ymax), each instance checked. Pixel-like boxes
    where normalised ones are expected (or the reverse) and inverted boxes are errors that say the fix."""
    check_choice(box_format, "box_format", BOX_FORMATS)
    if isinstance(instances, (str, Mapping)) or not isinstance(instances, (Sequence, np.ndarray)):
        raise TypeError(
            f"instances must be a list of {{'boxes', 'class_name', 'score'}} dicts, got {type(instances).__name__}."
        )
    boxes = [_instance_box(index, instance, box_format) for index, instance in enumerate(instances)]
    largest = max((max(box) for box in boxes), default=0.0)
    if box_format == "normalized" and largest > 1 + BOX_TOLERANCE:
        raise ValueError(
            f"boxes look like pixel coordinates (max {largest:g}); pass normalised [0, 1] boxes or box_format="
            "'xyxy_pixels' (or 'xywh_pixels' for COCO's (x, y, width, height)) to normalise them by the image size."
        )
    if box_format == "normalized":
        return boxes
    if boxes and largest <= 1 and max(height, width) > 1:
        raise ValueError(
            f"box_format={box_format!r} but every box lies within [0, 1] on a {height}x{width} image: these look "
            "normalised; pass box_format='normalized'."
        )
    return [(x0 / width, y0 / height, x1 / width, y1 / height) for x0, y0, x1, y1 in boxes]


def _instance_box(index: int, instance: Any, box_format: str) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of one det instance, in its own units, after checking the instance."""
    if not isinstance(instance, Mapping) or not {"boxes", "class_name"} <= set(instance):
        got = f"keys {sorted(instance)}" if isinstance(instance, Mapping) else type(instance).__name__
        raise ValueError(
            f"instance {index}: expected {{'boxes': [xmin, ymin, xmax, ymax], 'class_name': str, 'score': float "
            f"(optional)}}, got {got}."
        )
    box = instance["boxes"]
    values = list(box) if isinstance(box, (Sequence, np.ndarray)) and not isinstance(box, str) else []
    if len(values) != 4 or not all(_is_finite(v) for v in values):
        raise ValueError(f"instance {index}: boxes must be 4 finite numbers, got {box!r}.")
    if not isinstance(instance["class_name"], str):
        raise TypeError(f"instance {index}: class_name must be a string, got {instance['class_name']!r}.")
    if not _is_finite(_score(instance)):
        raise ValueError(f"instance {index}: score must be a finite number, got {instance['score']!r}.")
    x0, y0, a, b = (float(v) for v in values)
    x1, y1 = (x0 + a, y0 + b) if box_format == "xywh_pixels" else (a, b)
    if x1 < x0 or y1 < y0:
        hint = "" if box_format == "xywh_pixels" else "; for COCO's (x, y, width, height) pass box_format='xywh_pixels'"
        raise ValueError(f"instance {index}: box {values} has a negative width or height{hint}.")
    return x0, y0, x1, y1


def _score(instance: Mapping[str, Any]) -> Any:
    """The score of a det instance; 1 when it has none (`datasets` fills a missing key with None)."""
    score = instance.get("score")
    return 1.0 if score is None else score


def _is_finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _feature_dtype(feature: Any) -> str | None:
    """The NumPy dtype of an array column (`Array2D`, `Array3D`, nested lists of a `Value`), which `map` hands over as
    nested Python lists; None for image features (PIL images keep their own)."""
    while isinstance(feature, (datasets.List, datasets.LargeList)):
        feature = feature.feature
    arrays = (datasets.Value, datasets.Array2D, datasets.Array3D)
    dtype = feature.dtype if isinstance(feature, arrays) else None
    return dtype if dtype in np.sctypeDict else None


def _is_fixed_shape_array(feature: Any) -> bool:
    """Whether a column holds arrays of one shape (`Array2D` ... `Array5D` with every size given)."""
    arrays = (datasets.Array2D, datasets.Array3D, datasets.Array4D, datasets.Array5D)
    return isinstance(feature, arrays) and None not in feature.shape


def _arrow_arrays(table: Any, column: str) -> np.ndarray | None:
    """A fixed-shape array column of an Arrow table as one (N, ...) array in its stored dtype, or None where there is
    no table or the column has missing rows. `datasets`' Python or numpy view of such a column is built row by row
    (nested lists, or int64 arrays), ~20-30x slower to make and to turn back into one array."""
    if table is None or column not in table.column_names or table.column(column).null_count:
        return None
    return table.column(column).combine_chunks().to_numpy(zero_copy_only=False)


def fixed_shape_arrays(dataset: datasets.Dataset) -> dict[str, np.ndarray]:
    """The fixed-shape array columns (`Array2D` ... `Array5D`) of `dataset` that have no missing rows, each as one
    `(N, ...)` array in its stored dtype, read from the dataset's Arrow table in one piece (row selections
    included). Only those columns are gathered from the table."""
    names = [name for name, feature in dataset.features.items() if _is_fixed_shape_array(feature)]
    if not names:
        return {}
    table = dataset.select_columns(names).with_format("arrow")[:]
    arrays = {name: _arrow_arrays(table, name) for name in names}
    return {name: values for name, values in arrays.items() if values is not None}


def _image_array(value: Any, column: str, row: int, dtype: str | None = None) -> np.ndarray:
    """One image of a row, checked: present, an image, a real dtype, finite, 2-D or 3-D, no empty side."""
    where = f"row {row} of column {column!r}"
    if value is None:
        raise ValueError(
            f"{where} has no image (None); drop such rows first, e.g. dataset.filter(lambda row: row[{column!r}] is "
            "not None)."
        )
    check_image_object(value, where)
    if isinstance(value, Image.Image) and value.mode in ("RGBA", "LA", "CMYK", "YCbCr"):
        value = value.convert("RGB")
    array = np.asarray(value, dtype=None if isinstance(value, Image.Image) else dtype)  # "P" images keep their ids
    if array.size == 0:
        raise ValueError(f"{where} is an empty image: shape {array.shape}.")
    if array.ndim not in (2, 3):
        raise ValueError(f"{where}: expected an image of shape (H, W) or (H, W, C), got {array.shape}.")
    check_image_values(array, where)
    return array


# ---------------------------------------------------------------------------------------------------------------------
# The map function


class _Pretokenizer:
    """Batched map function: crops, tokenises and serialises one batch of rows, and counts what it leaves out."""

    def __init__(
        self, image_columns, text_columns, text_tokenizer, processor, num_crops, min_crop_scale, seed, dtypes, fixed_shape
    ):
        self.image_columns = image_columns
        self.dtypes = dtypes  # NumPy dtype of array source columns
        self.fixed_shape = fixed_shape  # source columns of fixed-shape arrays, read from Arrow as one array
        self.text_columns = text_columns
        self.text_tokenizer = text_tokenizer
        self.processor = processor
        self.num_crops = num_crops
        self.min_crop_scale = min_crop_scale
        self.seed = seed
        self.counts: dict[str, Counter] = defaultdict(Counter)  # per output column: boxes and tokens left out

    def __call__(self, batch: dict[str, list], indices: list[int], offset: int) -> dict[str, list]:
        rows = [offset + i for i in indices]
        images = {}
        table = getattr(batch, "pa_table", None)  # `datasets` formats a batch's columns lazily from it
        for c in self.image_columns:
            if c.source not in images:
                values = _arrow_arrays(table, c.source) if c.source in self.fixed_shape else None
                values = batch[c.source] if values is None else values
                dtype = self.dtypes.get(c.source)
                images[c.source] = [_image_array(v, c.source, row, dtype) for v, row in zip(values, rows)]
        sizes = []
        for r, row in enumerate(rows):
            shapes = {source: arrays[r].shape[:2] for source, arrays in images.items()}
            if len(set(shapes.values())) > 1:
                raise ValueError(f"Row {row}: image columns differ in size, {shapes}; they must be aligned.")
            sizes.append(next(iter(shapes.values())) if shapes else None)
        settings = [
            crop_settings(np.random.default_rng((self.seed, row)), *size, self.num_crops, self.min_crop_scale)
            if size is not None else None
            for row, size in zip(rows, sizes)
        ]
        output: dict[str, list] = {}
        if self.image_columns:
            output["crop_settings"] = settings
        for column in self.image_columns:
            crops = [arr[t : t + h, l : l + w] for arr, s in zip(images[column.source], settings) for t, l, h, w, _ in s]
            flips = np.array([f for s in settings for *_, f in s], dtype=bool)
            if column.spec.kind == PIXELS:
                self._check_pixels(column, images[column.source], rows)
                pixels = np.stack([self._resize_uint8(c, column) for c in crops])
                pixels[flips] = pixels[flips, :, ::-1]
                output[column.modality] = list(pixels.reshape(len(rows), self.num_crops, *pixels.shape[1:]))
            else:
                ids = self._tokenize(column, crops, flips, rows)
                output[column.modality] = list(ids.reshape(len(rows), self.num_crops, -1))
        for column in self.text_columns:
            if column.follows_crops:
                output[column.modality] = self._serialize_boxes(column, batch[column.source], settings, sizes, rows)
            else:
                output[column.modality] = self._serialize(column, batch[column.source], rows)
        return output

    @staticmethod
    def _check_pixels(column: ImageColumn, arrays: list[np.ndarray], rows: list[int]) -> None:
        for array, row in zip(arrays, rows):
            if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
                raise ValueError(
                    f"{column.modality}: pixel columns keep uint8 RGB images (H, W, 3); row {row} of column "
                    f"{column.source!r} is {array.dtype} {array.shape}. Convert it first: image.convert('RGB') for "
                    "PIL images, (image * 255).round().astype(np.uint8) for floats in [0, 1]."
                )

    def _resize_uint8(self, crop: np.ndarray, column: ImageColumn) -> np.ndarray:
        size = (column.spec.image_size, column.spec.image_size)
        return np.asarray(Image.fromarray(crop).resize(size, resample=self.processor.resample))

    def _tokenize(self, column: ImageColumn, crops: list[np.ndarray], flips: np.ndarray, rows: list[int]) -> np.ndarray:
        spec = column.spec
        family = get_family(column.preprocess_as) if column.preprocess_as else spec.family
        preprocess = family.function("preprocess")
        with error_context(f"{column.modality} (rows {rows[0]}-{rows[-1]} of column {column.source!r})"):
            inputs = preprocess(self.processor, crops, spec, **column.processor_kwargs)  # (N, C, S, S) or (N, S, S)
        hflip = spec.family.function("hflip") if spec.family.has("hflip") else hflip_image
        inputs[flips] = hflip(inputs[flips])
        tokenizer = column.tokenizer
        encode = getattr(tokenizer, "encode", tokenizer)
        parameter = next(tokenizer.parameters(), None) if isinstance(tokenizer, torch.nn.Module) else None
        device = parameter.device if parameter is not None else "cpu"
        with torch.no_grad():
            ids = encode(torch.from_numpy(np.ascontiguousarray(inputs)).to(device))
        if not isinstance(ids, torch.Tensor):
            raise TypeError(f"{column.modality}: the tokenizer must return a tensor of ids, got {type(ids).__name__}.")
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise TypeError(f"{column.modality}: the tokenizer must return integer ids, got {ids.dtype}.")
        if ids.dim() < 2 or ids.shape[0] != len(crops):
            raise ValueError(
                f"{column.modality}: the tokenizer returned ids of shape {tuple(ids.shape)} for {len(crops)} images; "
                f"expected ({len(crops)}, {spec.num_tokens}) or ({len(crops)}, {spec.grid_size}, {spec.grid_size})."
            )
        ids = ids.reshape(len(crops), -1).cpu().numpy()
        expected = spec.num_tokens
        if ids.shape[1] != expected:
            raise ValueError(
                f"{column.modality}: the tokenizer gave {ids.shape[1]} tokens per image, the modality has {expected}."
            )
        _check_vocabulary(ids, spec, f"{column.modality}: the tokenizer")
        return ids.astype(np.int32)

    def _encode_texts(self, texts: list[str], column: TextColumn) -> list[list[int]]:
        if not texts:
            return []
        encoded = self.text_tokenizer(texts, add_special_tokens=False)
        if not isinstance(encoded, Mapping) or "input_ids" not in encoded:
            raise TypeError(
                f"{column.modality}: text_tokenizer(texts, add_special_tokens=False) must return a dict with "
                f"'input_ids' (as transformers tokenizers do), got {type(encoded).__name__}."
            )
        ids = [list(sequence) for sequence in encoded["input_ids"]]
        if len(ids) != len(texts):
            raise ValueError(
                f"{column.modality}: the text tokenizer returned {len(ids)} id lists for {len(texts)} texts."
            )
        for sequence in ids:
            if not all(isinstance(t, numbers.Integral) for t in sequence):
                raise TypeError(f"{column.modality}: the text tokenizer returned non-integer ids, e.g. {sequence[:5]}.")
            spec = get_modality(column.modality)
            _check_vocabulary(np.asarray(sequence, dtype=np.int64), spec, f"{column.modality}: the text tokenizer")
        return ids

    def _text(self, column: TextColumn, value: Any, row: int, serialize: Callable | None) -> str | list[str]:
        """The text (or chunks) of one sample: a string as it is, anything else through the serializer."""
        where = f"{column.modality}: row {row} of column {column.source!r}"
        if value is None:
            raise ValueError(f"{where} is None; drop such rows first (dataset.filter) or give an empty sample.")
        if isinstance(value, str) and not column.chunks:
            return value
        if serialize is None:
            family = get_modality(column.modality).family
            raise TypeError(
                f"{where} is a {type(value).__name__}: text columns hold strings (the family {family.name!r} has no "
                "serializer; give TextColumn(serializer=...))."
            )
        with error_context(where):
            text = serialize(value)
        if column.chunks:
            if isinstance(text, str) or not isinstance(text, Sequence) or not all(isinstance(t, str) for t in text):
                raise TypeError(f"{where}: a chunked serializer must return a list of strings, got {text!r}.")
        elif not isinstance(text, str):
            raise TypeError(f"{where}: the serializer must return a string, got {type(text).__name__}.")
        return text

    def _serialize(self, column: TextColumn, values: list, rows: list[int]) -> list:
        family = get_modality(column.modality).family
        serialize = column.serializer or (family.function("serialize") if family.has("serialize") else None)
        texts = [self._text(column, value, row, serialize) for value, row in zip(values, rows)]
        eos = self.text_tokenizer.eos_token_id
        if not column.chunks:
            ids = [seq + [eos] for seq in self._encode_texts(texts, column)]
            self._count_lengths(column, [len(seq) for seq in ids])
            return ids
        # chunk-wise masking: one id list per chunk, [EOS] as a chunk of its own
        chunked = [{"chunks": self._encode_texts(list(chunks), column) + [[eos]]} for chunks in texts]
        self._count_lengths(column, [sum(len(chunk) for chunk in c["chunks"]) for c in chunked])
        return chunked

    def _serialize_boxes(self, column: TextColumn, values: list, settings: list, sizes: list, rows: list[int]) -> list:
        """One sequence per crop: the row's boxes through each crop (det)."""
        bins = getattr(self.text_tokenizer, "num_value_bins", NUM_BINS)
        counts = self.counts[column.modality]
        texts = []
        for value, crops, size, row in zip(values, settings, sizes, rows):
            where = f"{column.modality}: row {row} of column {column.source!r}"
            if not isinstance(value, Mapping) or "instances" not in value:
                got = f"keys {sorted(value)}" if isinstance(value, Mapping) else type(value).__name__
                raise ValueError(
                    f"{where}: expected 4M's det format {{'instances': [{{'boxes', 'class_name', 'score'}}, ...]}}, "
                    f"got {got}."
                )
            instances = value["instances"]
            with error_context(where):
                cropped = [crop_boxes(instances, crop, *size, column.min_score, column.box_format) for crop in crops]
            scored = sum(1 for instance in instances if _score(instance) >= column.min_score)
            counts.update(
                boxes=len(instances), low_score=len(instances) - scored, placed=scored * len(crops),
                outside=sum(scored - len(boxes) for boxes, _ in cropped),
            )  # fmt: skip
            texts.extend(boxes_to_text(boxes, labels, num_bins=bins) for boxes, labels in cropped)
        ids = [seq + [self.text_tokenizer.eos_token_id] for seq in self._encode_texts(texts, column)]
        self._count_lengths(column, [len(seq) for seq in ids])
        return [ids[r * self.num_crops : (r + 1) * self.num_crops] for r in range(len(values))]

    def _count_lengths(self, column: TextColumn, lengths: list[int]) -> None:
        budget = get_modality(column.modality).max_tokens
        counts = self.counts[column.modality]
        over = [length - budget for length in lengths if length > budget]
        counts.update(sequences=len(lengths), long=len(over), cut=sum(over))
        counts["longest"] = max([counts["longest"], *lengths])

    def warn_left_out(self) -> None:
        """One warning per output column for the boxes and tokens the rows processed so far leave out."""
        for column in self.text_columns:
            counts = self.counts.get(column.modality)
            if not counts:
                continue
            parts = []
            if counts["outside"]:
                placed = f"{counts['outside']} of {counts['placed']} boxes (counted once per crop)"
                parts.append(f"{placed} fell outside their crop")
            if counts["low_score"]:
                low = f"{counts['low_score']} of {counts['boxes']} boxes"
                parts.append(f"{low} scored below min_score={column.min_score}")
            if parts:
                logger.warning(f"{column.modality}: {' and '.join(parts)}; they are left out of the crops' sequences.")
            if counts["long"]:
                budget = get_modality(column.modality).max_tokens
                logger.warning(
                    f"{column.modality}: {counts['long']} of {counts['sequences']} sequences are longer than the "
                    f"modality's max_tokens ({budget}, [EOS] included; the longest has {counts['longest']}). They are "
                    f"stored whole; the masking collator keeps their first {budget} tokens ({counts['cut']} tokens cut "
                    "in all)."
                )


def _check_vocabulary(ids: np.ndarray, spec: ModalitySpec, source: str) -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= spec.vocab_size):
        raise ValueError(
            f"{source} gave ids in [{ids.min()}, {ids.max()}], outside the modality's vocabulary [0, "
            f"{spec.vocab_size - 1}]; the tokenizer must match the modality's vocab_size ({spec.vocab_size})."
        )


def _column_list(columns: Any, column_class: type, name: str) -> list:
    """`image_columns` / `text_columns` as a list, each entry of the right class."""
    if isinstance(columns, (ImageColumn, TextColumn, str)) or not isinstance(columns, Iterable):
        raise TypeError(
            f"{name} must be a list of {column_class.__name__}, got {type(columns).__name__}; wrap a single column "
            "as [column]."
        )
    columns = list(columns)
    for index, column in enumerate(columns):
        if not isinstance(column, column_class):
            other = "text_columns" if isinstance(column, TextColumn) else "image_columns"
            hint = f"; pass it in {other}" if isinstance(column, (ImageColumn, TextColumn)) else ""
            raise TypeError(f"{name}[{index}] must be a {column_class.__name__}, got {type(column).__name__}{hint}.")
    return columns


def _check_text_tokenizer(text_tokenizer: Any) -> None:
    if text_tokenizer is None:
        raise ValueError("Text columns need a `text_tokenizer` (e.g. FourMTokenizer).")
    if not callable(text_tokenizer):
        raise TypeError(
            "text_tokenizer must be callable as text_tokenizer(texts, add_special_tokens=False) (e.g. a "
            f"FourMTokenizer), got {type(text_tokenizer).__name__}."
        )
    eos = getattr(text_tokenizer, "eos_token_id", None)
    if isinstance(eos, bool) or not isinstance(eos, numbers.Integral) or eos < 0:
        raise ValueError(f"text_tokenizer needs an integer eos_token_id (sequences end with [EOS]), got {eos!r}.")


def _output_features(dataset, image_columns, text_columns, num_crops, removed) -> datasets.Features:
    features = {k: v for k, v in dataset.features.items() if k not in removed}
    ids = datasets.List(datasets.Value("int32"))
    if image_columns:
        features["crop_settings"] = datasets.Array2D((num_crops, 5), "int32")
    for column in image_columns:
        spec = column.spec
        if spec.kind == PIXELS:
            features[column.modality] = datasets.Array4D((num_crops, spec.image_size, spec.image_size, 3), "uint8")
        else:
            features[column.modality] = datasets.Array2D((num_crops, spec.num_tokens), "int32")
    for column in text_columns:
        if column.follows_crops:
            features[column.modality] = datasets.List(ids)
        else:
            features[column.modality] = {"chunks": datasets.List(ids)} if column.chunks else ids
    return datasets.Features(features)


def pretokenize(
    dataset: datasets.Dataset,
    image_columns: Sequence[ImageColumn] = (),
    text_columns: Sequence[TextColumn] = (),
    *,
    text_tokenizer: Any = None,
    image_processor: FourMImageProcessor | None = None,
    image_size: int | None = None,
    num_crops: int = 1,
    min_crop_scale: float = 0.8,
    seed: int = 0,
    batch_size: int = 32,
    num_shards: int = 1,
    cache_dir: str | os.PathLike | None = None,
    remove_source_columns: bool = True,
    fingerprint: str | None = None,
    num_proc: int | None = None,
    output_dir: str | os.PathLike | None = None,
    shard_format: str = "parquet",
) -> datasets.Dataset:
    """Tokenise the image columns and serialise the text columns of `dataset` (see the module docstring).

    Args:
        dataset (`datasets.Dataset`): rows with aligned images (same height and width in every image column).
        image_columns (`Sequence[ImageColumn]`), text_columns (`Sequence[TextColumn]`): what to make.
        text_tokenizer (*optional*): a tokenizer called as `tokenizer(texts, add_special_tokens=False)` with an
            `eos_token_id` (e.g. [`FourMTokenizer`]); needed for text columns.
        image_processor (`FourMImageProcessor`, *optional*): normalisation of VQ model inputs; defaults to one that
            resizes crops straight to each modality's resolution (no second centre crop).
        image_size (`int`, *optional*): side of the resized crops; each image column is resized to its modality's
            resolution, so this only checks that they all have this one.
        num_crops (`int`, *optional*, defaults to 1): crops per row (crop 0 is the centre square).
        min_crop_scale (`float`, *optional*, defaults to 0.8): smallest area fraction of the random crops.
        seed (`int`, *optional*, defaults to 0): crops of row i are drawn from `(seed, i)`.
        batch_size (`int`, *optional*, defaults to 32): rows per `map` batch (times `num_crops` images per encode).
        num_shards (`int`, *optional*, defaults to 1): contiguous shards, each mapped and cached on its own.
        cache_dir (`str`, *optional*): where the shard files go; defaults to the dataset's own cache directory. An
            in-memory dataset without `cache_dir` is processed in memory (nothing to resume from).
        remove_source_columns (`bool`, *optional*, defaults to `True`): drop the source columns consumed.
        fingerprint (`str`, *optional*): cache key of the result; by default a hash of the dataset's fingerprint and of
            every setting, tokenizers included.
        num_proc (`int`, *optional*): processes working on the shards at once, each mapping (and writing) whole
            shards; they are forked (the tokenizers are not pickled) and run one torch thread each.
        output_dir (`str`, *optional*): also write the result there as `num_shards` shards for streaming.
        shard_format (`str`, *optional*, defaults to `"parquet"`): `"parquet"` or `"tar"` (see
            `fourm_hf.data.streaming`).
    """
    if not isinstance(dataset, datasets.Dataset):
        hint = "; pick a split, e.g. dataset['train']" if isinstance(dataset, datasets.DatasetDict) else ""
        raise TypeError(f"dataset must be a datasets.Dataset, got {type(dataset).__name__}{hint}.")
    image_columns = _column_list(image_columns, ImageColumn, "image_columns")
    text_columns = _column_list(text_columns, TextColumn, "text_columns")
    if not image_columns and not text_columns:
        raise ValueError("Nothing to pre-tokenise: give image_columns and/or text_columns.")
    if len(dataset) == 0:
        raise ValueError("The dataset has no rows: nothing to pre-tokenise.")
    check_int(num_crops, "num_crops", minimum=1)
    check_number(min_crop_scale, "min_crop_scale", 0, 1, open_minimum=True)
    check_int(seed, "seed", minimum=0)
    check_int(batch_size, "batch_size", minimum=1)
    check_int(num_shards, "num_shards", minimum=1, maximum=len(dataset))
    check_bool(remove_source_columns, "remove_source_columns")
    check_choice(shard_format, "shard_format", SHARD_FORMATS)
    if num_proc is not None:
        check_int(num_proc, "num_proc", minimum=1)
    if image_size is not None:
        check_int(image_size, "image_size", minimum=1)
    if image_processor is not None and not isinstance(image_processor, FourMImageProcessor):
        raise TypeError(f"image_processor must be a FourMImageProcessor, got {type(image_processor).__name__}.")
    for name, value in (("cache_dir", cache_dir), ("fingerprint", fingerprint), ("output_dir", output_dir)):
        if value is not None and not isinstance(value, str if name == "fingerprint" else (str, os.PathLike)):
            raise TypeError(f"{name} must be a string, got {type(value).__name__}.")
    sources = [c.source for c in image_columns + text_columns]
    missing = sorted(set(sources) - set(dataset.column_names))
    if missing:
        raise ValueError(
            f"Columns {missing} are not in the dataset; it has {dataset.column_names}."
            f"{close_match(missing[0], dataset.column_names)}"
        )
    outputs = [c.modality for c in image_columns + text_columns]
    if len(set(outputs)) != len(outputs):
        raise ValueError(f"Output columns must be distinct, got {outputs}.")
    if text_columns:
        _check_text_tokenizer(text_tokenizer)
    cropped = [c.modality for c in text_columns if c.follows_crops]
    if cropped and not image_columns:
        raise ValueError(
            f"{cropped[0]}: boxes are cropped with the images; give an image column of the same rows (their size "
            "sets the crops)."
        )
    sizes = {c.modality: c.spec.image_size for c in image_columns}
    if image_size is not None and any(size != image_size for size in sizes.values()):
        raise ValueError(f"image_size={image_size}, but the image columns' modalities have the resolutions {sizes}.")
    default_size = image_size or next(iter(sizes.values()), 224)
    processor = image_processor or FourMImageProcessor(image_size=default_size, do_center_crop=False)
    dtypes = {c.source: _feature_dtype(dataset.features[c.source]) for c in image_columns}
    fixed_shape = {c.source for c in image_columns if _is_fixed_shape_array(dataset.features[c.source])}
    function = _Pretokenizer(
        image_columns, text_columns, text_tokenizer, processor, num_crops, min_crop_scale, seed, dtypes, fixed_shape
    )
    removed = set(outputs) | (set(sources) if remove_source_columns else set())
    features = _output_features(dataset, image_columns, text_columns, num_crops, removed)
    if fingerprint is None:
        settings = [dataset._fingerprint, image_columns, text_columns, text_tokenizer, processor.to_dict(), image_size,
                    num_crops, min_crop_scale, seed, remove_source_columns]
        fingerprint = datasets.fingerprint.Hasher.hash(settings)
    if cache_dir is None and dataset.cache_files:
        cache_dir = os.path.dirname(dataset.cache_files[0]["filename"])

    jobs, offset = [], 0
    for index in range(num_shards):
        shard = dataset.shard(num_shards, index, contiguous=True) if num_shards > 1 else dataset
        cache_file = None
        if cache_dir is not None:
            os.makedirs(cache_dir, exist_ok=True)
            cache_file = os.path.join(cache_dir, f"pretokenized-{fingerprint}-{index:05d}-of-{num_shards:05d}.arrow")
        map_kwargs = {
            "with_indices": True, "batched": True, "batch_size": batch_size, "fn_kwargs": {"offset": offset},
            "remove_columns": [c for c in shard.column_names if c in removed], "features": features,
            "cache_file_name": cache_file, "load_from_cache_file": cache_file is not None,
            "new_fingerprint": f"{fingerprint}-{index}-{num_shards}",
            "desc": f"Pre-tokenising shard {index + 1}/{num_shards}",
        }  # fmt: skip
        jobs.append((function, shard, map_kwargs, index, offset, output_dir, shard_format))
        offset += len(shard)
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
    results = run_parallel(_pretokenize_shard, jobs, num_proc or 1)
    function.counts = defaultdict(Counter)
    for _, counts in results:
        for modality, counter in counts.items():
            longest = max(function.counts[modality]["longest"], counter["longest"])
            function.counts[modality].update(counter)
            function.counts[modality]["longest"] = longest
    function.warn_left_out()
    shards = [mapped for mapped, _ in results]
    return datasets.concatenate_datasets(shards) if num_shards > 1 else shards[0]


def _pretokenize_shard(function, shard, map_kwargs, index, offset, output_dir, shard_format):
    """Map one shard (and write it to `output_dir`); returns it with the counts of what its rows left out."""
    function.counts = defaultdict(Counter)
    mapped = shard.map(function, **map_kwargs)
    if output_dir is not None:
        write_shard(mapped, output_dir, index, offset, shard_format)
    return mapped, function.counts


__all__ = [
    "BOX_FORMATS", "ImageColumn", "TextColumn", "crop_boxes", "crop_settings", "fixed_shape_arrays", "normalized_boxes",
    "pretokenize",
]  # fmt: skip
