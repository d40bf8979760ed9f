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

Image-token modalities are encoded with the processor's VQ models (`vq_models`, e.g. a `FourMVQVAE` for
`tok_semseg@224`), sequences with the text tokenizer after serialisation (`data.serialization`). `postprocess`
inverts all of it.

The output is the modality dict itself, keyed by modality name; the requested targets are recorded in it as the
entries with target positions (`target_mask` False). So `model.generate(batch)` and `model.generate(**batch)` (every
keyword named after a modality is an input) generate exactly those targets, with the recipe settings of their
families unless a generation config is given, and `postprocess` takes generate's output as it is.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, PreTrainedModel
from transformers.processing_utils import ProcessorMixin
from transformers.utils import logging

from ...checks import check_int, check_names, close_match, error_context
from ...conversion.hub import hub_kwargs
from ...data.sequences import blank_target, check_sequence_target_length, merge_spans
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
from ..modeling_utils import check_finite, check_not_empty, check_range
from .image_processing_fourm import FourMImageProcessor
from .tokenization_fourm import FourMTokenizer
from .validation_fourm import check_modality_entry

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
    """`value` as token ids if it is an integer array (tensor, NumPy or nested lists) shaped `(B, N)` or `(B, h, w)`
    of the token grid, else None (raw data, e.g. a segmentation map).

    Data shaped like token ids but of the wrong count or dtype raises: a 2-D `(B, M)` array with a side smaller than
    one patch cannot be a map, and a float `(B, N)` array holds ids given as floats.
    """
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
        try:
            value = np.asarray(value)
        except ValueError:  # ragged nested lists: not token ids
            return None
    if not isinstance(value, (torch.Tensor, np.ndarray)) or value.ndim not in (2, 3):
        return None
    if isinstance(value, np.ndarray) and value.dtype.kind not in "biufc":
        return None  # strings, objects: for the family's codec to refuse
    shape, grid = tuple(value.shape), info.grid_size
    exact = shape[1:] in ((info.num_tokens,), (grid, grid))
    if not exact and (len(shape) == 3 or min(shape) >= info.patch_size):
        return None  # an image or map, for the family's codec
    if not exact:
        per_sample = int(np.prod(shape[1:]))
        raise ValueError(
            f"{info.name}: expected {info.num_tokens} token ids per sample, as (B, {info.num_tokens}) or "
            f"(B, {grid}, {grid}) integers, got shape {shape} ({per_sample} per sample); images and maps must be at "
            f"least one {info.patch_size}x{info.patch_size} patch."
        )
    tensor = torch.as_tensor(value)
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        if len(shape) == 3:
            return None  # float maps the size of the token grid
        raise TypeError(f"{info.name}: token ids must be integers, got {tensor.dtype} of shape {shape}.")
    return tensor.long()


def _features(info: ModalitySpec, value: Any) -> torch.Tensor:
    """Embeddings `(B, L, E)` of a feature modality (e.g. T5 caption embeddings) as a float32 tensor."""
    array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
    if array.dtype.kind not in "fiu":
        raise TypeError(
            f"{info.name}: expected numeric embeddings (B, L, {info.embedding_dim}), got {type(value).__name__} of "
            f"dtype {array.dtype}."
        )
    tensor = torch.from_numpy(array.astype(np.float32))
    if tensor.dim() != 3 or tensor.shape[-1] != info.embedding_dim:
        raise ValueError(f"{info.name}: expected embeddings (B, L, {info.embedding_dim}), got {tuple(tensor.shape)}.")
    check_not_empty(tensor, "the embeddings", info.name)
    check_finite(tensor, "the embeddings", info.name)
    return tensor


def _output_entry(name: str, value: Any) -> dict[str, Any]:
    """One modality of `postprocess`'s outputs as a dict of CPU tensors (a bare tensor is its `tensor`; NumPy arrays
    and lists are converted)."""
    entry = dict(value) if isinstance(value, Mapping) else {"tensor": value}
    for key, item in entry.items():
        if isinstance(item, (np.ndarray, list, tuple)):
            try:
                item = torch.as_tensor(np.asarray(item))
            except (TypeError, ValueError) as error:
                raise TypeError(f"outputs[{name!r}][{key!r}] must be a tensor or array, got {item!r}.") from error
        entry[key] = item.detach().cpu() if isinstance(item, torch.Tensor) else item
    return entry


