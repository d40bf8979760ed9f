"""Generation recipes: the official demo sampler's chains (`Demo4MSampler` in apple/ml-4m), built from a model's own
modalities at whatever resolution it uses.

Each modality family describes its defaults (`ModalityFamily.generation`): `FourMTargetSchedule` settings for when
RGB is among the conditions (`"from_rgb"`), when it is not (`"to_rgb"`) and for super-resolution
(`"super_resolution"`), and its place in the demo's generation order (`generation_order`; None keeps a family with
settings out of the `*_to_all` chains, with a warning naming what is left out, as the official demo leaves out the
global DINOv2 / ImageBind tokens). A recipe reads them for the modalities the model decodes and raises for a target
it cannot set up instead of dropping it. Step counts above a target's token count (a resolution
below the demo's 224) are capped at it.

The functions return the arguments of `FourMGenerationConfig`; use them as its classmethods
(`FourMGenerationConfig.rgb_to_all(model.config)`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from transformers.utils import logging

from ..checks import check_names, close_match
from ..modalities import Modalities, ModalitySpec
from ..models.fourm.configuration_fourm import FourMConfig

logger = logging.get_logger(__name__)

# Families the RGB recipes look for: RGB pixels and their tokens.
RGB_FAMILY = "rgb"
RGB_TOKENS_FAMILY = "tok_rgb"
# Sampling settings of every demo chain.
DEMO_SAMPLING = {"grow_conditioning": True, "top_p": 0.8, "top_k": 0}
FROM_RGB, TO_RGB, SUPER_RESOLUTION = "from_rgb", "to_rgb", "super_resolution"


def _check_model_config(model_config: Any, recipe: str) -> FourMConfig:
    if not isinstance(model_config, FourMConfig):
        is_model = isinstance(getattr(model_config, "config", None), FourMConfig)
        hint = " (pass model.config, not the model)" if is_model else ""
        raise TypeError(f"{recipe}: model_config must be a FourMConfig, got {type(model_config).__name__}{hint}.")
    return model_config


def _input_of_family(model_config: FourMConfig, family: str, recipe: str) -> str:
    """The model's one input modality of `family` (a recipe's default condition)."""
    found = [n for n in model_config.encoder_modalities if model_config.modality(n).family.name == family]
    if not found:
        raise ValueError(
            f"{recipe}: the model has no {family!r} input to condition on; its inputs are "
            f"{model_config.encoder_modalities}. Pass `conditions` explicitly."
        )
    if len(found) > 1:
        raise ValueError(f"{recipe}: the model has several {family!r} inputs ({found}); pass `conditions` to choose.")
    return found[0]


def _order_key(spec: ModalitySpec, index: int) -> tuple[bool, int, int]:
    """Sort key of a target: its family's generation order (families without one last), then the model's order."""
    order = spec.family.generation_order
    return order is None, order or 0, index


def _settings(model_config: FourMConfig, name: str, situation: str) -> dict[str, Any]:
    """The family's `situation` settings of a target the model decodes, as `FourMTargetSchedule` arguments. Step
    counts above the target's token count (a resolution smaller than the demo's) are capped at it."""
    if name not in model_config.decoder_modalities:
        raise ValueError(
            f"The model cannot generate {name!r}; it decodes {model_config.decoder_modalities}."
            f"{close_match(name, model_config.decoder_modalities)}"
        )
    spec = model_config.modality(name)
    if situation not in spec.family.generation:
        known = sorted(spec.family.generation) or "none"
        raise ValueError(
            f"{name}: the {spec.family.name!r} family has no {situation!r} generation settings (it has: {known}); "
            "pass FourMTargetSchedule targets yourself or register the family with them."
        )
    settings = {"modality": name, **spec.family.generation[situation]}
    if spec.is_image and settings.get("num_steps", 1) > spec.num_tokens:
        settings["num_steps"] = spec.num_tokens
    return settings


def _default_targets(model_config: FourMConfig, conditions: Sequence[str]) -> list[str]:
    """Every modality the model decodes that is not given, in the families' generation order. RGB tokens at the
    resolution of given RGB pixels are skipped (the demo does not re-tokenise the image it was given)."""
    specs = [model_config.modality(c) for c in conditions]
    pixel_sizes = {s.image_size for s in specs if s.family.name == RGB_FAMILY}
    candidates = []
    for index, name in enumerate(model_config.decoder_modalities):
        spec = model_config.modality(name)
        if name in conditions or (spec.family.name == RGB_TOKENS_FAMILY and spec.image_size in pixel_sizes):
            continue
        candidates.append((spec, index))
    left_out = [spec.name for spec, _ in candidates if spec.family.generation_order is None]
    if left_out:
        logger.warning_once(
            f"The recipe leaves out {left_out}: their families are not in the recipes' generation order (as in the "
            "official demo). Pass `targets` to generate them."
        )
    ordered = sorted((c for c in candidates if c[0].family.generation_order is not None), key=lambda c: _order_key(*c))
    return [spec.name for spec, _ in ordered]


def demo_recipe(
    model_config: FourMConfig, conditions: Sequence[str], targets: Sequence[str] | None = None
) -> dict[str, Any]:
    """The official demo's chain for `conditions`.

    Args:
        model_config (`FourMConfig`): the model that will generate.
        conditions (`Sequence[str]`): the given modalities (all of them guidance conditions); one name may be given
            as a string.
        targets (`Sequence[str]`, *optional*): what to generate, in order (one name may be given as a string);
            defaults to every modality the model decodes that is not given, in the families' generation order (RGB
            tokens skipped when RGB pixels of the same resolution are given).

    Returns:
        `dict`: `FourMGenerationConfig` arguments: the conditions, each target with its family's `"from_rgb"`
        settings when RGB (pixels or tokens) is a condition and `"to_rgb"` otherwise, growing guidance conditions,
        top-p 0.8.
    """
    model_config = _check_model_config(model_config, "demo_recipe")
    conditions = check_names(conditions, "conditions")
    if not conditions:
        raise ValueError("demo_recipe: conditions is empty; name the modalities given to the model (e.g. ['rgb@224']).")
    for name in conditions:
        if name not in model_config.encoder_modalities:
            raise ValueError(
                f"The model does not take {name!r} as input; it takes {model_config.encoder_modalities}."
                f"{close_match(name, model_config.encoder_modalities)}"
            )
    families = {model_config.modality(c).family.name for c in conditions}
    situation = FROM_RGB if families & {RGB_FAMILY, RGB_TOKENS_FAMILY} else TO_RGB
    if targets is None:
        targets = _default_targets(model_config, conditions)
        if not targets:
            raise ValueError(f"Nothing to generate: the model decodes {model_config.decoder_modalities}, all given.")
    else:
        targets = check_names(targets, "targets")
        if not targets:
            raise ValueError("targets is empty; name the modalities to generate, or leave it None for all of them.")
    return {
        "conditions": conditions,
        "targets": [_settings(model_config, name, situation) for name in targets],
        **DEMO_SAMPLING,
    }


def rgb_to_all(
    model_config: FourMConfig, conditions: Sequence[str] | None = None, targets: Sequence[str] | None = None
) -> dict[str, Any]:
    """RGB -> every other modality the model decodes (e.g. one-step ROAR at temperature 0.01 with guidance 2 for
    image targets, then captions, boxes and the other sequences); `conditions` default to the model's RGB pixel
    input. See `demo_recipe`."""
    if conditions is None:
        model_config = _check_model_config(model_config, "rgb_to_all")
        conditions = [_input_of_family(model_config, RGB_FAMILY, "rgb_to_all")]
    return demo_recipe(model_config, conditions, targets)


def caption_to_all(
    model_config: FourMConfig, conditions: Sequence[str] | None = None, targets: Sequence[str] | None = None
) -> dict[str, Any]:
    """Caption -> all (e.g. CLIP by 50 ROAR steps at onex temperature 5 -> 0.5 with guidance 3, the other image
    modalities, RGB by 25 ROAR steps, then the sequences); `conditions` default to the model's caption input."""
    if conditions is None:
        model_config = _check_model_config(model_config, "caption_to_all")
        conditions = [_input_of_family(model_config, "caption", "caption_to_all")]
    return demo_recipe(model_config, conditions, targets)


