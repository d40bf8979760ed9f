"""Generation settings of 4M: one `FourMTargetSchedule` per target, chained in a `FourMGenerationConfig`."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from transformers import GenerationConfig

from ..checks import check_bool, check_choice, check_int, check_names, check_number, close_match
from ..data.sequences import (
    RELEASED_EOS_ID,
    RELEASED_PAD_ID,
    RELEASED_SENTINEL_IDS,
    SpecialTokens,
    check_sequence_target_length,
)
from ..modalities import SEQUENCE, ensure_registered, get_modality, spec_from_dict
from . import recipes
from .schedules import TOKEN_SCHEDULES, parse_temperature_schedule, temperature_schedule
from .schemes import DECODING_SCHEMES

if TYPE_CHECKING:
    from ..models.fourm.configuration_fourm import FourMConfig


GUIDANCE_SCHEDULES = ("constant",)


def _as_guidance_scale(name: str, scale: Any) -> float | list[float]:
    if isinstance(scale, (list, tuple)):
        if not scale:
            raise ValueError(f"{name}: guidance_scale list is empty.")
        return [float(check_number(s, f"{name}: guidance_scale[{i}]")) for i, s in enumerate(scale)]
    if isinstance(scale, (str, Mapping)):
        raise TypeError(f"{name}: guidance_scale must be a number or a list of numbers, got {scale!r}.")
    return float(check_number(scale, f"{name}: guidance_scale"))


@dataclass
class FourMTargetSchedule:
    """How to generate one target modality.

    Args:
        modality (`str`): the target, e.g. `"tok_depth@224"` or `"caption"`.
        scheme (`str`, *optional*): a key of `DECODING_SCHEMES`: `"maskgit"` (parallel steps keeping the most
            confident predictions), `"roar"` (parallel steps over a random order) or `"autoregressive"` (token by
            token). Defaults to `"maskgit"` for image-token targets and `"autoregressive"` for sequences, the only
            scheme sequences allow.
        num_steps (`int`, *optional*, defaults to 1): decoding steps of a MaskGIT / ROAR target (at most its tokens).
        num_tokens (`int`, *optional*): image targets: tokens to decode (the whole grid unless the target is given
            partially); sequence targets: length of the blank target created when the modality is not among the
            inputs (`[S_1]` visible, then a span of `num_tokens - 1` targets); decoding stops at the end of the span
            or after the modality's `max_tokens`. Defaults to the grid size / the modality's `max_tokens`.
        token_schedule (`str`, *optional*): tokens per step, a key of `TOKEN_SCHEDULES` (`"cosine"`, `"linear"`).
            Defaults to `"cosine"` for MaskGIT and `"linear"` for ROAR; not used by autoregressive targets.
        temperature (`float`, *optional*, defaults to 1.0): sampling temperature (of the first step); 0 is argmax.
        temperature_schedule (`str`, *optional*, defaults to `"constant"`): `"constant"`, `"linear"` or
            `"onex:<min_temperature>:<power>"`; autoregressive targets use a constant temperature.
        guidance_scale (`float` or `list[float]`, *optional*, defaults to 1.0): classifier-free guidance scale
            (1 = no guidance), or one weight per guidance group with multi-condition guidance.
        guidance_schedule (`str`, *optional*, defaults to `"constant"`): only `"constant"` exists.
    """

    modality: str
    scheme: str | None = None
    num_steps: int = 1
    num_tokens: int | None = None
    token_schedule: str | None = None
    temperature: float = 1.0
    temperature_schedule: str = "constant"
    guidance_scale: float | list[float] = 1.0
    guidance_schedule: str = "constant"

    def __post_init__(self):
        spec = get_modality(self.modality)  # raises for unknown modalities
        name, is_sequence = self.modality, spec.kind == SEQUENCE
        if not spec.has_decoder:
            raise ValueError(f"{name} ({spec.kind}) cannot be generated: it is an input-only modality.")
        sequence_schemes = [n for n, s in DECODING_SCHEMES.items() if s.decodes_sequences]
        image_schemes = [n for n, s in DECODING_SCHEMES.items() if not s.decodes_sequences]
        if self.scheme is None:
            self.scheme = sequence_schemes[0] if is_sequence else image_schemes[0]
        check_choice(self.scheme, f"{name}: scheme", DECODING_SCHEMES)
        scheme = DECODING_SCHEMES[self.scheme]
        if is_sequence and not scheme.decodes_sequences:
            allowed = " or ".join(f"scheme={n!r}" for n in sequence_schemes)
            raise ValueError(f"{name} is a sequence and can only be generated with {allowed}.")
        if not is_sequence and scheme.decodes_sequences:
            raise ValueError(f"{name} is an image modality; use scheme={' or '.join(map(repr, image_schemes))}, "
                             f"not {self.scheme!r}.")  # fmt: skip
        check_int(self.num_steps, f"{name}: num_steps", minimum=1)
        if self.num_tokens is not None:
            if is_sequence:
                check_sequence_target_length(spec, self.num_tokens, f"{name}: num_tokens")
            else:
                check_int(self.num_tokens, f"{name}: num_tokens", minimum=1)
        self.temperature = float(check_number(self.temperature, f"{name}: temperature", minimum=0))
        kind, _ = parse_temperature_schedule(self.temperature_schedule, name)
        check_choice(self.guidance_schedule, f"{name}: guidance_schedule", GUIDANCE_SCHEDULES)
        self.guidance_scale = _as_guidance_scale(name, self.guidance_scale)
        if scheme.decodes_sequences:
            if self.num_steps != 1 or self.token_schedule is not None or kind != "constant":
                raise ValueError(
                    f"{name}: num_steps, token_schedule and temperature_schedule apply to {'/'.join(image_schemes)} "
                    f"targets; {self.scheme} decoding takes one token per step at a constant temperature."
                )
            return
        if self.token_schedule is None:
            self.token_schedule = scheme.default_token_schedule
        check_choice(self.token_schedule, f"{name}: token_schedule", TOKEN_SCHEDULES)
        if self.num_tokens is not None and self.num_tokens > spec.num_tokens:
            raise ValueError(f"{name} has {spec.num_tokens} tokens; num_tokens={self.num_tokens} is too many.")
        self.token_counts(self.num_tokens or spec.num_tokens)  # raises if the steps do not fit the tokens

    @property
    def is_autoregressive(self) -> bool:
        """Whether the target is a sequence decoded token by token."""
        return DECODING_SCHEMES[self.scheme].decodes_sequences

    def token_counts(self, num_tokens: int) -> list[int]:
        """Tokens committed at each step when `num_tokens` are to be decoded (MaskGIT / ROAR)."""
        if self.num_steps > num_tokens:
            raise ValueError(
                f"{self.modality}: num_steps={self.num_steps} is more than the {num_tokens} tokens to decode."
            )
        counts = TOKEN_SCHEDULES[self.token_schedule](self.num_steps, num_tokens)
        if min(counts) < 1:
            empty = [i for i, c in enumerate(counts) if c < 1]
            raise ValueError(
                f"{self.modality}: the {self.token_schedule} schedule of {self.num_steps} steps over {num_tokens} "
                f"tokens leaves steps {empty} with no token ({counts}); use fewer steps."
            )
        return counts

    def temperatures(self, token_counts: Sequence[int]) -> list[float]:
        """One temperature per step."""
        return temperature_schedule(self.temperature_schedule, self.temperature, token_counts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_TARGET_FIELDS = tuple(f.name for f in fields(FourMTargetSchedule))


def _as_target(target: FourMTargetSchedule | Mapping[str, Any], index: int = 0) -> FourMTargetSchedule:
    if isinstance(target, FourMTargetSchedule):
        return target
    if isinstance(target, Mapping):
        unknown = [key for key in target if key not in _TARGET_FIELDS]
        if unknown:
            raise TypeError(
                f"targets[{index}] has unknown FourMTargetSchedule fields {unknown}; the fields are "
                f"{list(_TARGET_FIELDS)}.{close_match(unknown[0], _TARGET_FIELDS)}"
            )
        if "modality" not in target:
            raise TypeError(f"targets[{index}] needs a 'modality' entry, got {dict(target)}.")
        return FourMTargetSchedule(**target)
    hint = ""
    if isinstance(target, str):
        hint = f" (use FourMTargetSchedule({target!r}), or a recipe such as FourMGenerationConfig.rgb_to_all)"
    raise TypeError(
        f"targets[{index}] must be a FourMTargetSchedule or a dict of its fields, got {type(target).__name__} "
        f"{target!r}{hint}."
    )


def _as_targets(targets: Any) -> list[FourMTargetSchedule]:
    """The chain's targets: a list (or tuple) of `FourMTargetSchedule` or dicts of their fields."""
    if not isinstance(targets, (list, tuple)):
        hint = f" (use [FourMTargetSchedule({targets!r})])" if isinstance(targets, str) else ""
        raise TypeError(
            f"targets must be a list of FourMTargetSchedule, got {type(targets).__name__} {targets!r}{hint}."
        )
    return [_as_target(target, index) for index, target in enumerate(targets)]


