"""`FourMProcessor`: raw images, maps and text to 4M's modality dict, and model outputs back to images, text, boxes.

Calling the processor turns each given modality into a fully visible encoder input and adds empty targets, in the
forward contract of `FourMForMaskedModeling` (official mask semantics, True = hidden / not a target):

| kind | `tensor` | `input_mask` | `target_mask` | `decoder_attention_mask` |
|---|---|---|---|---|
| input, pixels | `(B, C, H, W)` float | `(B, N)` False | `(B, N)` True | `(B, N)` 0 |
| input, image tokens | `(B, N)` ids | False | True | 0 |
| input, sequence | `(B, L)` ids + `[EOS]`, `[PAD]` after | False up to `[EOS]` | True | 0 |
| target, image tokens | `(B, N)` zeros | True | False | absent |
| target, sequence | `[S_1] [S_1] [PAD] ... [S_2]` | False at 0 only | True at 0 only | 1 except at 0 |

Image-token modalities are encoded with the processor's modality tokenizers (`vq_models`, e.g. a `FourMVQVAE`
for `tok_semseg@224`), sequences with the text tokenizer after serialisation (`serialization_fourm`).
`postprocess` inverts all of it.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, PreTrainedModel
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging

from .image_processing_fourm import FourMImageProcessor
from ...modalities.registry import IMAGE_TOKENS, PIXELS, SEQUENCE, SEQUENCE_EMBEDDING, ModalityInfo, get_modality
from ...data.serialization import (
    boxes_to_text,
    merge_spans,
    metadata_to_text,
    palette_to_text,
    poses_to_text,
    sam_instances_to_text,
    text_to_boxes,
    text_to_metadata,
    text_to_palette,
    text_to_poses,
    text_to_sam_instances,
)
from .tokenization_fourm import FourMTokenizer

logger = logging.get_logger(__name__)

Modalities = dict[str, dict[str, torch.Tensor]]


@dataclass(frozen=True)
class ImageCodec:
    """How an image-like modality family is prepared for its tokenizer and turned back into data.

    Args:
        preprocess: `(image_processor, raw batch, size) -> np.ndarray` batch for the modality tokenizer (or the model).
        postprocess: `(image_processor, decoded tensor) -> np.ndarray` user-facing data.
    """

    preprocess: Callable[[FourMImageProcessor, Any, int], np.ndarray]
    postprocess: Callable[[FourMImageProcessor, torch.Tensor], np.ndarray]


def _float_maps(processor: FourMImageProcessor, decoded: torch.Tensor) -> np.ndarray:
    return decoded.float().numpy()


_FEATURES = ImageCodec(lambda p, x, size: p.preprocess_features(x), _float_maps)
_EDGES = ImageCodec(lambda p, x, size: p.preprocess_edges(x, size), lambda p, y: p.postprocess_signed(y)[..., 0])

# Modality families (the name before "@"). Pixels decode as uint8 RGB, depth as standardised float maps (B, H, W),
# semantic segmentation as raw class ids (void = 255), feature maps as floats (B, C, h, w).
IMAGE_CODECS: dict[str, ImageCodec] = {
    "rgb": ImageCodec(lambda p, x, size: p.preprocess_rgb(x, "imagenet", size), lambda p, y: p.postprocess_rgb(y)),
    "tok_rgb": ImageCodec(
        lambda p, x, size: p.preprocess_rgb(x, "tokenizer", size), lambda p, y: p.postprocess_rgb(y, "tokenizer")
    ),
    "tok_depth": ImageCodec(lambda p, x, size: p.preprocess_depth(x, size), lambda p, y: y[:, 0].float().numpy()),
    "tok_normal": ImageCodec(lambda p, x, size: p.preprocess_normals(x, size), lambda p, y: p.postprocess_signed(y)),
    "tok_semseg": ImageCodec(
        lambda p, x, size: p.preprocess_semseg(x, size), lambda p, y: p.postprocess_semseg(y.argmax(1))
    ),
    "tok_canny_edge": _EDGES,
    "tok_sam_edge": _EDGES,
    "tok_clip": _FEATURES,
    "tok_dinov2": _FEATURES,
    "tok_imagebind": _FEATURES,
    "tok_dinov2_global": _FEATURES,
    "tok_imagebind_global": _FEATURES,
}


def _det_to_text(sample: Mapping[str, Any]) -> str:
    if not isinstance(sample, Mapping) or set(sample) != {"boxes", "labels"}:
        raise ValueError(f"det: a sample is a dict with 'boxes' and 'labels' (or a serialised string), got {sample!r}.")
    return boxes_to_text(sample["boxes"], sample["labels"])


def _text_to_det(text: str) -> dict[str, list]:
    boxes, labels = text_to_boxes(text)
    return {"boxes": boxes, "labels": labels}


# Sequence families: sample -> text (strings pass through unchanged) and text -> sample.
SEQUENCE_SERIALIZERS: dict[str, Callable[[Any], str]] = {
    "det": _det_to_text,
    "metadata": metadata_to_text,
    "color_palette": palette_to_text,
    "human_poses": poses_to_text,
    "sam_instance": sam_instances_to_text,
}
SEQUENCE_PARSERS: dict[str, Callable[[str], Any]] = {
    "det": _text_to_det,
    "metadata": text_to_metadata,
    "color_palette": text_to_palette,
    "human_poses": text_to_poses,
    "sam_instance": text_to_sam_instances,
}


def _family(name: str) -> str:
    return name.split("@")[0]


def _checked_vq_models(vq_models: Mapping[str, PreTrainedModel]) -> dict[str, PreTrainedModel]:
    for name, model in vq_models.items():
        info = get_modality(name)
        if info.kind != IMAGE_TOKENS:
            raise ValueError(f"vq_models: {name!r} is a {info.kind} modality; only image-token modalities have one.")
        if not (callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None))):
            raise TypeError(f"vq_models[{name!r}] must have `encode` and `decode`, got {type(model).__name__}.")
    return dict(vq_models)


def _token_ids(info: ModalityInfo, value: Any) -> torch.Tensor | None:
    """`value` as token ids if it is an integer array shaped `(B, N)` or `(B, h, w)` of the token grid, else None
    (raw data, e.g. a segmentation map)."""
    if not isinstance(value, (torch.Tensor, np.ndarray)):
        return None
    tensor = torch.as_tensor(value)
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        return None
    grid = info.grid_size
    return tensor.long() if tuple(tensor.shape[1:]) in ((info.num_tokens,), (grid, grid)) else None


def _batch(value: Any) -> list:
    """One sample (a string, a dict, an image, an array without batch axis) or a list of samples, as a list."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