def caption_det_to_all(
    model_config: FourMConfig, conditions: Sequence[str] | None = None, targets: Sequence[str] | None = None
) -> dict[str, Any]:
    """Caption + bounding boxes -> all, with the caption -> all settings; `conditions` default to the model's
    caption and det inputs."""
    if conditions is None:
        model_config = _check_model_config(model_config, "caption_det_to_all")
        conditions = [_input_of_family(model_config, family, "caption_det_to_all") for family in ("caption", "det")]
    return demo_recipe(model_config, conditions, targets)


def requested_targets(modalities: Modalities) -> list[str]:
    """The entries of a modality dict with target positions (`target_mask` False somewhere), in its order: the
    targets requested from the processor."""
    return [
        name for name, entry in modalities.items()
        if isinstance(entry, Mapping) and entry.get("target_mask") is not None and not bool(entry["target_mask"].all())
    ]  # fmt: skip


def batch_recipe(model_config: FourMConfig, modalities: Modalities) -> dict[str, Any]:
    """The chain `generate` runs on a batch when no generation config names targets: the batch's requested targets
    (`requested_targets`) in the families' generation order (then the batch's order), with their families' demo
    settings, conditioned on every other entry (`"from_rgb"` settings when RGB is among them, `"to_rgb"`
    otherwise). See `demo_recipe`."""
    model_config = _check_model_config(model_config, "batch_recipe")
    targets = requested_targets(modalities)
    if not targets:
        raise ValueError(
            f"Nothing to generate: no entry of the inputs {list(modalities)} has target positions (target_mask "
            "False). Request targets from the processor (processor(..., targets=[...])) or pass a generation config."
        )
    conditions = [name for name in modalities if name not in targets]
    if not conditions:
        raise ValueError(
            f"The inputs hold only targets ({targets}): the recipes need a condition. Give an input, or pass a "
            "generation config for unconditional generation."
        )
    specs = {name: model_config.modality(name) for name in targets}
    ordered = sorted(targets, key=lambda name: _order_key(specs[name], targets.index(name)))
    return demo_recipe(model_config, conditions, ordered)