def _as_guidance_groups(groups: Any) -> list[list[str]]:
    """Multi-condition guidance groups: a list of lists of modality names."""
    if isinstance(groups, (str, Mapping)) or not isinstance(groups, (list, tuple)):
        raise TypeError(
            f"guidance_groups must be a list of groups (lists of modality names), got {type(groups).__name__} "
            f"{groups!r}; for a single group use conditions=[...]."
        )
    checked = []
    for index, group in enumerate(groups):
        if isinstance(group, str):
            raise TypeError(
                f"guidance_groups[{index}] must be a list of modality names, got the string {group!r}; write "
                f"[{group!r}] (or pass conditions=[...] for a single group)."
            )
        checked.append(check_names(group, f"guidance_groups[{index}]"))
    return checked


# transformers' generation settings 4M uses; every other `GenerationConfig` field must stay unset (None).
_TRANSFORMERS_FIELDS_USED = (
    "do_sample", "top_k", "top_p", "use_cache", "pad_token_id", "eos_token_id", "max_new_tokens",
    "num_return_sequences",
)  # fmt: skip
_TRANSFORMERS_METADATA = ("_from_model_config", "_commit_hash", "transformers_version")
_TRANSFORMERS_FIELDS = frozenset(vars(GenerationConfig())) | set(_TRANSFORMERS_METADATA)
_TRANSFORMERS_FIELDS_UNUSED = sorted(_TRANSFORMERS_FIELDS.difference(_TRANSFORMERS_FIELDS_USED, _TRANSFORMERS_METADATA))
# Fields `generate(**kwargs)` may override.
GENERATION_FIELDS = (
    "targets", "conditions", "guidance_groups", "grow_conditioning", "top_k", "top_p", "use_cache", "batch_guidance",
    "pad_token_id", "eos_token_id", "sentinel_token_ids", "special_tokens", "do_sample", "max_new_tokens",
    "num_return_sequences",
)  # fmt: skip


