"""Per-modality image preprocessing for 4M, with NumPy and PIL only.

Every image-like modality is centre-cropped to a square and resized to the modality's resolution, then normalised
as the released models and tokenizers expect:

| input | output | normalisation |
|---|---|---|
| RGB for the 4M pixel input (`rgb@224`) | `(B, 3, S, S)` float | ImageNet mean/std |
| RGB for the RGB tokenizer (`tok_rgb@224`) | `(B, 3, S, S)` float | mean = std = 0.5, i.e. [-1, 1] |
| depth (16-bit PNG or float map) | `(B, 1, S, S)` float | per image: minus the mean, over the std, of the values between the 10% and 90% quantiles |
| surface normals (RGB PNG or float in [-1, 1]) | `(B, 3, S, S)` float | [-1, 1] |
| edges (grey image) | `(B, 1, S, S)` float | [-1, 1] |
| semantic segmentation (COCO class ids, 255 = void) | `(B, S, S)` int64 | ids + 1, void -> 0 (134 classes) |
| feature maps (CLIP, DINOv2, ...) | `(B, C, h, w)` float | unchanged |
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.image_processing_base import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling
from transformers.utils import logging

from ...checks import check_bool, check_choice, check_int, check_number, close_match

logger = logging.get_logger(__name__)

ImageLike = Any  # a PIL image, a NumPy array or a torch tensor
TOKENIZER_MEAN = (0.5, 0.5, 0.5)
TOKENIZER_STD = (0.5, 0.5, 0.5)
NORMALIZATIONS = ("imagenet", "tokenizer")


def _as_list(images: ImageLike | Sequence[ImageLike], single_channel: bool = False) -> list[ImageLike]:
    """A single image or a batch (list, tuple, or array/tensor with a leading batch axis) as a list. Arrays of
    single-channel modalities are batches when 3-D `(B, H, W)` (unless shaped `(H, W, 1)`)."""
    if isinstance(images, (list, tuple)):
        return list(images)
    ndim = getattr(images, "ndim", None)
    if ndim == 4 or (single_channel and ndim == 3 and images.shape[-1] != 1):
        return list(images)
    return [images]


def _to_numpy(image: ImageLike) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image)
    if hasattr(image, "detach"):  # torch tensor
        tensor = image.detach().cpu()
        return tensor.float().numpy() if str(tensor.dtype) == "torch.bfloat16" else tensor.numpy()  # no NumPy bf16
    return np.asarray(image)


def _channels_last(array: np.ndarray, channels: int, modality: str) -> np.ndarray:
    """`(H, W)`, `(H, W, C)` or `(C, H, W)` -> `(H, W, C)` with C == `channels`, or a ValueError."""
    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim == 3 and array.shape[-1] not in (1, 3, 4) and array.shape[0] in (1, 3, 4):
        array = array.transpose(1, 2, 0)
    if array.ndim != 3 or array.shape[-1] != channels:
        hint = " (drop the alpha channel: image[..., :3])" if array.ndim == 3 and array.shape[-1] == 4 else ""
        raise ValueError(
            f"{modality}: expected an image with {channels} channel(s) as (H, W, C), (C, H, W)"
            f"{' or (H, W)' if channels == 1 else ''}, got shape {tuple(array.shape)}{hint}."
        )
    return array


def check_image_object(image: Any, what: str) -> None:
    """A TypeError unless `image` is an image (PIL, array or tensor): not None, not a file path."""
    if image is None or isinstance(image, (str, bytes, os.PathLike)):
        hint = "" if image is None else "; load it first, e.g. with PIL.Image.open"
        raise TypeError(
            f"{what} is {type(image).__name__}{hint}; expected a PIL image, a NumPy array or a torch tensor."
        )


def check_image_values(array: np.ndarray, what: str) -> None:
    """A clear error unless `array` has a real numeric dtype (not bool, complex or object), finite values and no
    empty side."""
    if array.dtype == np.bool_ or array.dtype.kind not in "uif":
        raise TypeError(f"{what} has dtype {array.dtype}; expected integer or float values.")
    if 0 in array.shape[:2]:
        raise ValueError(f"{what} is empty: shape {tuple(array.shape)}.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"{what} has {bad} NaN or infinite values; fill them first (e.g. np.nan_to_num).")


def _image_batch(
    images: ImageLike | Sequence[ImageLike], channels: int, modality: str, pil_mode: str | None = None
) -> list[np.ndarray]:
    """A single image or a batch as checked channels-last arrays; PIL images are converted to `pil_mode` first."""
    batch = _as_list(images, single_channel=channels == 1)
    if not batch:
        raise ValueError(f"{modality}: got an empty batch (0 images); pass at least one image.")
    arrays = []
    for index, image in enumerate(batch):
        check_image_object(image, f"{modality}: image {index} of the batch")
        if pil_mode is not None and isinstance(image, Image.Image):
            image = image.convert(pil_mode)
        array = _channels_last(_to_numpy(image), channels, modality)
        check_image_values(array, f"{modality}: image {index}")
        arrays.append(array)
    return arrays


class FourMImageProcessor(BaseImageProcessor):
    r"""Image processor of 4M: one method per image-like modality, each returning a NumPy batch.

    Calling the processor on images gives `pixel_values` for the 4M RGB pixel input (ImageNet mean/std).

    Args:
        image_size (`int`, *optional*, defaults to 224): output side length (per call: `size=`).
        patch_size (`int`, *optional*, defaults to 16): inputs with a side shorter than a patch are rejected, and the
            output size must be a multiple of it.
        resample (`PILImageResampling`, *optional*, defaults to `BICUBIC`): filter for continuous modalities (PIL's
            default, as in 4M's data pipeline); segmentation always uses nearest.
        do_center_crop (`bool`, *optional*, defaults to `True`): crop the central square before resizing (4M's
            evaluation crop); otherwise the image is resized to a square directly.
        image_mean, image_std (`tuple[float]`, *optional*, ImageNet's): RGB statistics of the 4M pixel input.
        depth_scale (`float`, *optional*, defaults to 65535.0): integer depth maps are divided by it (16-bit PNGs).
        depth_truncation (`float`, *optional*, defaults to 0.1): fraction of lowest and of highest depth values left
            out of the per-image mean and standard deviation.
        depth_epsilon (`float`, *optional*, defaults to 1e-6): added to the variance.
        num_semseg_classes (`int`, *optional*, defaults to 134): classes after the shift (133 COCO panoptic + void).
        semseg_void_label (`int`, *optional*, defaults to 255): the void label of the raw maps, mapped to class 0.
    """

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        resample: PILImageResampling | int = PILImageResampling.BICUBIC,
        do_center_crop: bool = True,
        image_mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        image_std: Sequence[float] = IMAGENET_DEFAULT_STD,
        depth_scale: float = 65535.0,
        depth_truncation: float = 0.1,
        depth_epsilon: float = 1e-6,
        num_semseg_classes: int = 134,
        semseg_void_label: int = 255,
        **kwargs,
    ):
        own = [name for name in inspect.signature(type(self).__init__).parameters if name not in ("self", "kwargs")]
        for key in kwargs:  # transformers keeps unknown keys as attributes: a typo would be ignored silently
            hint = " Did you mean 'image_size'?" if key in ("size", "crop_size") else close_match(key, own, cutoff=0.7)
            if hint:
                raise TypeError(f"FourMImageProcessor got an unknown argument {key!r}.{hint}")
        super().__init__(**kwargs)
        check_int(image_size, "image_size", minimum=1)
        check_int(patch_size, "patch_size", minimum=1)
        if isinstance(resample, bool) or resample not in {int(r) for r in PILImageResampling}:
            names = ", ".join(f"{r.name}={int(r)}" for r in PILImageResampling)
            raise ValueError(f"resample must be a PILImageResampling ({names}), got {resample!r}.")
        check_bool(do_center_crop, "do_center_crop")
        for name, values in (("image_mean", image_mean), ("image_std", image_std)):
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != 3:
                raise ValueError(f"{name} must be 3 numbers (one per RGB channel), got {values!r}.")
            for value in values:
                check_number(value, name, 0, open_minimum=name == "image_std")
        check_number(depth_scale, "depth_scale", 0, open_minimum=True)
        check_number(depth_truncation, "depth_truncation", 0, 0.5, open_maximum=True)
        check_number(depth_epsilon, "depth_epsilon", 0)
        check_int(num_semseg_classes, "num_semseg_classes", minimum=1)
        check_int(semseg_void_label, "semseg_void_label")
        self.image_size = image_size
        self.patch_size = patch_size
        self.resample = int(resample)
        self.do_center_crop = do_center_crop
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.depth_scale = depth_scale
        self.depth_truncation = depth_truncation
        self.depth_epsilon = depth_epsilon
        self.num_semseg_classes = num_semseg_classes
        self.semseg_void_label = semseg_void_label

    # ----------------------------------------------------------------------------------------------------------------
    # Geometry

    def _output_size(self, size: int | None, modality: str) -> int:
        size = self.image_size if size is None else check_int(size, f"{modality}: size", minimum=1)
        if size % self.patch_size:
            raise ValueError(f"{modality}: size {size} is not a multiple of the patch size {self.patch_size}.")
        return size

    def crop_and_resize(self, array: np.ndarray, size: int, resample: int, modality: str) -> np.ndarray:
        """Centre-crop `(H, W, C)` to a square and resize it to `size` (per channel in float32, unless uint8 RGB)."""
        check_int(size, f"{modality}: size", minimum=1)
        if not isinstance(array, np.ndarray) or array.ndim != 3:
            shape = tuple(array.shape) if isinstance(array, np.ndarray) else type(array).__name__
            raise ValueError(f"{modality}: crop_and_resize takes an array of shape (H, W, C), got {shape}.")
        height, width = array.shape[:2]
        if min(height, width) < self.patch_size:
            raise ValueError(
                f"{modality}: image of {height}x{width} is smaller than one {self.patch_size}x{self.patch_size} patch."
            )
        if self.do_center_crop:
            side = min(height, width)
            top, left = (height - side) // 2, (width - side) // 2
            array = array[top : top + side, left : left + side]
        if array.shape[:2] == (size, size):
            return array
        if array.dtype == np.uint8 and array.shape[-1] == 3:
            return np.asarray(Image.fromarray(array).resize((size, size), resample=resample))
        channels = [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(array[..., c], dtype=np.float32)).resize((size, size), resample)
            )
            for c in range(array.shape[-1])
        ]
        return np.stack(channels, axis=-1).astype(array.dtype if array.dtype.kind == "i" else np.float32)

    # ----------------------------------------------------------------------------------------------------------------
    # Modalities

    def preprocess_rgb(
        self, images: ImageLike | Sequence[ImageLike], normalization: str = "imagenet", size: int | None = None
    ) -> np.ndarray:
        """RGB images (PIL, uint8 arrays, or floats in [0, 1]) -> `(B, 3, S, S)` float32.

        Args:
            normalization (`str`, *optional*, defaults to `"imagenet"`): `"imagenet"` for the 4M pixel input,
                `"tokenizer"` for the RGB tokenizer ([-1, 1]).
        """
        check_choice(normalization, "rgb: normalization", NORMALIZATIONS)
        size = self._output_size(size, "rgb")
        mean, std = (
            (self.image_mean, self.image_std) if normalization == "imagenet" else (TOKENIZER_MEAN, TOKENIZER_STD)
        )
        mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        arrays = _image_batch(images, 3, "rgb", pil_mode="RGB")
        batch = np.empty((len(arrays), size, size, 3), np.float32)  # filled in place; channels last in memory, as ever
        for index, array in enumerate(arrays):
            if array.dtype != np.uint8:
                dtype, array = array.dtype, array.astype(np.float32)
                if array.size and (array.min() < 0.0 or array.max() > 1.0):
                    raise ValueError(
                        f"rgb: float images must be in [0, 1], image {index} ({dtype}) has values in "
                        f"[{array.min():.3g}, {array.max():.3g}] (pass uint8 for 0-255 images: .astype(np.uint8))."
                    )
            array = self.crop_and_resize(array, size, self.resample, "rgb")
            array = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array
            batch[index] = (array - mean) / std
        return batch.transpose(0, 3, 1, 2)

    def truncated_standardize(self, depth: np.ndarray) -> np.ndarray:
        """Standardise one depth map with the mean and (unbiased) variance of its values between the
        `depth_truncation` and `1 - depth_truncation` quantiles (4M's robust depth normalisation)."""
        values = np.sort(depth.reshape(-1).astype(np.float64))
        kept = values[int(self.depth_truncation * values.size) : int((1 - self.depth_truncation) * values.size)]
        if kept.size < 2:
            raise ValueError(f"depth: too few pixels ({depth.size}) to standardise.")
        return ((depth - kept.mean()) / np.sqrt(kept.var(ddof=1) + self.depth_epsilon)).astype(np.float32)

    def preprocess_depth(self, depths: ImageLike | Sequence[ImageLike], size: int | None = None) -> np.ndarray:
        """Depth maps (integer maps are divided by `depth_scale`) -> standardised `(B, 1, S, S)` float32."""
        size = self._output_size(size, "depth")
        batch = []
        for array in _image_batch(depths, 1, "depth"):
            scale = self.depth_scale if np.issubdtype(array.dtype, np.integer) else 1.0
            array = self.crop_and_resize(array.astype(np.float32) / scale, size, self.resample, "depth")
            batch.append(self.truncated_standardize(array[..., 0]))
        return np.stack(batch)[:, None]

    def _preprocess_signed(
        self, images: ImageLike | Sequence[ImageLike], channels: int, size: int | None, modality: str
    ) -> np.ndarray:
        """uint8 images mapped to [-1, 1], or float images already in [-1, 1] -> `(B, C, S, S)` float32."""
        size = self._output_size(size, modality)
        batch = []
        for index, array in enumerate(_image_batch(images, channels, modality, "RGB" if channels == 3 else "L")):
            if array.dtype == np.uint8:
                array = array.astype(np.float32) / 127.5 - 1.0
            elif array.size and (array.min() < -1.0 or array.max() > 1.0):
                raise ValueError(
                    f"{modality}: float inputs must be in [-1, 1], image {index} ({array.dtype}) has values in "
                    f"[{array.min():.3g}, {array.max():.3g}] (pass uint8 for 0-255 images)."
                )
            batch.append(self.crop_and_resize(array.astype(np.float32), size, self.resample, modality))
        return np.stack(batch).transpose(0, 3, 1, 2)

    def preprocess_normals(self, normals: ImageLike | Sequence[ImageLike], size: int | None = None) -> np.ndarray:
        """Surface normals (RGB PNG, or float vectors in [-1, 1]) -> `(B, 3, S, S)` float32 in [-1, 1]."""
        return self._preprocess_signed(normals, 3, size, "normal")

    def preprocess_edges(self, edges: ImageLike | Sequence[ImageLike], size: int | None = None) -> np.ndarray:
        """Edge maps (grey uint8, or float in [-1, 1]) -> `(B, 1, S, S)` float32 in [-1, 1]."""
        return self._preprocess_signed(edges, 1, size, "edge")

    def preprocess_semseg(
        self, maps: ImageLike | Sequence[ImageLike], size: int | None = None, shifted: bool = False
    ) -> np.ndarray:
        """Semantic maps -> `(B, S, S)` int64 class ids in [0, num_semseg_classes), resized with nearest.

        Args:
            shifted (`bool`, *optional*, defaults to `False`): the maps already hold shifted ids (0 = void). Otherwise
                they hold raw ids in [0, num_semseg_classes - 1) and `semseg_void_label` for void, which become
                id + 1 and 0.
        """
        size = self._output_size(size, "semseg")
        check_bool(shifted, "semseg: shifted")
        num_raw = self.num_semseg_classes - (0 if shifted else 1)
        batch = []
        for array in _image_batch(maps, 1, "semseg"):
            array = array[..., 0]
            if not np.issubdtype(array.dtype, np.integer):
                raise TypeError(
                    f"semseg: expected integer class ids, got dtype {array.dtype} (cast whole-number maps with "
                    ".astype(np.int64))."
                )
            invalid = (array < 0) | (array >= num_raw)
            if not shifted:
                invalid &= array != self.semseg_void_label
            if invalid.any():
                raise ValueError(
                    f"semseg: labels must be in [0, {num_raw})"
                    f"{'' if shifted else f' or {self.semseg_void_label} (void)'}, got {np.unique(array[invalid])[:8].tolist()}."
                )
            if not shifted:
                array = np.where(array == self.semseg_void_label, 0, array + 1)
            resized = self.crop_and_resize(
                array.astype(np.int32)[..., None], size, PILImageResampling.NEAREST, "semseg"
            )
            batch.append(resized[..., 0].astype(np.int64))
        return np.stack(batch)

    def preprocess_features(self, features: Any, num_channels: int | None = None) -> np.ndarray:
        """Feature maps `(B, C, h, w)` (or one `(C, h, w)`) from a teacher network, checked and cast to float32."""
        if features is None or isinstance(features, (str, bytes, os.PathLike)):
            raise TypeError(f"features: expected a feature map array or tensor, got {type(features).__name__}.")
        array = _to_numpy(features)
        array = array[None] if array.ndim == 3 else array
        if array.ndim != 4 or (num_channels is not None and array.shape[1] != num_channels):
            expected = f"(B, {num_channels or 'C'}, h, w)"
            raise ValueError(f"features: expected a feature map of shape {expected}, got {tuple(array.shape)}.")
        if array.shape[0] == 0:
            raise ValueError("features: got an empty batch (0 feature maps); pass at least one.")
        if array.dtype == np.bool_ or array.dtype.kind not in "uif":
            raise TypeError(f"features: expected float values, got dtype {array.dtype}.")
        if not np.isfinite(array).all():
            raise ValueError(f"features: {int((~np.isfinite(array)).sum())} NaN or infinite values.")
        return array.astype(np.float32)

    def preprocess(
        self, images: ImageLike | Sequence[ImageLike], size: int | None = None, return_tensors: str | None = None
    ) -> BatchFeature:
        """`pixel_values` for the 4M RGB pixel input (ImageNet mean/std), `(B, 3, S, S)`."""
        pixel_values = self.preprocess_rgb(images, normalization="imagenet", size=size)
        return BatchFeature({"pixel_values": pixel_values}, tensor_type=return_tensors)

    # ----------------------------------------------------------------------------------------------------------------
    # Back to images

    def postprocess_rgb(self, pixel_values: Any, normalization: str = "imagenet") -> np.ndarray:
        """Normalised RGB `(B, 3, H, W)` -> uint8 `(B, H, W, 3)`."""
        check_choice(normalization, "rgb: normalization", NORMALIZATIONS)
        array = _to_numpy(pixel_values)
        if array.ndim != 4 or array.shape[1] != 3:
            raise ValueError(f"rgb: expected (B, 3, H, W), got {tuple(array.shape)}.")
        check_image_values(array, "rgb: pixel_values")
        array = array.astype(np.float32)
        mean, std = (
            (self.image_mean, self.image_std) if normalization == "imagenet" else (TOKENIZER_MEAN, TOKENIZER_STD)
        )
        array = array.transpose(0, 2, 3, 1) * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
        return (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)

    def postprocess_signed(self, values: Any) -> np.ndarray:
        """Normals or edges in [-1, 1], `(B, C, H, W)` -> uint8 `(B, H, W, C)`."""
        array = _to_numpy(values)
        if array.ndim != 4:
            raise ValueError(f"postprocess_signed: expected values of shape (B, C, H, W), got {tuple(array.shape)}.")
        check_image_values(array, "postprocess_signed: values")
        array = array.astype(np.float32)
        return (np.clip(array.transpose(0, 2, 3, 1) * 0.5 + 0.5, 0.0, 1.0) * 255.0).round().astype(np.uint8)

    def postprocess_semseg(self, labels: Any) -> np.ndarray:
        """Shifted class ids `(B, H, W)` (e.g. the argmax of decoded logits) -> raw ids, void as `semseg_void_label`."""
        array = _to_numpy(labels)
        if array.ndim != 3 or array.dtype.kind not in "ui":
            raise ValueError(f"semseg: expected integer class ids of shape (B, H, W), got {array.dtype} {array.shape}.")
        array = array.astype(np.int64)
        return np.where(array == 0, self.semseg_void_label, array - 1)

    # ----------------------------------------------------------------------------------------------------------------
    # Head outputs back to the original images (transformers' pipelines call these)

    def to_original_geometry(self, maps: torch.Tensor, target_size: tuple[int, int]) -> torch.Tensor:
        """Per-pixel maps `(C, S, S)` predicted on a preprocessed image -> `(C, H, W)` on the original `H x W` image
        (bilinear). The inverse of the preprocessing geometry: without centre crop the whole image was resized; with
        it the maps cover the central square, and the border columns / rows outside it repeat the nearest prediction.
        """
        if not isinstance(maps, torch.Tensor) or maps.dim() != 3:
            shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
            raise ValueError(f"maps must be a tensor of shape (C, S, S), got {shape}.")
        if (
            not isinstance(target_size, (tuple, list))
            or len(target_size) != 2
            or not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in target_size)
        ):
            raise ValueError(f"target_sizes must hold (height, width) pairs of positive integers, got {target_size!r}.")
        height, width = target_size
        side = min(height, width) if self.do_center_crop else None
        size = (side, side) if side else (height, width)
        resized = F.interpolate(maps[None].float(), size=size, mode="bilinear", align_corners=False)
        if side:
            top, left = (height - side) // 2, (width - side) // 2
            padding = (left, width - side - left, top, height - side - top)
            resized = F.pad(resized, padding, mode="replicate")
        return resized[0]

    def _target_sizes(self, batch_size: int, target_sizes: Sequence[tuple[int, int]] | None) -> list:
        """One `(height, width)` per sample, or `None` per sample to keep the model's resolution."""
        if target_sizes is None:
            return [None] * batch_size
        if isinstance(target_sizes, torch.Tensor):
            target_sizes = target_sizes.tolist()
        if not isinstance(target_sizes, (list, tuple)) or len(target_sizes) != batch_size:
            given = len(target_sizes) if isinstance(target_sizes, (list, tuple)) else type(target_sizes).__name__
            raise ValueError(f"target_sizes must hold one (height, width) per image ({batch_size}), got {given}.")
        return [tuple(size) if isinstance(size, (list, tuple)) else size for size in target_sizes]

    def post_process_semantic_segmentation(
        self, outputs: Any, target_sizes: Sequence[tuple[int, int]] | None = None
    ) -> list[torch.Tensor]:
        """Segmentation logits `(B, num_labels, S, S)` (`outputs.logits`) -> one class-id map per image, `(H, W)` at
        its `target_sizes` entry (the original image size) or `(S, S)` without `target_sizes`."""
        logits = getattr(outputs, "logits", None)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 4:
            raise ValueError("outputs must have `logits` of shape (batch, num_labels, height, width).")
        sizes = self._target_sizes(logits.shape[0], target_sizes)
        return [
            (sample if size is None else self.to_original_geometry(sample, size)).argmax(dim=0)
            for sample, size in zip(logits, sizes)
        ]

    def post_process_depth_estimation(
        self, outputs: Any, target_sizes: Sequence[tuple[int, int]] | None = None
    ) -> list[dict[str, torch.Tensor]]:
        """Depth `(B, S, S)` (`outputs.predicted_depth`) -> `[{"predicted_depth": (H, W)}]`, one per image, at its
        `target_sizes` entry (the original image size) or `(S, S)` without `target_sizes`."""
        depth = getattr(outputs, "predicted_depth", None)
        if not isinstance(depth, torch.Tensor) or depth.dim() != 3:
            raise ValueError("outputs must have `predicted_depth` of shape (batch, height, width).")
        sizes = self._target_sizes(depth.shape[0], target_sizes)
        return [
            {"predicted_depth": sample if size is None else self.to_original_geometry(sample[None], size)[0]}
            for sample, size in zip(depth, sizes)
        ]


__all__ = ["FourMImageProcessor"]
