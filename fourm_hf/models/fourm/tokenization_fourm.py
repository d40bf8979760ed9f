"""The 4M text tokenizer: a WordPiece vocabulary shared by every text-like modality.

Captions, bounding boxes, metadata, colour palettes, human poses and SAM instances are all written as text and
tokenised with one WordPiece model whose first ids are reserved, in this order: `[PAD]`, `[UNK]`, `[SOS]`, `[EOS]`,
the span-masking sentinels `[S_0]`, `[S_1]`, ..., the value tokens `v0=0` ... `v3=<bins-1>` (box coordinates and
other binned values) and the COCO class names (so that `"dining table"` is one token). The released tokenizer
(`text_tokenizer_4m_wordpiece_30k.json`) uses 200 sentinels and 1000 bins, i.e. ids 0-4283 for the reserved
tokens; `FourMTokenizer.train_new` builds a new vocabulary with the same layout.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
from tokenizers.models import WordPiece
from transformers import PreTrainedTokenizerFast
from transformers.utils import logging

from ...checks import check_bool, check_int
from ...data.sequences import SpecialTokens, merge_spans, sentinel_token

logger = logging.get_logger(__name__)

# The 80 COCO object classes, alphabetically: the order (and so the ids) of the released tokenizer.
COCO_CLASSES = (
    "airplane", "apple", "backpack", "banana", "baseball bat", "baseball glove", "bear", "bed", "bench", "bicycle",
    "bird", "boat", "book", "bottle", "bowl", "broccoli", "bus", "cake", "car", "carrot", "cat", "cell phone",
    "chair", "clock", "couch", "cow", "cup", "dining table", "dog", "donut", "elephant", "fire hydrant", "fork",
    "frisbee", "giraffe", "hair drier", "handbag", "horse", "hot dog", "keyboard", "kite", "knife", "laptop",
    "microwave", "motorcycle", "mouse", "orange", "oven", "parking meter", "person", "pizza", "potted plant",
    "refrigerator", "remote", "sandwich", "scissors", "sheep", "sink", "skateboard", "skis", "snowboard", "spoon",
    "sports ball", "stop sign", "suitcase", "surfboard", "teddy bear", "tennis racket", "tie", "toaster", "toilet",
    "toothbrush", "traffic light", "train", "truck", "tv", "umbrella", "vase", "wine glass", "zebra",
)  # fmt: skip

# Value-token families: v0..v3 are xmin, ymin, xmax, ymax for boxes and are reused as generic value slots.
NUM_VALUE_AXES = 4


def value_token(axis: int, value: int) -> str:
    """The text of value token `value` on axis `axis`, e.g. `v2=540`."""
    return f"v{axis}={value}"


class FourMTokenizer(PreTrainedTokenizerFast):
    """WordPiece tokenizer of 4M's text-like modalities, backed by a `tokenizers` JSON.

    Ids are those of the backend JSON, unchanged: with the released file `[PAD]`=0, `[UNK]`=1, `[SOS]`=2, `[EOS]`=3,
    `[S_k]`=4+k, `v<a>=<n>`=204+1000a+n and the COCO classes from 4204. No `[SOS]`/`[EOS]` is added when encoding
    (4M appends `[EOS]` itself where a sequence needs one).

    Args:
        tokenizer_file (`str`, *optional*): path of a `tokenizers` JSON, e.g. `text_tokenizer_4m_wordpiece_30k.json`.
        tokenizer_object (`tokenizers.Tokenizer`, *optional*): an in-memory backend instead of a file.
        pad_token, unk_token, bos_token, eos_token (`str`): the four leading special tokens.

    Example:

    >>> tokenizer = FourMTokenizer(tokenizer_file="text_tokenizer_4m_wordpiece_30k.json")
    >>> tokenizer("v0=12 v1=40 v2=500 v3=700 car").input_ids
    [216, 1244, 2704, 3904, 4222]
    """

    def __init__(
        self,
        tokenizer_file: str | None = None,
        tokenizer_object: Tokenizer | None = None,
        pad_token: str = "[PAD]",
        unk_token: str = "[UNK]",
        bos_token: str = "[SOS]",
        eos_token: str = "[EOS]",
        **kwargs,
    ):
        if tokenizer_file is None and tokenizer_object is None:
            raise ValueError("FourMTokenizer needs a `tokenizer_file` (tokenizers JSON) or a `tokenizer_object`.")
        if tokenizer_object is not None and not isinstance(tokenizer_object, Tokenizer):
            raise TypeError(
                f"tokenizer_object must be a tokenizers.Tokenizer, got {type(tokenizer_object).__name__}."
            )
        if tokenizer_file is not None and tokenizer_object is None:
            _check_tokenizer_file(tokenizer_file)
        super().__init__(
            tokenizer_file=tokenizer_file,
            tokenizer_object=tokenizer_object,
            pad_token=pad_token,
            unk_token=unk_token,
            bos_token=bos_token,
            eos_token=eos_token,
            **kwargs,
        )
        vocab = self.get_vocab()
        required = (str(pad_token), str(eos_token), sentinel_token(1), value_token(0, 0))
        missing = [t for t in required if t not in vocab]
        if missing:
            raise ValueError(
                f"Not a 4M text tokenizer: tokens {missing} are missing (expected the special tokens, sentinels "
                "[S_k] and value tokens v0=..v3=)."
            )

    def _decode(
        self,
        token_ids: int | list[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> str:
        # `decode` and `batch_decode` end here, one sequence at a time: ids outside the vocabulary would be dropped
        # silently by the backend, so they raise.
        ids = [token_ids] if isinstance(token_ids, numbers.Integral) else token_ids
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
            raise TypeError(f"token_ids must be a sequence of int token ids, got {type(token_ids).__name__}.")
        for index, token in enumerate(ids):
            if isinstance(token, bool) or not isinstance(token, numbers.Integral):
                raise TypeError(f"token_ids[{index}] must be an int token id, got {type(token).__name__} {token!r}.")
        outside = sorted({int(token) for token in ids if not 0 <= token < len(self)})
        if outside:
            raise ValueError(
                f"token ids must lie in [0, {len(self)}) (the text tokenizer's vocabulary), got {outside[:10]}"
                f"{' ...' if len(outside) > 10 else ''}."
            )
        return super()._decode(
            ids, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            **kwargs,
        )

    @classmethod
    def convert_to_native_format(cls, trust_remote_code: bool = False, **kwargs):
        # The backend JSON is the source of truth (ids and added-token flags); hand it to __init__ unchanged instead
        # of letting the base class rebuild a backend from the bare vocabulary.
        tokenizer_file = kwargs.get("tokenizer_file")
        if tokenizer_file is not None and os.path.isfile(tokenizer_file):
            return dict(kwargs)
        return super().convert_to_native_format(trust_remote_code=trust_remote_code, **kwargs)

    @cached_property
    def special_tokens(self) -> SpecialTokens:
        """`[PAD]`, `[EOS]` and the sentinels, as the collator, the processor and generation take them."""
        return SpecialTokens.from_tokenizer(self)

    @property
    def sentinel_ids(self) -> dict[int, int]:
        """Map from sentinel index k to the id of `[S_k]`."""
        return dict(enumerate(self.special_tokens.sentinel_ids))

    @cached_property
    def num_value_bins(self) -> int:
        """Number of value tokens per axis (`v0=0` ... `v0=<bins-1>`)."""
        vocab = self.get_vocab()
        bins = 0
        while value_token(0, bins) in vocab:
            bins += 1
        return bins

    def sentinel_id(self, index: int) -> int:
        """Id of `[S_index]`."""
        return self.special_tokens.sentinel(index)

    def merge_sentinel_spans(self, input_ids: Sequence[int], target_ids: Sequence[int]) -> list[int]:
        """Rebuild a span-masked sequence: each sentinel in `input_ids` is replaced by the tokens that follow the same
        sentinel in `target_ids` (a sentinel without a target span disappears).

        >>> # input "a [S_1] grass [S_2]", target "[S_1] dog on [S_2] [EOS] [S_3]" -> "a dog on grass [EOS]"
        """
        return merge_spans(list(input_ids), list(target_ids), self.special_tokens.sentinel_set)

    @classmethod
    def train_new(
        cls,
        texts: Iterable[str],
        vocab_size: int = 30_000,
        num_sentinels: int = 200,
        num_value_bins: int = 1000,
        object_classes: Sequence[str] = COCO_CLASSES,
        lowercase: bool = True,
        min_frequency: int = 0,
    ) -> FourMTokenizer:
        """Train a new WordPiece vocabulary with 4M's reserved-token layout.

        The reserved tokens come first, in the released order: `[PAD]`, `[UNK]`, `[SOS]`, `[EOS]`, `num_sentinels`
        sentinels, `4 * num_value_bins` value tokens and `object_classes`; WordPiece pieces learned from `texts`
        follow. With the defaults the reserved ids are exactly those of the released tokenizer.

        Args:
            texts (`Iterable[str]`): training text, one string per document (a generator is fine); not empty.
            vocab_size (`int`, *optional*, defaults to 30000): total vocabulary size, reserved tokens included.
            num_sentinels (`int`, *optional*, defaults to 200): number of `[S_k]` sentinels (at least `[S_0]`, `[S_1]`).
            num_value_bins (`int`, *optional*, defaults to 1000): value tokens per axis `v0=`..`v3=`.
            object_classes (`Sequence[str]`, *optional*, defaults to the 80 COCO classes): class names kept whole.
            lowercase (`bool`, *optional*, defaults to `True`): lowercase text (BERT normalisation).
            min_frequency (`int`, *optional*, defaults to 0): minimum count of a learned piece.
        """
        if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
            raise TypeError(
                f"texts must be an iterable of strings (one per document), got {type(texts).__name__}; wrap a single "
                "text in a list."
            )
        check_int(vocab_size, "vocab_size", minimum=1)
        check_int(num_sentinels, "num_sentinels", minimum=2)
        check_int(num_value_bins, "num_value_bins", minimum=1)
        check_int(min_frequency, "min_frequency", minimum=0)
        check_bool(lowercase, "lowercase")
        if isinstance(object_classes, (str, bytes)) or not isinstance(object_classes, Iterable):
            raise TypeError(f"object_classes must be a list of class names, got {type(object_classes).__name__}.")
        object_classes = list(object_classes)
        for index, name in enumerate(object_classes):
            if not isinstance(name, str) or not name.strip():
                raise TypeError(f"object_classes[{index}] must be a non-empty class name (str), got {name!r}.")
        reserved = [
            AddedToken(t, special=True, normalized=False, single_word=False)
            for t in ("[PAD]", "[UNK]", "[SOS]", "[EOS]")
        ]
        reserved += [
            AddedToken(sentinel_token(k), special=True, normalized=False, single_word=True)
            for k in range(num_sentinels)
        ]
        reserved += [
            AddedToken(value_token(axis, n), special=True, normalized=False, single_word=True)
            for axis in range(NUM_VALUE_AXES)
            for n in range(num_value_bins)
        ]
        reserved += [AddedToken(c, special=True, normalized=True, single_word=True) for c in object_classes]
        if vocab_size <= len(reserved):
            raise ValueError(f"vocab_size ({vocab_size}) must exceed the {len(reserved)} reserved tokens.")

        backend = Tokenizer(WordPiece(unk_token="[UNK]", continuing_subword_prefix="##", max_input_chars_per_word=100))
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            show_progress=False,
            special_tokens=reserved,
            continuing_subword_prefix="##",
        )
        counted = _CheckedTexts(texts)
        backend.train_from_iterator(counted, trainer=trainer)
        if counted.count == 0:
            raise ValueError("texts is empty: train_new needs at least one training text.")
        return cls(tokenizer_object=backend)


class _CheckedTexts:
    """Iterates training texts, refusing non-strings and counting them."""

    def __init__(self, texts: Iterable[str]):
        self.texts, self.count = texts, 0

    def __iter__(self) -> Iterator[str]:
        for text in self.texts:
            if not isinstance(text, str):
                raise TypeError(f"texts[{self.count}] must be a string, got {type(text).__name__} {text!r}.")
            self.count += 1
            yield text


def _check_tokenizer_file(path: Any) -> None:
    """A readable `tokenizers` JSON, or an `OSError` / `ValueError` naming the path."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"tokenizer_file must be a path, got {type(path).__name__} {path!r}.")
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"tokenizer_file {str(path)!r} is a directory; pass the JSON file in it, or load the folder with "
            "FourMTokenizer.from_pretrained."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"tokenizer_file {str(path)!r} does not exist.")
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"tokenizer_file {str(path)!r} is not a `tokenizers` JSON: {error}") from error
    if not isinstance(content, dict) or "model" not in content:
        raise ValueError(f"tokenizer_file {str(path)!r} is not a `tokenizers` JSON (no 'model' entry).")


__all__ = ["COCO_CLASSES", "FourMTokenizer", "sentinel_token", "value_token"]
