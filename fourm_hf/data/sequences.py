"""4M's sequence conventions, implemented once: the text special tokens, blank targets and sentinel spans.

Every text-like modality shares one vocabulary whose `[PAD]`, `[EOS]` and span-masking sentinels `[S_0]`, `[S_1]`,
... are described by [`SpecialTokens`] (the released layout by default, or read from a text tokenizer). Training
splits a sequence into an encoder input and a decoder target with `mask_spans`; generation and the processor start a
target from `blank_target` and read results back with `merge_spans` (one sample) or `merge_span_batch` (a batch of
generated spans).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import torch

from ..checks import check_int
from ..modalities import IMAGE_TOKENS, SEQUENCE, ModalitySpec

T = TypeVar("T", bound=Hashable)

# The released 4M WordPiece vocabulary: [PAD] = 0, [UNK] = 1, [SOS] = 2, [EOS] = 3, [S_k] = 4 + k for k < 200.
RELEASED_PAD_ID = 0
RELEASED_EOS_ID = 3
RELEASED_SENTINEL_IDS = tuple(range(4, 204))


def sentinel_token(index: int) -> str:
    """The text of span-masking sentinel `index`, e.g. `[S_1]`."""
    return f"[S_{index}]"


def _check_id(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int token id, got {type(value).__name__} {value!r}.")
    if value < 0:
        raise ValueError(f"{name} must be a token id >= 0, got {value}.")
    return value


@dataclass(frozen=True)
class SpecialTokens:
    """The special token ids 4M's sequence handling needs.

    Args:
        pad_id (`int`, *optional*, defaults to 0): `[PAD]`, written after sequences.
        eos_id (`int`, *optional*, defaults to 3): `[EOS]`, ends a sequence.
        sentinel_ids (`tuple[int, ...]`, *optional*, defaults to 4, 5, ..., 203): `sentinel_ids[k]` is the id of
            `[S_k]`. A blank target needs `[S_1]` and `[S_2]`, span masking one sentinel per masked span plus one.

    >>> SpecialTokens.from_tokenizer(tokenizer) == SpecialTokens()  # the released tokenizer has the default layout
    True
    """

    pad_id: int = RELEASED_PAD_ID
    eos_id: int = RELEASED_EOS_ID
    sentinel_ids: tuple[int, ...] = RELEASED_SENTINEL_IDS

    def __post_init__(self):
        _check_id("pad_id", self.pad_id)
        _check_id("eos_id", self.eos_id)
        if isinstance(self.sentinel_ids, (str, bytes)) or not isinstance(self.sentinel_ids, Sequence):
            raise TypeError(f"sentinel_ids must be a sequence of token ids, got {type(self.sentinel_ids).__name__}.")
        sentinels = tuple(_check_id(f"sentinel_ids[{k}]", i) for k, i in enumerate(self.sentinel_ids))
        object.__setattr__(self, "sentinel_ids", sentinels)
        if len(set(sentinels)) != len(sentinels):
            raise ValueError(f"sentinel_ids must be distinct, got {list(sentinels)}.")
        clash = {self.pad_id, self.eos_id} & set(sentinels)
        if clash or self.pad_id == self.eos_id:
            raise ValueError(
                f"pad_id ({self.pad_id}), eos_id ({self.eos_id}) and the sentinels must be different ids "
                f"(shared: {sorted(clash) or [self.pad_id]})."
            )

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> SpecialTokens:
        """Read the ids from a text tokenizer: its `pad_token_id`, `eos_token_id` and the `[S_0]`, `[S_1]`, ... of
        its vocabulary (`get_vocab()`), e.g. a [`FourMTokenizer`]."""
        if not callable(getattr(tokenizer, "get_vocab", None)):
            raise TypeError(f"tokenizer must be a text tokenizer (with get_vocab), got {type(tokenizer).__name__}.")
        vocab = tokenizer.get_vocab()
        sentinels = []
        while sentinel_token(len(sentinels)) in vocab:
            sentinels.append(vocab[sentinel_token(len(sentinels))])
        pad_id, eos_id = getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None)
        if pad_id is None or eos_id is None or not sentinels:
            raise ValueError(
                f"{type(tokenizer).__name__} is not a 4M text tokenizer: it needs a pad token (got id {pad_id}), an "
                f"eos token (got id {eos_id}) and the sentinels '[S_0]', '[S_1]', ... (found {len(sentinels)})."
            )
        return cls(pad_id, eos_id, tuple(sentinels))

    def sentinel(self, index: int) -> int:
        """The id of `[S_index]`."""
        check_int(index, "sentinel index")
        if not 0 <= index < len(self.sentinel_ids):
            raise ValueError(f"Sentinel [S_{index}] is not in the vocabulary ({len(self.sentinel_ids)} sentinels).")
        return self.sentinel_ids[index]

    @cached_property
    def sentinel_set(self) -> frozenset[int]:
        return frozenset(self.sentinel_ids)

    def content(self, ids: Sequence[int]) -> list[int]:
        """The text of a merged sequence: the ids before the first `[EOS]`, without `[PAD]` and sentinels."""
        ids = list(ids)
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return [i for i in ids if i != self.pad_id and i not in self.sentinel_set]


def check_sequence_target_length(spec: ModalitySpec, length: Any, name: str) -> int:
    """`length` if it fits a blank target of the sequence modality `spec`: `[S_1]` followed by a span of 1 to
    `max_tokens` tokens to generate (generation stops after `max_tokens`, so a longer span would never be filled)."""
    check_int(length, name)
    if not 2 <= length <= spec.max_tokens + 1:
        raise ValueError(
            f"{name} must be in [2, {spec.max_tokens + 1}] (a blank target is [S_1] followed by 1 to "
            f"max_tokens={spec.max_tokens} tokens to generate), got {length}."
        )
    return length


def blank_target(
    spec: ModalitySpec,
    batch_size: int,
    length: int | None = None,
    special_tokens: SpecialTokens = SpecialTokens(),
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """An empty target of `spec` (the official initialisation), in the forward contract's mask polarity.

    Image tokens: the whole grid of zero ids, all hidden and all to be predicted. Sequences:
    `[S_1] [S_1] [PAD] ... [S_2]` of `length` tokens (default: the modality's `max_tokens`), the first `[S_1]`
    visible, the rest the target span, with `decoder_attention_mask` 1 on the span (causal decoding, the training
    default).
    """
    if spec.kind not in (IMAGE_TOKENS, SEQUENCE):
        raise ValueError(f"{spec.name} is a {spec.kind} modality and cannot be a target.")
    check_int(batch_size, f"{spec.name}: batch_size", minimum=1)
    if spec.kind == IMAGE_TOKENS:
        if length not in (None, spec.num_tokens):
            raise ValueError(f"{spec.name} has {spec.num_tokens} tokens; a blank target cannot have length {length!r}.")
        shape = (batch_size, spec.num_tokens)
        return {
            "tensor": torch.zeros(shape, dtype=torch.long, device=device),
            "input_mask": torch.ones(shape, dtype=torch.bool, device=device),
            "target_mask": torch.zeros(shape, dtype=torch.bool, device=device),
        }
    length = spec.max_tokens if length is None else check_sequence_target_length(spec, length, f"{spec.name}: length")
    tensor = torch.full((batch_size, length), special_tokens.pad_id, dtype=torch.long, device=device)
    tensor[:, :2] = special_tokens.sentinel(1)
    tensor[:, -1] = special_tokens.sentinel(2)
    input_mask = torch.ones(batch_size, length, dtype=torch.bool, device=device)
    input_mask[:, 0] = False
    return {
        "tensor": tensor,
        "input_mask": input_mask,
        "target_mask": ~input_mask,
        "decoder_attention_mask": input_mask.long(),
    }


def _check_sequence(value: Any, name: str) -> None:
    if not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence, got {type(value).__name__} {value!r}.")


def mask_spans(tokens: Sequence[T], keep: Sequence[bool], sentinel: Callable[[int], T]) -> tuple[list[T], list[T]]:
    """T5-style span masking: every maximal run of dropped tokens becomes sentinel k (k = 1, 2, ...) in the input and
    `sentinel(k)` followed by the run in the target; the target ends with the next unused sentinel.

    >>> mask_spans("a dog on grass [EOS]".split(), [1, 0, 0, 1, 0], lambda k: f"[S_{k}]")
    (['a', '[S_1]', 'grass', '[S_2]'], ['[S_1]', 'dog', 'on', '[S_2]', '[EOS]', '[S_3]'])
    """
    _check_sequence(tokens, "mask_spans: tokens")
    _check_sequence(keep, "mask_spans: keep")
    if len(tokens) != len(keep):
        raise ValueError(f"mask_spans: {len(tokens)} tokens but {len(keep)} keep flags.")
    inputs, targets, count, previous_kept = [], [], 0, True
    for token, kept in zip(tokens, keep):
        if kept:
            inputs.append(token)
        else:
            if previous_kept:
                count += 1
                inputs.append(sentinel(count))
                targets.append(sentinel(count))
            targets.append(token)
        previous_kept = bool(kept)
    targets.append(sentinel(count + 1))
    return inputs, targets


def merge_spans(inputs: Sequence[T], targets: Sequence[T], sentinels: Collection[T]) -> list[T]:
    """Invert `mask_spans`: replace each sentinel of `inputs` by every token that follows the same sentinel in
    `targets`, in order.

    A sentinel with no span in `targets` contributes nothing; target tokens before the first sentinel are ignored.
    """
    for value, name in ((inputs, "inputs"), (targets, "targets")):
        if not isinstance(value, Iterable):
            raise TypeError(f"merge_spans: {name} must be a sequence of tokens, got {type(value).__name__} {value!r}.")
    spans: dict[T, list[T]] = {}
    current = None
    for token in targets:
        if token in sentinels:
            current = spans.setdefault(token, [])
        elif current is not None:
            current.append(token)
    merged = []
    for token in inputs:
        if token in sentinels:
            merged.extend(spans.get(token, []))
        else:
            merged.append(token)
    return merged


def merge_span_batch(
    input_ids: torch.Tensor, input_mask: torch.Tensor, generated: torch.Tensor, special_tokens: SpecialTokens
) -> tuple[torch.Tensor, torch.Tensor]:
    """`merge_spans` per sample of a batch: the visible ids of `input_ids` (`input_mask` False; `[S_1]` when none is
    visible, as in the official sampler) with their sentinels filled from the generated ids.

    Args:
        input_ids (`torch.Tensor` of shape `(B, L)`): the sequence the spans were generated for.
        input_mask (`torch.Tensor` of shape `(B, L)`): True where a token is hidden.
        generated (`torch.Tensor` of shape `(B, G)`): generated ids, each span led by its sentinel.
        special_tokens (`SpecialTokens`): the sentinels, and `[PAD]` to pad the result with.

    Returns:
        `(merged, padding)`, both `(B, M)`: the merged ids right-padded with `[PAD]`, and True on the padding.
    """
    for tensor, name in ((input_ids, "input_ids"), (input_mask, "input_mask"), (generated, "generated")):
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != 2:
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"merge_span_batch: {name} must be a 2-D tensor (batch, length), got {got}.")
    if input_mask.shape != input_ids.shape or generated.shape[0] != input_ids.shape[0]:
        raise ValueError(
            f"merge_span_batch: input_ids {tuple(input_ids.shape)}, input_mask {tuple(input_mask.shape)} and "
            f"generated {tuple(generated.shape)} must share the batch size (and input_ids / input_mask the length)."
        )
    start = special_tokens.sentinel(1)
    rows = [
        merge_spans([i for i, hidden in zip(ids, mask) if not hidden] or [start], gen, special_tokens.sentinel_set)
        for ids, mask, gen in zip(input_ids.tolist(), input_mask.tolist(), generated.tolist())
    ]
    width = max([1, *(len(row) for row in rows)])
    merged = torch.full((len(rows), width), special_tokens.pad_id, dtype=torch.long)
    padding = torch.ones(len(rows), width, dtype=torch.bool)
    for index, row in enumerate(rows):
        merged[index, : len(row)] = torch.tensor(row, dtype=torch.long)
        padding[index, : len(row)] = False
    return merged.to(input_ids.device), padding.to(input_ids.device)


__all__ = [
    "RELEASED_EOS_ID",
    "RELEASED_PAD_ID",
    "RELEASED_SENTINEL_IDS",
    "SpecialTokens",
    "blank_target",
    "check_sequence_target_length",
    "mask_spans",
    "merge_span_batch",
    "merge_spans",
    "sentinel_token",
]
