"""The modality registry: one table describing every modality 4M knows.

Each entry says what a modality *is* (raw pixels, a grid of image tokens, a token sequence, or a sequence of
precomputed feature vectors), how big its vocabulary and token grid are, its official integer id, and which
tokenizer turns it into tokens and back. Embeddings, masking, generation and decoding all read this table;
adding a modality is one call to :func:`register_modality`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

PIXELS = "pixels"
IMAGE_TOKENS = "image_tokens"
SEQUENCE = "sequence"
SEQUENCE_EMBEDDING = "sequence_embedding"
MODALITY_KINDS = (PIXELS, IMAGE_TOKENS, SEQUENCE, SEQUENCE_EMBEDDING)

TEXT_VOCAB_SIZE = 30_000
# Sequence position tables have 512 rows in every released checkpoint, whatever the modality's max length.
SEQUENCE_POSITIONS = 512
TEXT_TOKENIZER = "EPFL-VILAB/4M-21_B:text_tokenizer_4m_wordpiece_30k"


def modality_id(name: str) -> int:
    """The official integer id of a modality: sha256 of its name modulo 2**15."""
    return int(hashlib.sha256(name.encode("utf-8")).hexdigest(), 16) % (2**15)


@dataclass(frozen=True)
class ModalityInfo:
    """Everything the model needs to know about one modality.

    Args:
        name (`str`): registry key, e.g. `"tok_depth@224"`.
        kind (`str`): one of `"pixels"`, `"image_tokens"`, `"sequence"`, `"sequence_embedding"`.
        vocab_size (`int`, *optional*): codebook or text vocabulary size (token kinds only).
        image_size (`int`, *optional*): input resolution of image kinds; the token grid is `image_size // patch_size`.
        patch_size (`int`, *optional*): pixels per token side for image kinds.
        num_channels (`int`, *optional*): channels of a pixel modality.
        max_length (`int`, *optional*): sequence kinds: target positions at or beyond it share position 0 in the
            decoder (the official clipping); also the sequence length of `sequence_embedding` inputs.
        max_tokens (`int`, *optional*): sequence kinds: the token budget of autoregressive generation.
        embedding_dim (`int`, *optional*): width of the feature vectors of a `sequence_embedding` modality.
        learned_position_embedding (`bool`): image kinds: a learned position table instead of fixed 2D sin-cos.
        tokenizer (`str`, *optional*): Hub id of the tokenizer that maps this modality to tokens and back.
    """

    name: str
    kind: str
    vocab_size: int | None = None
    image_size: int | None = None
    patch_size: int | None = None
    num_channels: int | None = None
    max_length: int | None = None
    max_tokens: int | None = None
    embedding_dim: int | None = None
    learned_position_embedding: bool = False
    tokenizer: str | None = None

    def __post_init__(self):
        if self.kind not in MODALITY_KINDS:
            raise ValueError(f"Modality {self.name!r}: kind must be one of {MODALITY_KINDS}, got {self.kind!r}.")
        if "." in self.name or not self.name:
            raise ValueError(f"Modality names must be non-empty and contain no '.', got {self.name!r}.")
        if self.is_image:
            if not self.image_size or not self.patch_size or self.image_size % self.patch_size:
                raise ValueError(
                    f"Modality {self.name!r}: image_size ({self.image_size}) must be a positive multiple of "
                    f"patch_size ({self.patch_size})."
                )
        if self.kind in (IMAGE_TOKENS, SEQUENCE) and not self.vocab_size:
            raise ValueError(f"Modality {self.name!r} ({self.kind}) needs a vocab_size.")
        if self.kind == PIXELS and not self.num_channels:
            raise ValueError(f"Modality {self.name!r} (pixels) needs num_channels.")
        if self.kind == SEQUENCE_EMBEDDING and not self.embedding_dim:
            raise ValueError(f"Modality {self.name!r} (sequence_embedding) needs embedding_dim.")
        if self.is_sequence:
            if not self.max_length or self.max_length > SEQUENCE_POSITIONS:
                raise ValueError(
                    f"Modality {self.name!r}: max_length must be in [1, {SEQUENCE_POSITIONS}], got {self.max_length}."
                )
            if self.max_tokens is None:
                object.__setattr__(self, "max_tokens", self.max_length)

    @property
    def id(self) -> int:
        return modality_id(self.name)

    @property
    def is_image(self) -> bool:
        return self.kind in (PIXELS, IMAGE_TOKENS)

    @property
    def is_sequence(self) -> bool:
        return self.kind in (SEQUENCE, SEQUENCE_EMBEDDING)

    @property
    def has_decoder(self) -> bool:
        """Whether the modality can be a target (pixels and feature sequences are input-only)."""
        return self.kind in (IMAGE_TOKENS, SEQUENCE)

    @property
    def grid_size(self) -> int | None:
        return self.image_size // self.patch_size if self.is_image else None

    @property
    def num_tokens(self) -> int:
        """Tokens of an image modality, or the maximum length of a sequence modality."""
        return self.grid_size**2 if self.is_image else self.max_length

    @property
    def num_positions(self) -> int:
        """Rows of the position table."""
        return self.grid_size**2 if self.is_image else SEQUENCE_POSITIONS

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k != "name"}


MODALITIES: dict[str, ModalityInfo] = {}


def register_modality(name: str, kind: str, *, overwrite: bool = False, **fields: Any) -> ModalityInfo:
    """Add a modality to the registry and return its entry.

    >>> register_modality("tok_depth@512", "image_tokens", vocab_size=8192, image_size=512, patch_size=16)
    """
    if name in MODALITIES and not overwrite and MODALITIES[name] != ModalityInfo(name=name, kind=kind, **fields):
        raise ValueError(f"Modality {name!r} is already registered differently; pass overwrite=True to replace it.")
    info = ModalityInfo(name=name, kind=kind, **fields)
    MODALITIES[name] = info
    return info


def get_modality(name: str) -> ModalityInfo:
    """The registry entry of `name`, or a `ValueError` listing the known modalities."""
    if name not in MODALITIES:
        raise ValueError(f"Unknown modality {name!r}. Known modalities: {sorted(MODALITIES)}.")
    return MODALITIES[name]


def _register_builtin_modalities() -> None:
    hub = "EPFL-VILAB/4M_tokenizers_"
    image_tokenizers = {
        "rgb": (16384, hub + "rgb_16k_224-448"),
        "depth": (8192, hub + "depth_8k_224-448"),
        "normal": (8192, hub + "normal_8k_224-448"),
        "semseg": (4096, hub + "semseg_4k_224-448"),
        "clip": (8192, hub + "CLIP-B16_8k_224-448"),
    }
    for size in (224, 448):
        register_modality(f"rgb@{size}", PIXELS, num_channels=3, image_size=size, patch_size=16)
        for short, (vocab, tokenizer) in image_tokenizers.items():
            register_modality(
                f"tok_{short}@{size}", IMAGE_TOKENS, vocab_size=vocab, image_size=size, patch_size=16,
                tokenizer=tokenizer,
            )
    for name, vocab, patch, tokenizer in (
        ("tok_canny_edge@224", 8192, 16, hub + "edge_8k_224-512"),
        ("tok_sam_edge@224", 8192, 16, hub + "edge_8k_224-512"),
        ("tok_dinov2@224", 8192, 14, hub + "DINOv2-B14_8k_224-448"),
        ("tok_imagebind@224", 8192, 14, hub + "ImageBind-H14_8k_224-448"),
    ):
        register_modality(name, IMAGE_TOKENS, vocab_size=vocab, image_size=224, patch_size=patch, tokenizer=tokenizer)
    for name, tokenizer in (
        ("tok_dinov2_global", hub + "DINOv2-B14-global_8k_16_224"),
        ("tok_imagebind_global", hub + "ImageBind-H14-global_8k_16_224"),
    ):
        register_modality(
            name, IMAGE_TOKENS, vocab_size=8192, image_size=224, patch_size=56, learned_position_embedding=True,
            tokenizer=tokenizer,
        )
    for name, max_length, max_tokens in (
        ("caption", 256, 256),
        ("det", 256, 256),
        ("metadata", 40, 40),
        ("human_poses", 263, 275),
        ("color_palette", 23, 23),
        ("sam_instance", 290, 290),
    ):
        register_modality(
            name, SEQUENCE, vocab_size=TEXT_VOCAB_SIZE, max_length=max_length, max_tokens=max_tokens,
            tokenizer=TEXT_TOKENIZER,
        )
    register_modality(
        "t5_caption", SEQUENCE_EMBEDDING, embedding_dim=4096, max_length=77, tokenizer="google/t5-v1_1-xxl"
    )


_register_builtin_modalities()

__all__ = [
    "IMAGE_TOKENS",
    "MODALITIES",
    "MODALITY_KINDS",
    "PIXELS",
    "SEQUENCE",
    "SEQUENCE_EMBEDDING",
    "ModalityInfo",
    "get_modality",
    "modality_id",
    "register_modality",
]
