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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, PreTrainedModel
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging

from ...conversion.hub import hub_kwargs
from ...data.sequences import blank_target, merge_spans
from ...modalities import (
    IMAGE_TOKENS,
    MODALITIES,
    PIXELS,
    SEQUENCE,
    SEQUENCE_EMBEDDING,
    Modalities,
    ModalitySpec,
    ensure_registered,
    get_modality,
    spec_from_dict,
)
from .image_processing_fourm import FourMImageProcessor
from .tokenization_fourm import FourMTokenizer

logger = logging.get_logger(__name__)


def _checked_vq_models(vq_models: Mapping[str, PreTrainedModel], specs: Mapping[str, ModalitySpec]) -> dict[str, PreTrainedModel]:
    for name, model in vq_models.items():
        info = specs[name]
        if info.kind != IMAGE_TOKENS:
            raise ValueError(f"vq_models: {name!r} is a {info.kind} modality; only image-token modalities have one.")
        if not (callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None))):
            raise TypeError(f"vq_models[{name!r}] must have `encode` and `decode`, got {type(model).__name__}.")
    return dict(vq_models)


def _token_ids(info: ModalitySpec, value: Any) -> torch.Tensor | None:
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
        vq_models (`dict[str, PreTrainedModel]`, *optional*): VQ model per image-token modality name, e.g.
            `{"tok_rgb@224": FourMDiVAE(...), "tok_semseg@224": FourMVQVAE(...)}`; each needs `encode` and `decode`.
        modality_specs (`dict[str, dict]`, *optional*): saved specs (`ModalitySpec.to_dict()`) of modalities the
            processor handles beyond the registry; the specs of the VQ models' modalities and of the pixel input are
            recorded automatically, so a saved processor works in a process where they were never registered.

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
        modality_specs: Mapping[str, Mapping[str, Any]] | None = None,
        **kwargs,
    ):
        super().__init__(image_processor, tokenizer, **kwargs)
        vq_models = dict(vq_models or {})
        saved = dict(modality_specs or {})
        names = dict.fromkeys([*saved, *vq_models, f"rgb@{image_processor.image_size}"])
        specs = {
            name: spec_from_dict(name, saved[name]) if name in saved else get_modality(name)
            for name in names
            if name in saved or name in vq_models or name in MODALITIES
        }
        ensure_registered(specs)
        self._specs = specs
        self.modality_specs = {name: spec.to_dict() for name, spec in specs.items()}
        self.vq_models = _checked_vq_models(vq_models, specs)

    def modality(self, name: str) -> ModalitySpec:
        """The spec of `name`: the processor's own (saved with it), else the registry's."""
        return self._specs[name] if name in self._specs else get_modality(name)

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
        info = self.modality(name)
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
        return blank_target(self.modality(name), batch_size, length, self.tokenizer.special_tokens)

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

    def _preprocess_image(self, info: ModalitySpec, value: Any) -> np.ndarray:
        return info.family.function("preprocess")(self.image_processor, value, info)

    def _vq_model(self, name: str) -> PreTrainedModel:
        if name not in self.vq_models:
            raise ValueError(
                f"{name}: no modality tokenizer; pass vq_models={{{name!r}: model}} to the processor or give token "
                f"ids. Available: {sorted(self.vq_models)}."
            )
        return self.vq_models[name]

    def _image_tokens(self, info: ModalitySpec, value: Any) -> torch.Tensor:
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

    def _encode_sequence(self, info: ModalitySpec, value: Any) -> dict[str, torch.Tensor]:
        serialize = info.family.function("serialize") if info.family.has("serialize") else None
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
            info = self.modality(name)
            entry = outputs[name] if isinstance(outputs[name], Mapping) else {"tensor": outputs[name]}
            tensor = torch.as_tensor(entry["tensor"]).detach().cpu()
            if info.kind == SEQUENCE:
                decoded[name] = self._decode_sequence(info, entry)
            elif info.kind == PIXELS:
                decoded[name] = info.family.function("postprocess")(self.image_processor, tensor, info)
            elif info.kind == IMAGE_TOKENS:
                decoded[name] = self._decode_image_tokens(info, tensor, decode_kwargs)
        return decoded

    def decode_text(self, ids: Sequence[int]) -> str:
        """Text of a merged id sequence: up to the first `[EOS]`, without `[PAD]` and sentinels."""
        return self.tokenizer.decode(self.tokenizer.special_tokens.content(ids), skip_special_tokens=False).strip()

    def _decode_sequence(self, info: ModalitySpec, entry: Mapping[str, Any]) -> list:
        tensor = torch.as_tensor(entry["tensor"]).detach().cpu()
        input_mask = entry.get("input_mask")
        target_mask = entry.get("target_mask")
        sentinels = self.tokenizer.special_tokens.sentinel_set
        parse = info.family.function("parse") if info.family.has("parse") else str
        samples = []
        for row in range(tensor.shape[0]):
            visible = tensor[row] if input_mask is None else tensor[row][~torch.as_tensor(input_mask[row]).bool()]
            target = [] if target_mask is None else tensor[row][~torch.as_tensor(target_mask[row]).bool()].tolist()
            samples.append(parse(self.decode_text(merge_spans(visible.tolist(), target, sentinels))))
        return samples

    def _decode_image_tokens(self, info: ModalitySpec, tokens: torch.Tensor, decode_kwargs: dict) -> np.ndarray:
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
        return info.family.function("postprocess")(self.image_processor, decoded, info)

    # ----------------------------------------------------------------------------------------------------------------
    # Saving and loading

    def to_dict(self) -> dict[str, Any]:
        # The modality tokenizers are saved as models in sub-folders; the config only records their names.
        models, specs = self.__dict__.pop("vq_models"), self.__dict__.pop("_specs")
        try:
            output = super().to_dict()
        finally:
            self.vq_models, self._specs = models, specs
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
        hub = hub_kwargs(kwargs)
        processor_dict, _ = cls.get_processor_dict(pretrained_model_name_or_path, **hub)
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        subfolder = hub.pop("subfolder", "")
        processor.vq_models = _checked_vq_models(
            {
                name: AutoModel.from_pretrained(
                    pretrained_model_name_or_path, subfolder=os.path.join(subfolder, name), **hub
                )
                for name in processor_dict.get("vq_model_names", [])
            },
            processor._specs,
        )
        return processor


__all__ = ["FourMProcessor"]