class FourMGenerationConfig(GenerationConfig):
    r"""
    Generation settings of [`FourMForMaskedModeling.generate`]: the chain of targets and how each is decoded.

    A `GenerationConfig` subclass: it saves, loads, copies, compares and updates as one. Of transformers' own fields
    it uses `do_sample`, `max_new_tokens`, `num_return_sequences`, `top_k`, `top_p`, `use_cache`, `pad_token_id`
    and `eos_token_id`; the others (`num_beams`, `max_length`, a global `temperature`...) do not apply to 4M's
    chained decoding and must stay unset.

    Args:
        > The chain

        targets (`list[FourMTargetSchedule]`): the modalities to generate, in order (dicts are accepted too).
        conditions (`list[str]`, *optional*): the conditioning modalities that classifier-free guidance removes in
            its unconditional pass (the official `cond_domains`). Inputs not listed stay visible in both passes.
        guidance_groups (`list[list[str]]`, *optional*): multi-condition guidance instead of `conditions` (the
            official `generate_multi_guided`): one conditional pass per group, seeing that group's modalities only,
            and logits `uncond + sum_i w_i (cond_i - uncond)` with the weights of each target's `guidance_scale`.
        grow_conditioning (`bool`, *optional*, defaults to `False`): once a MaskGIT / ROAR target is complete, add it
            to the guidance conditions of later targets (to the single group, or as a new group with
            `guidance_groups`). Autoregressive outputs never join, as in the official sampler.
        modality_specs (`dict[str, dict]`, *optional*): saved specs (`ModalitySpec.to_dict()`) of the modalities the
            config names; registered when not known yet, so a saved config loads where they were never registered.
            Filled in from the registry when saving.

        > Sampling

        do_sample (`bool`, *optional*, defaults to `True`): sample every target at its own temperature; False is
            greedy decoding (temperature 0 for every target, whatever its schedule says).
        num_return_sequences (`int`, *optional*): generate this many samples of every input (1 when unset); the
            output batch holds them input by input (`B * n` rows, the copies of input i at rows `i * n ...`).
        max_new_tokens (`int`, *optional*): the most tokens an autoregressive (sequence) target decodes, within the
            modality's `max_tokens` and the target's span; image targets are not affected.
        top_k (`int` or `float`, *optional*, defaults to 0): keep the k most likely tokens (a float is a fraction of
            the vocabulary); 0 disables it.
        top_p (`float`, *optional*, defaults to 1.0): nucleus filtering on the untempered logits; 1 (or the official
            0) disables it.

        > Speed

        use_cache (`bool`, *optional*, defaults to `True`): autoregressive targets reuse the encoder output and the
            decoder keys/values across tokens (otherwise every token re-runs the decoder over the whole prefix).
        batch_guidance (`bool`, *optional*, defaults to `True`): run the guidance passes through the decoder as one
            batch (every pass is encoded at its own length either way, so no pass computes another's padding);
            otherwise one decoder run per pass, which needs less memory.

        > Text special tokens (those of the released 4M WordPiece tokenizer by default)

        special_tokens (`SpecialTokens`, *optional*): all three below at once, e.g. `tokenizer.special_tokens`.
        pad_token_id (`int`, *optional*, defaults to 0): `[PAD]`, written after merged sequences.
        eos_token_id (`int`, *optional*, defaults to 3): `[EOS]`.
        sentinel_token_ids (`list[int]`, *optional*, defaults to 4, ..., 203): the ids of `[S_0]`, `[S_1]`, ...

    ```python
    >>> from fourm_hf import FourMGenerationConfig, FourMTargetSchedule
    >>> config = FourMGenerationConfig(
    ...     conditions=["rgb@224"],
    ...     targets=[
    ...         FourMTargetSchedule("tok_depth@224", "maskgit", num_steps=8, temperature=1.0, guidance_scale=2.0),
    ...         FourMTargetSchedule("caption", temperature=0.3),
    ...     ],
    ...     grow_conditioning=True,
    ... )
    ```
    """

    def __init__(
        self,
        targets: Sequence[FourMTargetSchedule | Mapping[str, Any]] | None = None,
        conditions: Sequence[str] | None = None,
        guidance_groups: Sequence[Sequence[str]] | None = None,
        grow_conditioning: bool = False,
        batch_guidance: bool = True,
        modality_specs: Mapping[str, Mapping[str, Any]] | None = None,
        special_tokens: SpecialTokens | None = None,
        sentinel_token_ids: Sequence[int] | None = None,
        pad_token_id: int | None = None,
        eos_token_id: int | None = None,
        do_sample: bool = True,
        num_return_sequences: int | None = None,
        max_new_tokens: int | None = None,
        top_k: int | float = 0,
        top_p: float = 1.0,
        use_cache: bool = True,
        **kwargs: Any,
    ):
        unknown = sorted(set(kwargs) - _TRANSFORMERS_FIELDS)
        if unknown:
            raise ValueError(f"Unknown FourMGenerationConfig arguments: {unknown}.")
        if modality_specs is not None:
            if not isinstance(modality_specs, Mapping):
                raise TypeError(f"modality_specs must be a dict of saved specs, got {type(modality_specs).__name__}.")
            ensure_registered({name: spec_from_dict(name, data) for name, data in modality_specs.items()})
        ids = (pad_token_id, eos_token_id, sentinel_token_ids)
        if special_tokens is not None:
            if any(i is not None for i in ids):
                raise ValueError("Pass either special_tokens or pad_token_id / eos_token_id / sentinel_token_ids.")
            if not isinstance(special_tokens, SpecialTokens):
                raise TypeError(f"special_tokens must be a SpecialTokens, got {type(special_tokens).__name__}.")
            pad_token_id, eos_token_id, sentinel_token_ids = (
                special_tokens.pad_id, special_tokens.eos_id, special_tokens.sentinel_ids
            )
        # Our fields go first: GenerationConfig.__init__ ends by calling `validate`.
        self.targets = _as_targets([] if targets is None else targets)
        self.conditions = check_names(conditions or [], "conditions")
        self.guidance_groups = None if guidance_groups is None else _as_guidance_groups(guidance_groups)
        self.grow_conditioning = grow_conditioning
        self.batch_guidance = batch_guidance
        self.sentinel_token_ids = list(RELEASED_SENTINEL_IDS if sentinel_token_ids is None else sentinel_token_ids)
        super().__init__(
            do_sample=do_sample,
            num_return_sequences=num_return_sequences,
            max_new_tokens=max_new_tokens,
            top_k=top_k,
            top_p=top_p,
            use_cache=use_cache,
            pad_token_id=RELEASED_PAD_ID if pad_token_id is None else pad_token_id,
            eos_token_id=RELEASED_EOS_ID if eos_token_id is None else eos_token_id,
            **kwargs,
        )

    @property
    def special_tokens(self) -> SpecialTokens:
        """`[PAD]`, `[EOS]` and the sentinels, as one [`SpecialTokens`]."""
        return SpecialTokens(self.pad_token_id, self.eos_token_id, tuple(self.sentinel_token_ids))

    @special_tokens.setter
    def special_tokens(self, value: SpecialTokens) -> None:
        if not isinstance(value, SpecialTokens):
            raise TypeError(f"special_tokens must be a SpecialTokens, got {type(value).__name__}.")
        self.pad_token_id, self.eos_token_id = value.pad_id, value.eos_id
        self.sentinel_token_ids = list(value.sentinel_ids)

    def update(self, defaults_only: bool = False, allow_custom_entries: bool = False, **kwargs: Any) -> dict[str, Any]:
        """`GenerationConfig.update` (returns the unused kwargs); when the new values fail validation the config is
        left as it was."""
        state = copy.deepcopy(self.__dict__)
        try:
            return super().update(defaults_only=defaults_only, allow_custom_entries=allow_custom_entries, **kwargs)
        except (TypeError, ValueError):
            self.__dict__.clear()
            self.__dict__.update(state)
            raise

    @property
    def modality_specs(self) -> dict[str, dict[str, Any]]:
        """The saved specs of every modality the config names (targets, conditions, guidance groups)."""
        names = [t.modality for t in _as_targets(self.targets)] + self.conditions
        names += [m for g in self.guidance_groups or [] for m in g]
        return {name: get_modality(name).to_dict() for name in dict.fromkeys(names)}

    def validate(self, strict: bool = False, user_set_attributes: set[str] | None = None) -> None:
        """Check every field; raises `ValueError` / `TypeError` naming the field (transformers' own checks
        included)."""
        for flag in ("grow_conditioning", "use_cache", "batch_guidance"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be a bool, got {getattr(self, flag)!r}.")
        check_bool(self.do_sample, "do_sample")
        for name in ("num_return_sequences", "max_new_tokens"):
            if getattr(self, name) is not None:
                check_int(getattr(self, name), name, minimum=1)
        set_unused = [name for name in _TRANSFORMERS_FIELDS_UNUSED if getattr(self, name, None) is not None]
        if set_unused:
            raise ValueError(
                f"{set_unused} are transformers generation settings that 4M's chained decoding does not use; leave "
                "them unset (temperatures, steps and guidance are set per target with FourMTargetSchedule)."
            )
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, float)):
            raise TypeError(
                f"top_k must be an int >= 0 or a vocabulary fraction in [0, 1], got {type(self.top_k).__name__} "
                f"{self.top_k!r}."
            )
        if isinstance(self.top_k, float):
            check_number(self.top_k, "top_k (a float is a vocabulary fraction)", 0, 1)
        else:
            check_int(self.top_k, "top_k", minimum=0)
        check_number(self.top_p, "top_p", 0, 1)
        try:
            SpecialTokens(self.pad_token_id, self.eos_token_id, tuple(self.sentinel_token_ids))
        except (TypeError, ValueError) as error:
            raise type(error)(f"pad_token_id / eos_token_id / sentinel_token_ids: {error}") from None
        self.targets = _as_targets(self.targets)
        self.conditions = check_names(self.conditions, "conditions")
        if self.guidance_groups is not None:
            self.guidance_groups = _as_guidance_groups(self.guidance_groups)
        for name in self.conditions + [m for g in self.guidance_groups or [] for m in g]:
            get_modality(name)
        if self.guidance_groups is not None and self.conditions:
            raise ValueError("Pass either `conditions` (one guidance group) or `guidance_groups`, not both.")
        if self.guidance_groups is not None and any(not g for g in self.guidance_groups):
            raise ValueError(f"guidance_groups must not contain empty groups, got {self.guidance_groups}.")
        names = [t.modality for t in self.targets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"Each modality can be a target once; repeated: {duplicates}.")
        clash = sorted(set(names) & set(self.conditions + [m for g in self.guidance_groups or [] for m in g]))
        if clash:
            raise ValueError(f"{clash} cannot be both conditions and targets.")
        self.guidance_plan()  # raises for guidance scales that do not fit the groups
        # 4M's greedy decoding is sampling at temperature 0: top-k / top-p and several return sequences still apply,
        # so transformers' checks of greedy decoding are skipped by validating as for sampling.
        do_sample, self.do_sample = self.do_sample, True
        try:
            super().validate(strict=strict, user_set_attributes=user_set_attributes)
        finally:
            self.do_sample = do_sample

    def guidance_plan(self) -> list[tuple[list[list[str]], list[float] | None]]:
        """Per target: the guidance groups active for it and their weights (None when the target is unguided)."""
        multi = self.guidance_groups is not None
        if multi:
            groups = [list(g) for g in self.guidance_groups]
        else:
            groups = [list(self.conditions)] if self.conditions else []
        plan = []
        for target in self.targets:
            scale = target.guidance_scale
            if isinstance(scale, list):
                if len(scale) != len(groups):
                    raise ValueError(
                        f"{target.modality}: guidance_scale has {len(scale)} weights but {len(groups)} guidance "
                        f"groups are active ({groups})."
                    )
                weights = scale
            elif multi and groups:
                raise ValueError(
                    f"{target.modality}: with guidance_groups, guidance_scale must list one weight per group "
                    f"({len(groups)}: {groups})."
                )
            else:
                weights = None if scale == 1.0 else [scale]
                if weights is not None and not groups:
                    raise ValueError(
                        f"{target.modality}: guidance_scale={scale} needs conditions to guide with; set `conditions` "
                        "(or `grow_conditioning` with an earlier image target)."
                    )
            plan.append(([list(g) for g in groups], weights))
            if self.grow_conditioning and not target.is_autoregressive:
                if multi or not groups:
                    groups.append([target.modality])
                else:
                    groups[0].append(target.modality)
        return plan

    # -- serialisation ---------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output["targets"] = [t.to_dict() for t in _as_targets(self.targets)]
        output["modality_specs"] = self.modality_specs
        return output

    def to_diff_dict(self) -> dict[str, Any]:
        """The fields that differ from `FourMGenerationConfig()` (what `save_pretrained` writes). transformers diffs
        against a plain `GenerationConfig()`, which would write every 4M default."""
        output = self.to_dict()
        defaults = type(self)().to_dict()
        return {k: v for k, v in output.items() if k not in defaults or k == "transformers_version" or v != defaults[k]}

    @classmethod
    def from_model_config(cls, model_config: Any) -> FourMGenerationConfig:
        """The generation config a 4M model starts with: no targets (pass them to `generate`, or build a chain from
        the model's modalities with a recipe such as `rgb_to_all(model.config)`) and the released special tokens.
        A 4M model config holds no generation settings, so nothing is read from `model_config`."""
        config = cls(_from_model_config=True)
        config._original_object_hash = hash(config)
        return config

    # -- recipes: the official demo sampler's chains (see `recipes`) --------------------------------------------------

    @classmethod
    def rgb_to_all(
        cls, model_config: FourMConfig, conditions: Sequence[str] | None = None, targets: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> FourMGenerationConfig:
        """RGB -> every modality the model decodes; `conditions` default to the model's RGB input. See
        `recipes.rgb_to_all`; `kwargs` override config fields."""
        return cls(**{**recipes.rgb_to_all(model_config, conditions, targets), **kwargs})

    @classmethod
    def caption_to_all(
        cls, model_config: FourMConfig, conditions: Sequence[str] | None = None, targets: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> FourMGenerationConfig:
        """Caption -> every modality the model decodes (RGB last among the images). See `recipes.caption_to_all`."""
        return cls(**{**recipes.caption_to_all(model_config, conditions, targets), **kwargs})

    @classmethod
    def caption_det_to_all(
        cls, model_config: FourMConfig, conditions: Sequence[str] | None = None, targets: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> FourMGenerationConfig:
        """Caption + bounding boxes -> all, with the caption -> all settings. See `recipes.caption_det_to_all`."""
        return cls(**{**recipes.caption_det_to_all(model_config, conditions, targets), **kwargs})

    @classmethod
    def demo_recipe(
        cls, model_config: FourMConfig, conditions: Sequence[str], targets: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> FourMGenerationConfig:
        """The official demo's chain for `conditions`. See `recipes.demo_recipe`."""
        return cls(**{**recipes.demo_recipe(model_config, conditions, targets), **kwargs})

    @classmethod
    def super_resolution(
        cls, sr_model_config: FourMConfig, modalities: Iterable[str], **kwargs: Any
    ) -> FourMGenerationConfig:
        """Super-resolution of `modalities` with a 4M-SR model. See `recipes.super_resolution`."""
        return cls(**{**recipes.super_resolution(sr_model_config, modalities), **kwargs})


__all__ = ["GENERATION_FIELDS", "FourMGenerationConfig", "FourMTargetSchedule"]