class FourMProcessor(ProcessorMixin):
    r"""Processor of 4M: image processor + text tokenizer + modality tokenizers (VQ-VAEs / DiVAEs).

    Args:
        image_processor ([`FourMImageProcessor`]): per-modality image preprocessing.
        tokenizer ([`FourMTokenizer`]): the WordPiece tokenizer of all sequence modalities.
        vq_models (`dict[str, PreTrainedModel]`, *optional*): modality tokenizer per image-token modality name, e.g.
            `{"tok_rgb@224": FourMDiVAE(...), "tok_semseg@224": FourMVQVAE(...)}`; each needs `encode` and `decode`.

    Example:

    ```python
    >>> processor = FourMProcessor(FourMImageProcessor(), tokenizer, vq_models={"tok_semseg@224": semseg_vqvae})
    >>> batch = processor(images=image, text="a dog", inputs={"tok_semseg@224": labels}, targets=["det"])
    >>> outputs = processor.postprocess(batch)  # {"rgb@224": uint8 images, "caption": ["a dog"], ...}
    ```
    """

    def __init__(
        self,
        image_processor: FourMImageProcessor,
        tokenizer: FourMTokenizer,
        vq_models: Mapping[str, PreTrainedModel] | None = None,
        **kwargs,
    ):
        super().__init__(image_processor, tokenizer, **kwargs)
        self.vq_models = _checked_vq_models(vq_models or {})

    # ----------------------------------------------------------------------------------------------------------------
    # Raw data -> modality dict

    def __call__(
        self,
        images: Any = None,
        text: str | Sequence[str] | None = None,
        inputs: Mapping[str, Any] | None = None,
        targets: Sequence[str] = (),
        target_lengths: Mapping[str, int] | None = None,
        batch_size: int | None = None,
    ) -> Modalities:
        """Build a modality dict: the given modalities as fully visible inputs, `targets` as empty targets.

        Args:
            images: RGB image(s) for the 4M pixel input `rgb@<image_size>` (shortcut for `inputs`).
            text (`str` or `list[str]`): caption(s) (shortcut for `inputs={"caption": ...}`); may contain sentinels.
            inputs (`Mapping[str, Any]`): raw data per modality name. Image modalities take images / maps (one or a
                list), or ready token ids `(B, N)` / `(B, h, w)`; feature modalities take `(B, C, h, w)` maps;
                sequences take a string or a list with one sample per element: `caption` str, `det`
                `{"boxes": [(xmin, ymin, xmax, ymax), ...], "labels": [...]}` (normalised), `metadata` dict,
                `color_palette` list of RGB triples, `human_poses` list of `HumanPose`, `sam_instance` list of
                `SAMQuery`; `t5_caption` takes `(B, L, D)` embeddings.
            targets (`Sequence[str]`): modalities to predict.
            target_lengths (`Mapping[str, int]`, *optional*): tokens of a sequence target (default: its `max_tokens`).
            batch_size (`int`, *optional*): needed only when there are no inputs.
        """
        inputs = dict(inputs or {})
        if images is not None:
            inputs[f"rgb@{self.image_processor.image_size}"] = images
        if text is not None:
            inputs["caption"] = text
        modalities = {name: self.encode_modality(name, value) for name, value in inputs.items()}
        sizes = {name: entry["tensor"].shape[0] for name, entry in modalities.items()}
        if batch_size is not None:
            sizes["batch_size"] = batch_size
        if len(set(sizes.values())) > 1:
            raise ValueError(f"All inputs must have the same batch size, got {sizes}.")
        if not sizes:
            raise ValueError("Give at least one input modality or `batch_size`.")
        batch = next(iter(sizes.values()))
        for name in targets:
            if name in modalities:
                raise ValueError(f"{name!r} is both an input and a target.")
            length = (target_lengths or {}).get(name)
            modalities[name] = self.empty_target(name, batch, length)
        return modalities

    def encode_modality(self, name: str, value: Any) -> dict[str, torch.Tensor]:
        """One modality as a fully visible input (see the module docstring for the layout)."""
        info = get_modality(name)
        if info.kind == SEQUENCE:
            return self._encode_sequence(info, value)
        if info.kind == SEQUENCE_EMBEDDING:
            tensor = torch.as_tensor(np.asarray(value, dtype=np.float32))
            if tensor.dim() != 3 or tensor.shape[-1] != info.embedding_dim:
                raise ValueError(
                    f"{name}: expected embeddings (B, L, {info.embedding_dim}), got {tuple(tensor.shape)}."
                )
            return self._visible(tensor, tensor.shape[1])
        if info.kind == PIXELS:
            pixels = self._preprocess_image(info, value)
            return self._visible(torch.from_numpy(pixels), info.num_tokens)
        return self._visible(self._image_tokens(info, value), info.num_tokens)

    def empty_target(self, name: str, batch_size: int, length: int | None = None) -> dict[str, torch.Tensor]:
        """An empty target of `name`: every image token, or a whole sequence behind one sentinel, to be predicted."""
        info = get_modality(name)
        if not info.has_decoder:
            raise ValueError(f"{name} is a {info.kind} modality and cannot be a target.")
        if info.kind == IMAGE_TOKENS:
            n = info.num_tokens
            return {
                "tensor": torch.zeros(batch_size, n, dtype=torch.long),
                "input_mask": torch.ones(batch_size, n, dtype=torch.bool),
                "target_mask": torch.zeros(batch_size, n, dtype=torch.bool),
            }
        n = max(length or info.max_tokens, 2)
        tensor = torch.full((batch_size, n), self.tokenizer.pad_token_id, dtype=torch.long)
        tensor[:, :2] = self.tokenizer.sentinel_id(1)
        tensor[:, -1] = self.tokenizer.sentinel_id(2)
        input_mask = torch.ones(batch_size, n, dtype=torch.bool)
        input_mask[:, 0] = False
        return {
            "tensor": tensor,
            "input_mask": input_mask,
            "target_mask": ~input_mask,
            "decoder_attention_mask": input_mask.long(),  # 1 on the target span
        }

    @staticmethod
    def _visible(tensor: torch.Tensor, num_tokens: int, lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        batch = tensor.shape[0]
        positions = torch.arange(num_tokens)[None].expand(batch, num_tokens)
        input_mask = (
            positions >= lengths[:, None] if lengths is not None else torch.zeros(batch, num_tokens, dtype=bool)
        )
        return {
            "tensor": tensor,
            "input_mask": input_mask,
            "target_mask": torch.ones(batch, num_tokens, dtype=torch.bool),
            "decoder_attention_mask": torch.zeros(batch, num_tokens, dtype=torch.long),
        }

    def _preprocess_image(self, info: ModalityInfo, value: Any) -> np.ndarray:
        family = _family(info.name)
        if family not in IMAGE_CODECS:
            raise ValueError(f"{info.name}: no image preprocessing is known for the family {family!r}.")
        return IMAGE_CODECS[family].preprocess(self.image_processor, value, info.image_size)

    def _vq_model(self, name: str) -> PreTrainedModel:
        if name not in self.vq_models:
            raise ValueError(
                f"{name}: no modality tokenizer; pass vq_models={{{name!r}: model}} to the processor or give token "
                f"ids. Available: {sorted(self.vq_models)}."
            )
        return self.vq_models[name]

    def _image_tokens(self, info: ModalityInfo, value: Any) -> torch.Tensor:
        """Token ids `(B, N)` of an image-token modality: given ids are checked, raw data goes through its tokenizer."""
        tokens = _token_ids(info, value)
        if tokens is None:
            data = torch.from_numpy(self._preprocess_image(info, value))
            model = self._vq_model(info.name)
            data = data.to(model.device)
            with torch.no_grad():
                tokens = model.encode(data).cpu()
        tokens = tokens.reshape(tokens.shape[0], -1)  # (B, h, w) or (B, heads, 1, 1) -> (B, N)
        if tokens.shape[1] != info.num_tokens:
            raise ValueError(f"{info.name}: expected {info.num_tokens} tokens per sample, got {tokens.shape[1]}.")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= info.vocab_size):
            raise ValueError(
                f"{info.name}: token ids must be in [0, {info.vocab_size}), got [{int(tokens.min())}, "
                f"{int(tokens.max())}]."
            )
        return tokens

    def _encode_sequence(self, info: ModalityInfo, value: Any) -> dict[str, torch.Tensor]:
        serialize = SEQUENCE_SERIALIZERS.get(_family(info.name))
        texts = []
        for sample in _batch(value):
            if isinstance(sample, str):
                texts.append(sample)
            elif serialize is None:
                raise TypeError(f"{info.name}: expected text, got {type(sample).__name__}.")
            else:
                texts.append(serialize(sample))
        ids = [self.tokenizer(t, add_special_tokens=False).input_ids for t in texts]
        if any(len(seq) >= info.max_tokens for seq in ids):
            logger.warning_once(f"{info.name}: inputs longer than {info.max_tokens} tokens are truncated.")
        ids = [seq[: info.max_tokens - 1] + [self.tokenizer.eos_token_id] for seq in ids]
        lengths = torch.tensor([len(seq) for seq in ids])
        tensor = torch.full((len(ids), int(lengths.max())), self.tokenizer.pad_token_id, dtype=torch.long)
        for row, seq in enumerate(ids):
            tensor[row, : len(seq)] = torch.tensor(seq)
        return self._visible(tensor, tensor.shape[1], lengths)

    # ----------------------------------------------------------------------------------------------------------------
    # Model outputs -> data

    def postprocess(self, outputs: Mapping[str, Any], names: Sequence[str] | None = None, **decode_kwargs) -> dict:
        """Decode a modality dict (inputs, targets or generated) back to data.

        Args:
            outputs (`Mapping[str, Any]`): per modality a dict with `tensor` (and masks), or a bare tensor.
            names (`Sequence[str]`, *optional*): modalities to decode (default: all in `outputs`).
            decode_kwargs: passed to modality tokenizers whose `decode` accepts them (e.g. `num_steps`,
                `generator` of a diffusion tokenizer).

        Returns:
            `dict[str, Any]`: uint8 images `(B, H, W, 3)` for RGB, normals and edges; float `(B, H, W)` for depth;
            class ids `(B, H, W)` for semantic segmentation; feature maps; and per sample a `str` for captions,
            `{"boxes", "labels"}` for det, a dict for metadata, RGB triples for palettes, `HumanPose` / `SAMQuery`
            lists. `t5_caption` inputs are skipped.
        """
        names = list(outputs) if names is None else list(names)
        decoded = {}
        for name in names:
            info = get_modality(name)
            entry = outputs[name] if isinstance(outputs[name], Mapping) else {"tensor": outputs[name]}
            tensor = torch.as_tensor(entry["tensor"]).detach().cpu()
            if info.kind == SEQUENCE:
                decoded[name] = self._decode_sequence(info, entry)
            elif info.kind == PIXELS:
                decoded[name] = IMAGE_CODECS[_family(name)].postprocess(self.image_processor, tensor)
            elif info.kind == IMAGE_TOKENS:
                decoded[name] = self._decode_image_tokens(info, tensor, decode_kwargs)
        return decoded

    def decode_text(self, ids: Sequence[int]) -> str:
        """Text of a merged id sequence: up to the first `[EOS]`, without `[PAD]` and sentinels."""
        ids = list(ids)
        if self.tokenizer.eos_token_id in ids:
            ids = ids[: ids.index(self.tokenizer.eos_token_id)]
        drop = set(self.tokenizer.sentinel_ids.values()) | {self.tokenizer.pad_token_id}
        return self.tokenizer.decode([i for i in ids if i not in drop], skip_special_tokens=False).strip()

    def _decode_sequence(self, info: ModalityInfo, entry: Mapping[str, Any]) -> list:
        tensor = torch.as_tensor(entry["tensor"]).detach().cpu()
        input_mask = entry.get("input_mask")
        target_mask = entry.get("target_mask")
        sentinels = set(self.tokenizer.sentinel_ids.values())
        parse = SEQUENCE_PARSERS.get(_family(info.name), str)
        samples = []
        for row in range(tensor.shape[0]):
            visible = tensor[row] if input_mask is None else tensor[row][~torch.as_tensor(input_mask[row]).bool()]
            target = [] if target_mask is None else tensor[row][~torch.as_tensor(target_mask[row]).bool()].tolist()
            samples.append(parse(self.decode_text(merge_spans(visible.tolist(), target, sentinels))))
        return samples

    def _decode_image_tokens(self, info: ModalityInfo, tokens: torch.Tensor, decode_kwargs: dict) -> np.ndarray:
        model = self._vq_model(info.name)
        tokens = tokens.long().reshape(tokens.shape[0], -1)
        if tokens.shape[1] != info.num_tokens or (
            tokens.numel() and (tokens.min() < 0 or tokens.max() >= info.vocab_size)
        ):
            raise ValueError(
                f"{info.name}: expected (B, {info.num_tokens}) token ids in [0, {info.vocab_size}), got shape "
                f"{tuple(tokens.shape)} with values in [{int(tokens.min())}, {int(tokens.max())}]."
            )
        if getattr(model.config, "num_codebooks", 1) == 1:
            tokens = tokens.reshape(-1, info.grid_size, info.grid_size)  # (B, h, w), row-major
        accepted = inspect.signature(model.decode).parameters
        kwargs = {k: v for k, v in decode_kwargs.items() if k in accepted}
        with torch.no_grad():
            decoded = model.decode(tokens.to(model.device), **kwargs).cpu()
        return IMAGE_CODECS[_family(info.name)].postprocess(self.image_processor, decoded)

    # ----------------------------------------------------------------------------------------------------------------
    # Saving and loading

    def to_dict(self) -> dict[str, Any]:
        # The modality tokenizers are saved as models in sub-folders; the config only records their names.
        models = self.__dict__.pop("vq_models")
        try:
            output = super().to_dict()
        finally:
            self.vq_models = models
        output["vq_model_names"] = sorted(models)
        return output

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs) -> list[str]:
        """Save the image processor and text tokenizer (as `ProcessorMixin` does) and each modality tokenizer in a
        sub-folder named after its modality."""
        for name, model in self.vq_models.items():
            model.save_pretrained(os.path.join(save_directory, name))
        return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> FourMProcessor:
        """Load a processor saved by `save_pretrained`, its modality tokenizers included (through `AutoModel`)."""
        hub_kwargs = {
            k: kwargs[k]
            for k in ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")
            if k in kwargs
        }
        processor_dict, _ = cls.get_processor_dict(pretrained_model_name_or_path, **hub_kwargs)
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        subfolder = hub_kwargs.pop("subfolder", "")
        processor.vq_models = _checked_vq_models(
            {
                name: AutoModel.from_pretrained(
                    pretrained_model_name_or_path, subfolder=os.path.join(subfolder, name), **hub_kwargs
                )
                for name in processor_dict.get("vq_model_names", [])
            }
        )
        return processor


__all__ = ["IMAGE_CODECS", "SEQUENCE_PARSERS", "SEQUENCE_SERIALIZERS", "FourMProcessor", "ImageCodec"]