def super_resolution(sr_model_config: FourMConfig, modalities: Iterable[str]) -> dict[str, Any]:
    """Super-resolution with a 4M-SR model.

    Args:
        sr_model_config (`FourMConfig`): the super-resolution model.
        modalities (`Iterable[str]`): the modalities at hand (typically a base generation's output, whose names are
            its keys; one name may be given as a string).

    Returns:
        `dict`: `FourMGenerationConfig` arguments: every given modality the SR model takes as a guidance condition,
        and as targets the image modalities the SR model decodes at a higher resolution than a given modality of the
        same family, each with its family's `"super_resolution"` settings (the demo: MaskGIT, 8 cosine steps,
        temperature 1, guidance 2), in the families' generation order.
    """
    sr_model_config = _check_model_config(sr_model_config, "super_resolution")
    given = check_names(modalities, "modalities")
    conditions = [m for m in given if m in sr_model_config.encoder_modalities]
    given_specs = [sr_model_config.modality(m) for m in conditions]
    candidates = []
    for index, name in enumerate(sr_model_config.decoder_modalities):
        spec = sr_model_config.modality(name)
        if name in conditions or not spec.is_image:
            continue
        if any(g.family.name == spec.family.name and g.image_size < spec.image_size for g in given_specs):
            candidates.append((spec, index))
    missing = [spec.name for spec, _ in candidates if SUPER_RESOLUTION not in spec.family.generation]
    if missing:
        raise ValueError(
            f"{missing} could be super-resolved from the given lower resolutions, but their families have no "
            f"{SUPER_RESOLUTION!r} generation settings."
        )
    if not candidates:
        raise ValueError(
            f"Nothing to super-resolve: the SR model decodes {sr_model_config.decoder_modalities}, none of which has a "
            f"lower-resolution modality of its family among {given}."
        )
    targets = [spec for spec, _ in sorted(candidates, key=lambda c: _order_key(*c))]
    return {
        "conditions": conditions,
        "targets": [_settings(sr_model_config, spec.name, SUPER_RESOLUTION) for spec in targets],
        **DEMO_SAMPLING,
    }


__all__ = [
    "DEMO_SAMPLING",
    "batch_recipe",
    "caption_det_to_all",
    "caption_to_all",
    "demo_recipe",
    "requested_targets",
    "rgb_to_all",
    "super_resolution",
]
