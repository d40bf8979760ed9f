"""The modality registry: every modality 4M knows, by name, and the families they belong to.

Embeddings, masking, pre-tokenisation, generation, decoding and plotting all read their per-modality knowledge from
here. A new resolution of a known family is one call (`register_modality("tok_depth@512")`); a new family is one
`register_family` call (or a `family=` argument) giving its codec, serialiser or renderer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from transformers.utils import logging

from ..checks import check_bool, check_choice, close_match
from .families import BUILTIN_FAMILIES, BUILTIN_RESOLUTIONS
from .spec import (
    IMAGE_TOKENS,
    MODALITY_KINDS,
    PIXELS,
    ModalityFamily,
    ModalitySpec,
    check_name,
    family_name,
    resolution_of,
)

logger = logging.get_logger(__name__)

FAMILIES: dict[str, ModalityFamily] = {}
MODALITIES: dict[str, ModalitySpec] = {}
_SPEC_FIELDS = {f.name for f in dataclasses.fields(ModalitySpec)} - {"name", "kind", "family"}


def register_family(family: ModalityFamily, overwrite: bool = False) -> ModalityFamily:
    """Add a modality family (its codec, serialiser, renderer, defaults...) and return it."""
    if not isinstance(family, ModalityFamily):
        raise TypeError(f"register_family takes a ModalityFamily, got {type(family).__name__}.")
    check_bool(overwrite, "overwrite")
    known = FAMILIES.get(family.name)
    if known is not None and known != family and not overwrite:
        raise ValueError(f"Family {family.name!r} is already registered differently; pass overwrite=True to replace it.")
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> ModalityFamily:
    """The family named `name` (or the family of the modality `name`), or a `ValueError` listing the known ones."""
    if not isinstance(name, str):
        raise TypeError(f"A family name is a string, got {type(name).__name__} {name!r}.")
    family = FAMILIES.get(family_name(name))
    if family is None:
        raise ValueError(
            f"Unknown modality family {family_name(name)!r}.{close_match(family_name(name), FAMILIES)} "
            f"Known families: {sorted(FAMILIES)}."
        )
    return family


def build_spec(name: str, kind: str | None = None, family: ModalityFamily | str | None = None, **fields: Any) -> ModalitySpec:
    """A spec for `name` from its family's defaults, the resolution in its name and `fields` (not registered).

    The family is `family` (a description or a registered name), else the registered family of the name's prefix;
    without either, a bare family of `kind` is made (one that cannot preprocess, decode or draw).
    """
    check_name(name, "modality")
    if kind is not None:
        check_choice(kind, f"Modality {name!r}: kind", MODALITY_KINDS)
    unknown = sorted(set(fields) - _SPEC_FIELDS)
    if unknown:
        raise TypeError(
            f"Modality {name!r}: unknown fields {unknown}; a spec has {sorted(_SPEC_FIELDS)}."
            f"{close_match(unknown[0], _SPEC_FIELDS)}"
        )
    if isinstance(family, str):
        family = get_family(family)
    elif family is None:
        family = FAMILIES.get(family_name(name))
    if family is None:
        if kind is None:
            raise ValueError(
                f"Modality {name!r}: its family {family_name(name)!r} is not registered; give its kind (one of "
                f"{MODALITY_KINDS}) or a family=ModalityFamily(...) describing it."
            )
        family = ModalityFamily(name=family_name(name), kind=kind)
    elif not isinstance(family, ModalityFamily):
        raise TypeError(f"Modality {name!r}: family must be a ModalityFamily or a family name, got {type(family).__name__}.")
    if family.name != family_name(name):
        raise ValueError(f"Modality {name!r} must be named after its family {family.name!r} ('{family.name}@<size>').")
    kind = kind or family.kind
    values = {**family.defaults, **fields}
    resolution = resolution_of(name)
    if resolution is not None and values.get("image_size") is None and kind in (PIXELS, IMAGE_TOKENS):
        values["image_size"] = resolution
    return ModalitySpec(name=name, kind=kind, family=family, **values)


def register_modality(
    name: str, kind: str | None = None, *, family: ModalityFamily | str | None = None, overwrite: bool = False, **fields: Any
) -> ModalitySpec:
    """Add a modality to the registry and return its spec.

    A resolution of a known family needs only its name (sizes come from the family and the `@<size>` suffix):

    >>> register_modality("tok_depth@512")
    >>> register_modality("tok_depth@64", patch_size=8)

    A new family is described once (`family=ModalityFamily(...)`, also registered) and its resolutions follow.
    """
    check_bool(overwrite, "overwrite")
    spec = build_spec(name, kind, family, **fields)
    if spec.family.name not in FAMILIES:
        register_family(spec.family)
    elif FAMILIES[spec.family.name] != spec.family:
        register_family(spec.family, overwrite=overwrite)
    if name in MODALITIES and MODALITIES[name] != spec and not overwrite:
        raise ValueError(f"Modality {name!r} is already registered differently; pass overwrite=True to replace it.")
    MODALITIES[name] = spec
    return spec


def get_modality(name: str) -> ModalitySpec:
    """The registry entry of `name`, or a `ValueError` listing the known modalities."""
    if not isinstance(name, str):
        raise TypeError(f"A modality name is a string, got {type(name).__name__} {name!r}.")
    if name not in MODALITIES:
        raise ValueError(
            f"Unknown modality {name!r}.{close_match(name, MODALITIES)} Known modalities: {sorted(MODALITIES)}."
        )
    return MODALITIES[name]


def spec_from_dict(name: str, data: Mapping[str, Any]) -> ModalitySpec:
    """Rebuild a spec saved with `ModalitySpec.to_dict()` (a family given by name must be registered; a family given
    whole need not be). Keys of older saves (`tokenizer`) are ignored."""
    if not isinstance(data, Mapping):
        raise TypeError(f"The saved spec of modality {name!r} must be a dict, got {type(data).__name__}.")
    values = {k: v for k, v in data.items() if k != "tokenizer"}
    family = values.pop("family", None)
    if isinstance(family, Mapping):
        family = ModalityFamily.from_dict(family)
    kind = values.pop("kind", None)
    return build_spec(name, kind, family, **values)


def ensure_registered(specs: Mapping[str, ModalitySpec]) -> None:
    """Register the specs (and families) that the registry does not know yet, so that objects loaded in a fresh
    process work everywhere; a spec that differs from a registered one of the same name is left out, with a warning."""
    for name, spec in specs.items():
        if spec.family.name not in FAMILIES:
            register_family(spec.family)
        if name not in MODALITIES:
            MODALITIES[name] = spec
        elif MODALITIES[name] != spec:
            logger.warning(
                f"Modality {name!r} of a loaded object differs from the registered one; the object uses its own spec, "
                "the registry keeps the registered one."
            )


def vq_model_id(name: str) -> str:
    """Hub id of the released VQ model of a family or modality (`"tok_depth@224"`, `"tok_depth"`, `"depth"`)."""
    candidates = [FAMILIES.get(family_name(name)), FAMILIES.get(f"tok_{family_name(name)}")]
    family = next((f for f in candidates if f is not None and f.vq_model is not None), None)
    if family is None:
        with_vq = sorted(f.name for f in FAMILIES.values() if f.vq_model is not None)
        raise ValueError(f"No released VQ model for {name!r}; families with one: {with_vq}.")
    return family.vq_model.hub_id


def _register_builtins() -> None:
    for family in BUILTIN_FAMILIES:
        register_family(family)
    for name, resolutions in BUILTIN_RESOLUTIONS:
        for size in resolutions:
            register_modality(f"{name}@{size}")
    for family in BUILTIN_FAMILIES:
        if family.name not in dict(BUILTIN_RESOLUTIONS):
            register_modality(family.name)


_register_builtins()

__all__ = [
    "FAMILIES",
    "MODALITIES",
    "build_spec",
    "ensure_registered",
    "get_family",
    "get_modality",
    "register_family",
    "register_modality",
    "spec_from_dict",
    "vq_model_id",
]