def _batch(value: Any) -> list:
    """One sample (a string, a dict, an image, an array without batch axis) or a list of samples, as a list."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


class FourMProcessor(ProcessorMixin):
    r"""Processor of 4M: image processor + text tokenizer + VQ models (VQ-VAEs / DiVAEs).

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
    >>> decoded = processor.postprocess(model.generate(**batch))  # det generated with its recipe settings
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
        for argument, value in (("vq_models", vq_models), ("modality_specs", modality_specs)):
            if value is not None and not isinstance(value, Mapping):
                raise TypeError(f"{argument} must be a dict keyed by modality name, got {type(value).__name__}.")
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

    @property
    def pixel_modality(self) -> str:
        """The pixel input `images=` fills: `rgb@<image processor's image_size>`."""
        return f"rgb@{self.image_processor.image_size}"

    # ----------------------------------------------------------------------------------------------------------------
    # Raw data -> modality dict

    def __call__(
        self,
        images: Any = None,
        text: str | Sequence[str] | None = None,
        inputs: Mapping[str, Any] | None = None,
        targets: Sequence[str] | None = (),
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
            targets (`Sequence[str]`): modalities to predict (one name may be given as a string); `generate`
                reads them back from their target positions.
            target_lengths (`Mapping[str, int]`, *optional*): length of a sequence target's blank, `[S_1]` then up to
                `max_tokens` tokens to generate, i.e. 2 to `max_tokens + 1` (default: its `max_tokens`).
            batch_size (`int`, *optional*): needed only when there are no inputs.
        """
        if inputs is not None and not isinstance(inputs, Mapping):
            raise TypeError(f"inputs must be a dict {{modality name: raw data}}, got {type(inputs).__name__}.")
        inputs = dict(inputs or {})
        for argument, name, value in (("images", self.pixel_modality, images), ("text", "caption", text)):
            if value is None:
                continue
            if name in inputs:
                raise ValueError(f"{name!r} is given twice: as {argument}= and in inputs.")
            if name not in self._specs and name not in MODALITIES:
                raise ValueError(
                    f"{argument}= fills the modality {name!r}, which is not registered; register it first, e.g. "
                    f"register_modality({name!r}, patch_size=...)."
                )
            inputs[name] = value
        targets = self._check_targets(targets, target_lengths)
        if batch_size is not None:
            check_int(batch_size, "batch_size", minimum=1)
        modalities = {}
        for name, value in inputs.items():
            if not isinstance(name, str):
                raise TypeError(f"inputs: modality names are strings, got {type(name).__name__} {name!r}.")
            modalities[name] = self.encode_modality(name, value)
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
            modalities[name] = self.empty_target(name, batch, (target_lengths or {}).get(name))
        return modalities

    def _check_targets(self, targets: Any, target_lengths: Any) -> list[str]:
        """The target names (known, each once) and their lengths (for sequence targets that are in `targets`)."""
        targets = [] if targets is None else check_names(targets, "targets")
        repeated = sorted({name for name in targets if targets.count(name) > 1})
        if repeated:
            raise ValueError(f"targets lists {repeated} more than once.")
        specs = {name: self.modality(name) for name in targets}
        if target_lengths is None:
            return targets
        if not isinstance(target_lengths, Mapping):
            raise TypeError(
                f"target_lengths must be a dict {{target name: length}}, got {type(target_lengths).__name__}."
            )
        for name, length in target_lengths.items():
            if name not in specs:
                raise ValueError(
                    f"target_lengths names {name!r}, which is not among the targets {targets}."
                    f"{close_match(name, targets)}"
                )
            if specs[name].kind != SEQUENCE:
                raise ValueError(
                    f"target_lengths[{name!r}]: only sequence targets take a length; {name} is a {specs[name].kind} "
                    "target of its whole grid."
                )
            check_sequence_target_length(specs[name], length, f"target_lengths[{name!r}]")
        return targets

    def encode_modality(self, name: str, value: Any) -> dict[str, torch.Tensor]:
        """One modality as a fully visible input (see the module docstring for the layout)."""
        info = self.modality(name)
        if info.kind == SEQUENCE:
            return self._encode_sequence(info, value)
        if info.kind == SEQUENCE_EMBEDDING:
            tensor = _features(info, value)
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
                f"{name}: no VQ model; pass vq_models={{{name!r}: model}} to the processor or give token "
                f"ids. Available: {sorted(self.vq_models)}."
            )
        return self.vq_models[name]

    def _image_tokens(self, info: ModalitySpec, value: Any) -> torch.Tensor:
        """Token ids `(B, N)` of an image-token modality: given ids are checked, raw data goes through its VQ model."""
        tokens = _token_ids(info, value)
        if tokens is not None:
            check_not_empty(tokens, "the token ids", info.name)
        else:
            data = torch.from_numpy(self._preprocess_image(info, value))
            model = self._vq_model(info.name)
            data = data.to(model.device)
            with torch.no_grad():
                tokens = model.encode(data).cpu()
        tokens = tokens.reshape(tokens.shape[0], -1)  # (B, h, w) or (B, heads, 1, 1) -> (B, N)
        if tokens.shape[1] != info.num_tokens:
            raise ValueError(f"{info.name}: expected {info.num_tokens} tokens per sample, got {tokens.shape[1]}.")
        check_range(tokens, f"{info.name} token ids", info.vocab_size)
        return tokens

    def _encode_sequence(self, info: ModalitySpec, value: Any) -> dict[str, torch.Tensor]:
        serialize = self._in_value_bins(info.family.function("serialize")) if info.family.has("serialize") else None
        samples = _batch(value)
        if not samples:
            raise ValueError(f"{info.name}: got an empty batch (0 samples); pass at least one.")
        texts = []
        for index, sample in enumerate(samples):
            if isinstance(sample, str):
                texts.append(sample)
            elif serialize is None:
                hint = ""
                if isinstance(sample, (int, list, tuple, np.ndarray, torch.Tensor)):
                    hint = " (the processor tokenises text itself; give token ids to the model as {'tensor': ids})"
                raise TypeError(
                    f"{info.name}: sample {index} must be text (a str), got {type(sample).__name__} {sample!r}{hint}."
                )
            else:
                with error_context(f"{info.name} sample {index}"):
                    texts.append(serialize(sample))
        ids = [self.tokenizer(t, add_special_tokens=False).input_ids for t in texts]
        room = info.max_tokens - 1  # the last slot holds [EOS]
        cut = {index: len(seq) - room for index, seq in enumerate(ids) if len(seq) > room}
        if cut:
            logger.warning(
                f"{info.name}: {len(cut)} of {len(ids)} samples have more than {room} tokens; samples {sorted(cut)} "
                f"are cut to {room} tokens + [EOS], dropping {sum(cut.values())} tokens in all."
            )
        ids = [seq[:room] + [self.tokenizer.eos_token_id] for seq in ids]
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
            outputs (`Mapping[str, Any]`): per modality a dict with `tensor` (and masks), or a bare tensor, in the
                forward contract (NumPy arrays are accepted too).
            names (`Sequence[str]`, *optional*): modalities to decode (default: all in `outputs`; one name may be
                given as a string).
            decode_kwargs: passed to the VQ models whose `decode` accepts them (e.g. `num_steps`, `generator` of a
                diffusion decoder); an argument no decoded modality's VQ model accepts raises a `TypeError`.

        Returns:
            `dict[str, Any]`: uint8 images `(B, H, W, 3)` for RGB, normals and edges; float `(B, H, W)` for depth;
            class ids `(B, H, W)` for semantic segmentation; feature maps; and per sample a `str` for captions,
            `{"boxes", "labels"}` for det, a dict for metadata, RGB triples for palettes, `HumanPose` / `SAMQuery`
            lists. Feature inputs (`t5_caption`) have no decoder: they are skipped with a warning when `names` is
            not given, and refused when named.
        """
        if not isinstance(outputs, Mapping):
            raise TypeError(
                f"outputs must be a modality dict {{name: {{'tensor': ...}}}} (e.g. generate's output), got "
                f"{type(outputs).__name__}."
            )
        if not outputs:
            raise ValueError("outputs is empty: postprocess needs a modality dict with at least one modality.")
        explicit = names is not None
        names = check_names(names, "names") if explicit else list(outputs)
        missing = [name for name in names if name not in outputs]
        if missing:
            raise ValueError(
                f"postprocess: names {missing} are not in the outputs, which hold {list(outputs)}."
                f"{close_match(missing[0], [k for k in outputs if isinstance(k, str)])}"
            )
        entries = {}
        for name in names:
            info = self.modality(name)
            entry = _output_entry(name, outputs[name])
            check_modality_entry(info, entry, argument="outputs")
            entries[name] = (info, entry)
        features = [name for name, (info, _) in entries.items() if info.kind == SEQUENCE_EMBEDDING]
        if features and explicit:
            raise ValueError(f"postprocess: {features} are input features with no decoder; they cannot be decoded.")
        if features:
            logger.warning_once(f"postprocess skips {features}: input features have no decoder.")
        image_names = [name for name, (info, _) in entries.items() if info.kind == IMAGE_TOKENS]
        decode_kwargs = self._decode_kwargs(image_names, decode_kwargs)
        decoded = {}
        for name, (info, entry) in entries.items():
            if info.kind == SEQUENCE:
                decoded[name] = self._decode_sequence(info, entry)
            elif info.kind == PIXELS:
                decoded[name] = info.family.function("postprocess")(self.image_processor, entry["tensor"], info)
            elif info.kind == IMAGE_TOKENS:
                decoded[name] = self._decode_image_tokens(info, entry["tensor"], decode_kwargs[name])
        return decoded

    def _decode_kwargs(self, names: Sequence[str], decode_kwargs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Per image-token modality, the `decode_kwargs` its VQ model's `decode` accepts; every one must be accepted
        by at least one of them."""
        per_model, accepted = {}, set()
        for name in names:
            parameters = inspect.signature(self._vq_model(name).decode).parameters
            takes_any = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())
            per_model[name] = {k: v for k, v in decode_kwargs.items() if takes_any or k in parameters}
            accepted |= set(decode_kwargs) if takes_any else set(parameters) - {"self", "tokens"}
        unused = [key for key in decode_kwargs if key not in accepted]
        if unused:
            decoders = f"the VQ models of {list(names)} take {sorted(accepted)}" if names else "no VQ model decodes"
            raise TypeError(
                f"postprocess got decode argument(s) {unused} that no VQ model accepts ({decoders})."
                f"{close_match(unused[0], accepted)}"
            )
        return per_model

    def _in_value_bins(self, function: Callable) -> Callable:
        """A serialise / parse function that takes `num_bins`, bound to the tokenizer's value bins (`v0=0` ...), so
        that a tokenizer trained with fewer bins than the released 1,000 writes and reads its own."""
        bins = getattr(self.tokenizer, "num_value_bins", 0)
        try:
            takes_bins = "num_bins" in inspect.signature(function).parameters
        except (TypeError, ValueError):  # builtins such as `str` have no signature, and no bins
            takes_bins = False
        return functools.partial(function, num_bins=bins) if bins and takes_bins else function

    def decode_text(self, ids: Sequence[int]) -> str:
        """Text of a merged id sequence: up to the first `[EOS]`, without `[PAD]` and sentinels."""
        return self.tokenizer.decode(self.tokenizer.special_tokens.content(ids), skip_special_tokens=False).strip()

    def _decode_sequence(self, info: ModalitySpec, entry: Mapping[str, torch.Tensor]) -> list:
        tensor = entry["tensor"]
        input_mask = entry.get("input_mask")
        target_mask = entry.get("target_mask")
        sentinels = self.tokenizer.special_tokens.sentinel_set
        parse = self._in_value_bins(info.family.function("parse")) if info.family.has("parse") else str
        samples = []
        for row in range(tensor.shape[0]):
            visible = tensor[row] if input_mask is None else tensor[row][~input_mask[row].bool()]
            target = [] if target_mask is None else tensor[row][~target_mask[row].bool()].tolist()
            with error_context(f"{info.name} sample {row}"):
                samples.append(parse(self.decode_text(merge_spans(visible.tolist(), target, sentinels))))
        return samples

    def _decode_image_tokens(self, info: ModalitySpec, tokens: torch.Tensor, decode_kwargs: dict) -> np.ndarray:
        model = self._vq_model(info.name)
        tokens = tokens.long().reshape(tokens.shape[0], -1)
        if getattr(model.config, "num_codebooks", 1) == 1:
            tokens = tokens.reshape(-1, info.grid_size, info.grid_size)  # (B, h, w), row-major
        with torch.no_grad():
            decoded = model.decode(tokens.to(model.device), **decode_kwargs).cpu()
        return info.family.function("postprocess")(self.image_processor, decoded, info)

    # ----------------------------------------------------------------------------------------------------------------
    # Saving and loading

    def to_dict(self) -> dict[str, Any]:
        # The VQ models are saved as models in sub-folders; the config only records their names.
        models, specs = self.__dict__.pop("vq_models"), self.__dict__.pop("_specs")
        try:
            output = super().to_dict()
        finally:
            self.vq_models, self._specs = models, specs
        output["vq_model_names"] = sorted(models)
        return output

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs) -> list[str]:
        """Save the image processor and text tokenizer (as `ProcessorMixin` does) and each VQ model in a
        sub-folder named after its modality."""
        for name, model in self.vq_models.items():
            model.save_pretrained(os.path.join(save_directory, name))
        return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> FourMProcessor:
        """Load a processor saved by `save_pretrained`, its VQ models included (through `AutoModel`)."""
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
