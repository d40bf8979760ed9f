"""`pipeline("fourm-any-to-any")`: images and / or text in, any modalities the 4M model decodes out.

The pipeline strings together what the Python API does by hand: `FourMProcessor(...)` builds the modality dict, the
model's recipe (`FourMGenerationConfig.rgb_to_all` when an image is given, `caption_to_all` otherwise) chains the
targets, `model.generate` fills them in and `processor.postprocess` decodes them with the processor's VQ models.

    >>> from transformers import pipeline
    >>> generator = pipeline("fourm-any-to-any", model="outputs/demo/fourm", processor="outputs/demo/processor")
    >>> result = generator("scene.png", targets=["tok_depth@64", "caption", "det"], seed=0)
    >>> result["caption"], result["det"]["boxes"], result["tok_depth@64"].size
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import Pipeline
from transformers.image_utils import load_image

from ..checks import check_choice, check_int, check_names
from ..generation.configuration_fourm_generation import FourMGenerationConfig
from ..models.fourm.processing_fourm import FourMProcessor

TASK = "fourm-any-to-any"
OUTPUT_TYPES = ("pil", "numpy")


def to_pil(value: np.ndarray) -> Image.Image | np.ndarray:
    """One decoded image-like sample as a PIL image: uint8 `(H, W, 3)` / `(H, W, 1)` as RGB / grey, a float map
    `(H, W)` (depth) stretched to 8-bit grey between its minimum and maximum (as transformers' depth pipeline does),
    an integer map `(H, W)` (class ids) as 8-bit grey when the ids fit, else 32-bit. Anything else (feature maps)
    is returned unchanged."""
    if value.dtype == np.uint8 and value.ndim == 3 and value.shape[-1] in (1, 3):
        return Image.fromarray(value[..., 0] if value.shape[-1] == 1 else value)
    if value.ndim != 2:
        return value
    if value.dtype.kind == "f":
        low, high = float(value.min()), float(value.max())
        scaled = (value - low) / (high - low) if high > low else np.zeros_like(value)
        return Image.fromarray((scaled * 255).round().astype(np.uint8))
    if value.dtype.kind in "ui":
        fits = value.min() >= 0 and value.max() < 256
        return Image.fromarray(value.astype(np.uint8) if fits else value.astype(np.int32))
    return value


class FourMAnyToAnyPipeline(Pipeline):
    """Any-to-any generation with a `FourMForMaskedModeling` and its `FourMProcessor` (with the VQ models of the
    image-like targets).

    Call it with an image (PIL, path or URL) and / or a caption, plus optionally:
        targets (`list[str]`): the modalities to generate, e.g. `["tok_depth@224", "caption", "det"]`; default: every
            modality the model decodes that is not given (the recipe's default).
        inputs (`dict`): further given modalities as raw data, as `FourMProcessor(inputs=...)` takes them.
        generation_config (`FourMGenerationConfig`): replaces the recipe (its targets are then the ones generated).
        seed (`int`): seeds generation, for reproducible outputs.
        output_type (`str`): `"pil"` (default) turns decoded image-like modalities into PIL images; `"numpy"` keeps
            `processor.postprocess`'s arrays (float depth, class ids, uint8 RGB).
        decode_kwargs (`dict`): passed to `processor.postprocess` (e.g. `num_steps` of a diffusion decoder).

    Returns one dict per sample `{modality name: decoded value}` holding the generated targets: images for image-like
    modalities, a `str` for captions, `{"boxes", "labels"}` for `det`, and the other sequences as
    `processor.postprocess` parses them. A list of images (or of captions) gives a list of dicts.
    """

    _load_processor = True
    _load_image_processor = False
    _load_tokenizer = False
    _load_feature_extractor = False

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not isinstance(self.processor, FourMProcessor):
            raise TypeError(
                f"{TASK} needs a FourMProcessor (processor=<path or FourMProcessor>), got "
                f"{type(self.processor).__name__}."
            )

    def _sanitize_parameters(
        self,
        targets: Sequence[str] | None = None,
        inputs: Mapping[str, Any] | None = None,
        generation_config: FourMGenerationConfig | None = None,
        seed: int | None = None,
        output_type: str | None = None,
        decode_kwargs: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> tuple[dict, dict, dict]:
        if targets is not None:
            targets = check_names(targets, "targets")
        if inputs is not None and not isinstance(inputs, Mapping):
            raise TypeError(f"inputs must be a dict {{modality name: raw data}}, got {type(inputs).__name__}.")
        if generation_config is not None and not isinstance(generation_config, FourMGenerationConfig):
            raise TypeError(
                f"generation_config must be a FourMGenerationConfig, got {type(generation_config).__name__}."
            )
        if generation_config is not None and targets is not None:
            raise ValueError("Pass targets or a generation_config (whose targets are generated), not both.")
        if seed is not None:
            check_int(seed, "seed", minimum=0)
        if output_type is not None:
            check_choice(output_type, "output_type", OUTPUT_TYPES)
        if decode_kwargs is not None and not isinstance(decode_kwargs, Mapping):
            raise TypeError(f"decode_kwargs must be a dict, got {type(decode_kwargs).__name__}.")
        preprocess = {key: value for key, value in (("inputs", inputs), ("timeout", timeout)) if value is not None}
        forward = {"targets": targets, "generation_config": generation_config, "seed": seed}
        postprocess = {"output_type": output_type or "pil", "decode_kwargs": dict(decode_kwargs or {})}
        return preprocess, forward, postprocess

    def __call__(self, images: Any = None, text: str | Sequence[str] | None = None, **kwargs: Any) -> Any:
        """Generate from `images` (one image, or a list: one sample each) and / or `text` (a caption, or a list);
        see the class docstring for the keyword arguments."""
        if images is None and text is None and not kwargs.get("inputs"):
            raise ValueError(f"{TASK}: give images, text or inputs to generate from.")
        batched = isinstance(images, (list, tuple)) or isinstance(text, (list, tuple))
        images_list = list(images) if isinstance(images, (list, tuple)) else None
        texts = list(text) if isinstance(text, (list, tuple)) else None
        if not batched:
            return super().__call__({"images": images, "text": text}, **kwargs)
        size = len(images_list if images_list is not None else texts)
        images_list = images_list if images_list is not None else [images] * size
        texts = texts if texts is not None else [text] * size
        if len(images_list) != len(texts):
            raise ValueError(f"images and text must have as many samples, got {len(images_list)} and {len(texts)}.")
        return super().__call__([{"images": i, "text": t} for i, t in zip(images_list, texts)], **kwargs)

    def preprocess(
        self, sample: Mapping[str, Any], inputs: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        image, text = sample["images"], sample["text"]
        if text is not None and not isinstance(text, str):
            raise TypeError(f"text must be a caption (str) or a list of captions, got {type(text).__name__}.")
        images = None if image is None else [load_image(image, timeout=timeout)]
        modalities = self.processor(
            images=images, text=None if text is None else [text], inputs=inputs, batch_size=1
        )
        return {"modalities": modalities}

    def _forward(
        self,
        model_inputs: dict[str, Any],
        targets: list[str] | None = None,
        generation_config: FourMGenerationConfig | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        modalities = model_inputs["modalities"]
        if generation_config is None:
            conditions = list(modalities)
            recipe = (
                FourMGenerationConfig.rgb_to_all
                if self.processor.pixel_modality in conditions
                else FourMGenerationConfig.caption_to_all
            )
            generation_config = recipe(self.model.config, conditions=conditions, targets=targets)
        names = [target.modality for target in generation_config.targets]
        generated = self.model.generate(modalities, generation_config, seed=seed, progress_bar=False)
        return {name: generated[name] for name in names}  # index by name: generate's return type may change

    def postprocess(
        self, model_outputs: dict[str, Any], output_type: str = "pil", decode_kwargs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        decoded = self.processor.postprocess(model_outputs, names=list(model_outputs), **(decode_kwargs or {}))
        result = {}
        for name, values in decoded.items():
            value = values[0]
            if isinstance(value, torch.Tensor):
                value = value.numpy()
            result[name] = to_pil(value) if output_type == "pil" and isinstance(value, np.ndarray) else value
        return result


__all__ = ["FourMAnyToAnyPipeline", "TASK", "to_pil"]
