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

Crops are drawn from `(seed, row index)`, so the output does not depend on batching. With `num_shards > 1` each shard
is cached in its own file: an interrupted run restarts where it stopped. The output is what
[`FourMMaskingCollator`] consumes (it picks one crop per sample).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image
from transformers.utils import logging

from ..modalities import IMAGE_TOKENS, PIXELS, SEQUENCE, ModalitySpec, get_family, get_modality
from ..modalities.families import hflip_image
from ..models.fourm.image_processing_fourm import FourMImageProcessor
from .serialization import NUM_BINS, boxes_to_text

logger = logging.get_logger(__name__)

CROP_ASPECT = (3 / 4, 4 / 3)


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
        spec = get_modality(self.modality)
        if spec.kind not in (PIXELS, IMAGE_TOKENS):
            raise ValueError(f"{self.modality}: an image column makes a pixel or image-token modality, not {spec.kind}.")
        if (self.tokenizer is None) != (spec.kind == PIXELS):
            need = "no tokenizer (pixels are kept)" if spec.kind == PIXELS else "a tokenizer (its VQ model)"
            raise ValueError(f"{self.modality}: a {spec.kind} column needs {need}.")
        family = get_family(self.preprocess_as) if self.preprocess_as else spec.family
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
            xmax, ymax], "class_name", "score"}]}`, coordinates in [0, 1], cropped per crop and binned with the text
            tokenizer's `num_value_bins`.
        serializer (`Callable`, *optional*): sample -> string (or list of strings with `chunks`), instead of the
            family's own `serialize`.
        chunks (`bool`, *optional*, defaults to `False`): `serializer` returns a list of strings, masked chunk-wise.
        min_score (`float`, *optional*, defaults to 0.6): det: boxes with a lower score are left out (as 4M does).
    """

    source: str
    modality: str
    serializer: Callable[[Any], str | list[str]] | None = None
    chunks: bool = False
    min_score: float = 0.6

    def __post_init__(self):
        spec = get_modality(self.modality)
        if spec.kind != SEQUENCE:
            raise ValueError(f"{self.modality}: a text column makes a sequence modality, not {spec.kind}.")
        if self.chunks and self.serializer is None:
            raise ValueError(f"{self.modality}: a chunked column needs a serializer returning a list of strings.")

    @property
    def follows_crops(self) -> bool:
        return get_modality(self.modality).family.boxes_follow_crops


# ---------------------------------------------------------------------------------------------------------------------
# Crops


def crop_settings(rng: np.random.Generator, height: int, width: int, num_crops: int, min_scale: float = 0.8) -> np.ndarray:
    """`(num_crops, 5)` int array of `(top, left, crop height, crop width, hflip)`: the centre square first, then
    random-resized crops (area fraction in `(min_scale, 1)`, aspect in (3/4, 4/3), 10 tries before falling back to
    the centre square), each flipped with probability 1/2."""
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
    instances: Sequence[Mapping[str, Any]], crop: Sequence[int], height: int, width: int, min_score: float = 0.6
) -> tuple[list[list[float]], list[str]]:
    """Boxes (normalised to the full image) seen through a crop: clipped to it, renormalised, flipped with the crop;
    boxes left with no area or scoring below `min_score` are dropped."""
    top, left, crop_h, crop_w, flip = (int(v) for v in crop)
    boxes, labels = [], []
    for instance in instances:
        if instance.get("score", 1.0) < min_score:
            continue
        xmin, ymin, xmax, ymax = instance["boxes"]
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


def _image_array(value: Any, column: str) -> np.ndarray:
    if isinstance(value, Image.Image) and value.mode in ("RGBA", "LA", "CMYK", "YCbCr"):
        value = value.convert("RGB")
    array = np.asarray(value)  # palette ("P") images keep their indices: class ids of segmentation maps
    if array.ndim not in (2, 3):
        raise ValueError(f"{column}: expected an image of shape (H, W) or (H, W, C), got {array.shape}.")
    return array


# ---------------------------------------------------------------------------------------------------------------------
# The map function


class _Pretokenizer:
    """Batched map function: crops, tokenises and serialises one batch of rows."""

    def __init__(self, image_columns, text_columns, text_tokenizer, processor, num_crops, min_crop_scale, seed):
        self.image_columns = image_columns
        self.text_columns = text_columns
        self.text_tokenizer = text_tokenizer
        self.processor = processor
        self.num_crops = num_crops
        self.min_crop_scale = min_crop_scale
        self.seed = seed

    def __call__(self, batch: dict[str, list], indices: list[int], offset: int) -> dict[str, list]:
        images = {c.source: [_image_array(v, c.source) for v in batch[c.source]] for c in self.image_columns}
        rows = len(indices)
        sizes = []
        for r in range(rows):
            shapes = {source: arrays[r].shape[:2] for source, arrays in images.items()}
            if len(set(shapes.values())) > 1:
                raise ValueError(f"Row {offset + indices[r]}: image columns differ in size, {shapes}; they must be aligned.")
            sizes.append(next(iter(shapes.values())) if shapes else None)
        settings = [
            crop_settings(np.random.default_rng((self.seed, offset + i)), *size, self.num_crops, self.min_crop_scale)
            if size is not None else None
            for i, size in zip(indices, sizes)
        ]
        output: dict[str, list] = {}
        if self.image_columns:
            output["crop_settings"] = settings
        for column in self.image_columns:
            crops = [arr[t : t + h, l : l + w] for arr, s in zip(images[column.source], settings) for t, l, h, w, _ in s]
            flips = np.array([f for s in settings for *_, f in s], dtype=bool)
            if column.spec.kind == PIXELS:
                pixels = np.stack([self._resize_uint8(c, column) for c in crops])
                pixels[flips] = pixels[flips, :, ::-1]
                output[column.modality] = list(pixels.reshape(rows, self.num_crops, *pixels.shape[1:]))
            else:
                output[column.modality] = list(self._tokenize(column, crops, flips).reshape(rows, self.num_crops, -1))
        for column in self.text_columns:
            output[column.modality] = self._serialize(column, batch[column.source], settings, sizes)
        return output

    def _resize_uint8(self, crop: np.ndarray, column: ImageColumn) -> np.ndarray:
        if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[-1] != 3:
            raise ValueError(f"{column.modality}: pixel crops are kept for uint8 RGB images, got {crop.dtype} {crop.shape}.")
        size = (column.spec.image_size, column.spec.image_size)
        return np.asarray(Image.fromarray(crop).resize(size, resample=self.processor.resample))

    def _tokenize(self, column: ImageColumn, crops: list[np.ndarray], flips: np.ndarray) -> np.ndarray:
        spec = column.spec
        family = get_family(column.preprocess_as) if column.preprocess_as else spec.family
        preprocess = family.function("preprocess")
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
        ids = ids.reshape(len(crops), -1).cpu().numpy()
        expected = spec.num_tokens
        if ids.shape[1] != expected:
            raise ValueError(f"{column.modality}: the tokenizer gave {ids.shape[1]} tokens per image, the modality has {expected}.")
        return ids.astype(np.int32)

    def _encode_texts(self, texts: list[str]) -> list[list[int]]:
        if self.text_tokenizer is None:
            raise ValueError("Text columns need a `text_tokenizer`.")
        return [list(ids) for ids in self.text_tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []

    def _serialize(self, column: TextColumn, values: list, settings: list, sizes: list) -> list:
        if column.follows_crops:
            if any(s is None for s in settings):
                raise ValueError(f"{column.modality}: boxes are cropped with the images; the dataset needs an image column.")
            bins = getattr(self.text_tokenizer, "num_value_bins", NUM_BINS)
            texts = [
                boxes_to_text(*crop_boxes(v["instances"], crop, *size, column.min_score), num_bins=bins)
                for v, s, size in zip(values, settings, sizes)
                for crop in s
            ]
            ids = [seq + [self.text_tokenizer.eos_token_id] for seq in self._encode_texts(texts)]
            return [ids[r * self.num_crops : (r + 1) * self.num_crops] for r in range(len(values))]
        family = get_modality(column.modality).family
        serialize = column.serializer or (family.function("serialize") if family.has("serialize") else None)
        serialized = [v if isinstance(v, str) and not column.chunks else serialize(v) if serialize else v for v in values]
        if not column.chunks:
            if not all(isinstance(s, str) for s in serialized):
                raise TypeError(
                    f"{column.modality}: text columns hold strings (the family {family.name!r} has no serializer; "
                    "give TextColumn(serializer=...))."
                )
            return [seq + [self.text_tokenizer.eos_token_id] for seq in self._encode_texts(serialized)]
        # chunk-wise masking: one id list per chunk, [EOS] as a chunk of its own
        return [
            {"chunks": self._encode_texts(list(chunks)) + [[self.text_tokenizer.eos_token_id]]} for chunks in serialized
        ]


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
    """
    image_columns, text_columns = list(image_columns), list(text_columns)
    if not image_columns and not text_columns:
        raise ValueError("Nothing to pre-tokenise: give image_columns and/or text_columns.")
    if num_crops < 1 or not 0 < min_crop_scale <= 1:
        raise ValueError(f"num_crops must be >= 1 and min_crop_scale in (0, 1], got {num_crops} and {min_crop_scale}.")
    sources = [c.source for c in image_columns + text_columns]
    missing = sorted(set(sources) - set(dataset.column_names))
    if missing:
        raise ValueError(f"Columns {missing} are not in the dataset; it has {dataset.column_names}.")
    outputs = [c.modality for c in image_columns + text_columns]
    if len(set(outputs)) != len(outputs):
        raise ValueError(f"Output columns must be distinct, got {outputs}.")
    sizes = {c.modality: c.spec.image_size for c in image_columns}
    if image_size is not None and any(size != image_size for size in sizes.values()):
        raise ValueError(f"image_size={image_size}, but the image columns' modalities have the resolutions {sizes}.")
    default_size = image_size or next(iter(sizes.values()), 224)
    processor = image_processor or FourMImageProcessor(image_size=default_size, do_center_crop=False)
    function = _Pretokenizer(image_columns, text_columns, text_tokenizer, processor, num_crops, min_crop_scale, seed)
    removed = set(outputs) | (set(sources) if remove_source_columns else set())
    features = _output_features(dataset, image_columns, text_columns, num_crops, removed)
    if fingerprint is None:
        settings = [dataset._fingerprint, image_columns, text_columns, text_tokenizer, processor.to_dict(), image_size,
                    num_crops, min_crop_scale, seed, remove_source_columns]
        fingerprint = datasets.fingerprint.Hasher.hash(settings)
    if cache_dir is None and dataset.cache_files:
        cache_dir = os.path.dirname(dataset.cache_files[0]["filename"])
    if num_shards < 1 or num_shards > max(len(dataset), 1):
        raise ValueError(f"num_shards must be in [1, {max(len(dataset), 1)}], got {num_shards}.")

    shards, offset = [], 0
    for index in range(num_shards):
        shard = dataset.shard(num_shards, index, contiguous=True) if num_shards > 1 else dataset
        cache_file = None
        if cache_dir is not None:
            os.makedirs(cache_dir, exist_ok=True)
            cache_file = os.path.join(cache_dir, f"pretokenized-{fingerprint}-{index:05d}-of-{num_shards:05d}.arrow")
        shards.append(
            shard.map(
                function,
                with_indices=True,
                batched=True,
                batch_size=batch_size,
                fn_kwargs={"offset": offset},
                remove_columns=[c for c in shard.column_names if c in removed],
                features=features,
                cache_file_name=cache_file,
                load_from_cache_file=cache_file is not None,
                new_fingerprint=f"{fingerprint}-{index}-{num_shards}",
                desc=f"Pre-tokenising shard {index + 1}/{num_shards}",
            )
        )
        offset += len(shard)
    return datasets.concatenate_datasets(shards) if num_shards > 1 else shards[0]


__all__ = ["ImageColumn", "TextColumn", "crop_boxes", "crop_settings", "pretokenize"]
