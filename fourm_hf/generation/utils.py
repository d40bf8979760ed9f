"""Chained any-to-any generation with 4M: schedules, logits processors, decoding schemes and `generate`.

A generation run decodes a list of target modalities one after the other. Every decoded token becomes an encoder
input for what follows, so `rgb -> depth -> normals` conditions the normals on the RGB image and on the generated
depth. Image-like targets are decoded in parallel steps (MaskGIT: keep the most confident predictions; ROAR: random
order), sequence targets token by token with a KV cache. Classifier-free guidance runs its conditional and
unconditional passes as one batch.

Semantics follow the official `GenerationSampler` of apple/ml-4m (per-step seeds `seed + step`, token and
temperature schedules, how targets are initialised and how sequence outputs are merged back), so that decoding at
temperature 0 gives the same tokens.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, TopKLogitsWarper, TopPLogitsWarper
from transformers.utils import logging

from ..modalities.registry import IMAGE_TOKENS, PIXELS, SEQUENCE, SEQUENCE_EMBEDDING, ModalityInfo, get_modality
from ..conversion.official_fourm import hub_kwargs

if TYPE_CHECKING:
    from ..models.fourm.configuration_fourm import FourMConfig

logger = logging.get_logger(__name__)

Modalities = dict[str, dict[str, torch.Tensor]]

AUTOREGRESSIVE = "autoregressive"
SCHEMES = ("maskgit", "roar", AUTOREGRESSIVE)
# Temperatures below this are greedy (argmax), as in the official sampler.
GREEDY_TEMPERATURE = 1e-10


# ----------------------------------------------------------------------------------------------------------------
# Token schedules: how many tokens each step of a parallel (MaskGIT / ROAR) decoding commits.


def cosine_token_schedule(num_steps: int, num_tokens: int) -> list[int]:
    """Tokens per step following the cosine masking curve: few at both ends, most in the middle.

    The fraction still masked before step i is (1 + cos(pi i / S)) / 2; step i commits the rounded difference to
    the next one and the last step takes the remainder. E.g. 8 steps over 784 tokens:
    30, 85, 127, 150, 150, 127, 85, 30.
    """
    masked = [0.5 * (1 + math.cos(math.pi * i / num_steps)) for i in range(num_steps)]
    counts = [round(num_tokens * (masked[i] - masked[i + 1])) for i in range(num_steps - 1)]
    return [*counts, num_tokens - sum(counts)]


def linear_token_schedule(num_steps: int, num_tokens: int) -> list[int]:
    """Near-equal tokens per step, larger steps first: the integer cuts of linspace(0, T, S + 1), sorted descending.

    E.g. 25 steps over 196 tokens: 21 steps of 8, then 4 of 7.
    """
    cuts = np.linspace(0, num_tokens, num_steps + 1, dtype=int)
    return sorted((int(c) for c in np.diff(cuts)), reverse=True)


TOKEN_SCHEDULES: dict[str, Callable[[int, int], list[int]]] = {
    "cosine": cosine_token_schedule,
    "linear": linear_token_schedule,
}


# ----------------------------------------------------------------------------------------------------------------
# Temperature schedules: one temperature per step, from the starting temperature and the token schedule.


def constant_temperature_schedule(temperature: float, token_counts: Sequence[int]) -> list[float]:
    return [float(temperature)] * len(token_counts)


def linear_temperature_schedule(temperature: float, token_counts: Sequence[int]) -> list[float]:
    """Step k > 0 uses `temperature` times the fraction of tokens still masked when it starts."""
    total, done, temperatures = sum(token_counts), 0, []
    for count in token_counts:
        temperatures.append(max(temperature * (total - done) / total, 1e-9))
        done += count
    return temperatures


def onex_temperature_schedule(
    temperature: float, token_counts: Sequence[int], min_temperature: float, power: float
) -> list[float]:
    """A 1/x^power decay from `temperature` to `min_temperature`, damped by the fraction still masked.

    With y = 1/x^power on linspace(1, 100, total tokens) rescaled to [0, 1] and c_k the fraction decoded after step
    k, step k uses min_t + (max_t - min_t) * (1 - c_k) * y_k (the official formula; the last step is `min_temperature`).
    """
    total = sum(token_counts)
    y = 1.0 / np.linspace(1, 100, num=total) ** power
    y = y - y.min()
    y = y / y.max()
    decoded = np.cumsum(token_counts) / total
    return [
        max(float(min_temperature + (temperature - min_temperature) * ((1 - c) * yk)), 1e-9)
        for yk, c in zip(y, decoded, strict=False)  # y has one entry per token, only the first S are used
    ]


def parse_temperature_schedule(name: str) -> tuple[str, tuple[float, ...]]:
    """`"constant"`, `"linear"` or `"onex:<min_t>:<power>"` -> (schedule name, extra arguments)."""
    if not isinstance(name, str):
        raise TypeError(f"temperature_schedule must be a string, got {type(name).__name__}.")
    kind, *args = name.split(":")
    expected = {"constant": 0, "linear": 0, "onex": 2}
    if kind not in expected or len(args) != expected[kind]:
        raise ValueError(
            f"Unknown temperature_schedule {name!r}; use 'constant', 'linear' or 'onex:<min_temperature>:<power>' "
            "(e.g. 'onex:0.5:0.5')."
        )
    try:
        return kind, tuple(float(a) for a in args)
    except ValueError:
        raise ValueError(f"temperature_schedule {name!r}: min_temperature and power must be numbers.") from None


TEMPERATURE_SCHEDULES: dict[str, Callable[..., list[float]]] = {
    "constant": constant_temperature_schedule,
    "linear": linear_temperature_schedule,
    "onex": onex_temperature_schedule,
}


# ----------------------------------------------------------------------------------------------------------------
# Schedules


@dataclass
class FourMTargetSchedule:
    """How to generate one target modality.

    Args:
        modality (`str`): the target, e.g. `"tok_depth@224"` or `"caption"`.
        scheme (`str`, *optional*): `"maskgit"` (parallel steps keeping the most confident predictions), `"roar"`
            (parallel steps over a random order) or `"autoregressive"` (token by token). Defaults to `"maskgit"` for
            image-token targets and `"autoregressive"` for sequences, the only scheme sequences allow.
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
        info = get_modality(self.modality)  # raises for unknown modalities
        name = self.modality
        if not info.has_decoder:
            raise ValueError(f"{name} ({info.kind}) cannot be generated: it is an input-only modality.")
        if self.scheme is None:
            self.scheme = AUTOREGRESSIVE if info.kind == SEQUENCE else "maskgit"
        if self.scheme not in SCHEMES:
            raise ValueError(f"{name}: scheme must be one of {SCHEMES}, got {self.scheme!r}.")
        if info.kind == SEQUENCE and self.scheme != AUTOREGRESSIVE:
            raise ValueError(f"{name} is a sequence and can only be generated with scheme='autoregressive'.")
        if info.kind != SEQUENCE and self.scheme == AUTOREGRESSIVE:
            raise ValueError(f"{name} is an image modality; use scheme='maskgit' or 'roar', not 'autoregressive'.")
        _check_int(f"{name}: num_steps", self.num_steps, minimum=1)
        if self.num_tokens is not None:
            _check_int(f"{name}: num_tokens", self.num_tokens, minimum=2 if info.kind == SEQUENCE else 1)
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)):
            raise TypeError(f"{name}: temperature must be a number, got {type(self.temperature).__name__}.")
        if self.temperature < 0:
            raise ValueError(f"{name}: temperature must be >= 0, got {self.temperature}.")
        self.temperature = float(self.temperature)
        kind, _ = parse_temperature_schedule(self.temperature_schedule)
        if self.guidance_schedule != "constant":
            raise ValueError(f"{name}: guidance_schedule must be 'constant', got {self.guidance_schedule!r}.")
        self.guidance_scale = _as_guidance_scale(name, self.guidance_scale)
        if self.scheme == AUTOREGRESSIVE:
            if self.num_steps != 1 or self.token_schedule is not None or kind != "constant":
                raise ValueError(
                    f"{name}: num_steps, token_schedule and temperature_schedule apply to maskgit/roar targets; "
                    f"autoregressive decoding takes one token per step at a constant temperature."
                )
            return
        if self.token_schedule is None:
            self.token_schedule = "cosine" if self.scheme == "maskgit" else "linear"
        if self.token_schedule not in TOKEN_SCHEDULES:
            raise ValueError(
                f"{name}: token_schedule must be one of {sorted(TOKEN_SCHEDULES)}, got {self.token_schedule!r}."
            )
        if self.num_tokens is not None and self.num_tokens > info.num_tokens:
            raise ValueError(f"{name} has {info.num_tokens} tokens; num_tokens={self.num_tokens} is too many.")
        self.token_counts(self.num_tokens or info.num_tokens)  # raises if the steps do not fit the tokens

    @property
    def is_autoregressive(self) -> bool:
        return self.scheme == AUTOREGRESSIVE

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
        kind, args = parse_temperature_schedule(self.temperature_schedule)
        return TEMPERATURE_SCHEDULES[kind](self.temperature, token_counts, *args)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")


def _as_guidance_scale(name: str, scale: Any) -> float | list[float]:
    def number(x: Any) -> float:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise TypeError(f"{name}: guidance_scale must be a number or a list of numbers, got {x!r}.")
        return float(x)

    if isinstance(scale, (list, tuple)):
        if not scale:
            raise ValueError(f"{name}: guidance_scale list is empty.")
        return [number(s) for s in scale]
    return number(scale)


def _as_target(target: FourMTargetSchedule | dict[str, Any]) -> FourMTargetSchedule:
    if isinstance(target, FourMTargetSchedule):
        return target
    if isinstance(target, dict):
        return FourMTargetSchedule(**target)
    raise TypeError(f"targets must hold FourMTargetSchedule objects or dicts, got {type(target).__name__}.")


class FourMGenerationConfig(GenerationConfig):
    r"""
    Generation settings of [`FourMForMaskedModeling.generate`]: the chain of targets and how each is decoded.

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

        > Sampling

        top_k (`int` or `float`, *optional*, defaults to 0): keep the k most likely tokens (a float is a fraction of
            the vocabulary); 0 disables it.
        top_p (`float`, *optional*, defaults to 0.0): nucleus filtering on the untempered logits; 0 (or 1) disables it.

        > Speed

        use_cache (`bool`, *optional*, defaults to `True`): autoregressive targets reuse the encoder output and the
            decoder keys/values across tokens (otherwise every token re-runs the decoder over the whole prefix).
        batch_guidance (`bool`, *optional*, defaults to `True`): run the guidance passes as one batch (otherwise one
            forward per pass, which needs less memory).

        > Text token ids (those of the released 4M WordPiece tokenizer by default)

        pad_token_id (`int`, *optional*, defaults to 0): `[PAD]`, written after merged sequences.
        first_sentinel_token_id (`int`, *optional*, defaults to 4): id of `[S_0]`; sentinel k is `first + k`.
        num_sentinel_tokens (`int`, *optional*, defaults to 200): number of sentinels `[S_0]`...

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

    def __init__(self, **kwargs):
        # GenerationConfig.__init__ is skipped on purpose: none of its token-by-token LM settings apply here.
        self.targets = [_as_target(t) for t in kwargs.pop("targets", None) or []]
        self.conditions = list(kwargs.pop("conditions", None) or [])
        groups = kwargs.pop("guidance_groups", None)
        self.guidance_groups = None if groups is None else [list(g) for g in groups]
        self.grow_conditioning = kwargs.pop("grow_conditioning", False)
        self.top_k = kwargs.pop("top_k", 0)
        self.top_p = kwargs.pop("top_p", 0.0)
        self.use_cache = kwargs.pop("use_cache", True)
        self.batch_guidance = kwargs.pop("batch_guidance", True)
        self.pad_token_id = kwargs.pop("pad_token_id", 0)
        self.first_sentinel_token_id = kwargs.pop("first_sentinel_token_id", 4)
        self.num_sentinel_tokens = kwargs.pop("num_sentinel_tokens", 200)
        self._commit_hash = kwargs.pop("_commit_hash", None)
        self._from_model_config = kwargs.pop("_from_model_config", None)
        self.transformers_version = kwargs.pop("transformers_version", None)
        if kwargs:
            raise ValueError(f"Unknown FourMGenerationConfig arguments: {sorted(kwargs)}.")
        self.validate()

    def validate(self, strict: bool = False, **kwargs: Any) -> None:
        """Check every field; raises `ValueError` / `TypeError` naming the field."""
        for flag in ("grow_conditioning", "use_cache", "batch_guidance"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be a bool, got {getattr(self, flag)!r}.")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, float)) or self.top_k < 0:
            raise ValueError(f"top_k must be an int >= 0 or a vocabulary fraction in [0, 1], got {self.top_k!r}.")
        if isinstance(self.top_k, float) and self.top_k > 1:
            raise ValueError(f"A float top_k is a vocabulary fraction and must be <= 1, got {self.top_k}.")
        if isinstance(self.top_p, bool) or not isinstance(self.top_p, (int, float)) or not 0 <= self.top_p <= 1:
            raise ValueError(f"top_p must be a number in [0, 1], got {self.top_p!r}.")
        for name in ("pad_token_id", "first_sentinel_token_id", "num_sentinel_tokens"):
            _check_int(name, getattr(self, name), minimum=0)
        self.targets = [_as_target(t) for t in self.targets]
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

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output["targets"] = [t.to_dict() for t in self.targets]
        return output

    @classmethod
    def from_model_config(cls, *args, **kwargs):
        raise NotImplementedError(
            "FourMGenerationConfig holds a generation schedule; it is not derived from a model config."
        )

    def get_generation_mode(self, *args, **kwargs):
        raise NotImplementedError("FourMGenerationConfig has no transformers generation mode; use FourM's generate.")

    # -- Recipes: the official demo sampler's defaults -------------------------------------------------------------

    @classmethod
    def rgb_to_all(
        cls, model_config: FourMConfig, conditions: Sequence[str] = ("rgb@224",), **kwargs: Any
    ) -> FourMGenerationConfig:
        """RGB -> every other modality the model decodes (one-step ROAR at temperature 0.01 with guidance 2 for image
        targets, then captions, boxes and the other sequences); `tok_rgb@224` is skipped when pixels are given."""
        return cls.demo_recipe(model_config, conditions, **kwargs)

    @classmethod
    def caption_to_all(
        cls, model_config: FourMConfig, conditions: Sequence[str] = ("caption",), **kwargs: Any
    ) -> FourMGenerationConfig:
        """Caption -> all: CLIP (ROAR 50 steps, onex temperature 5 -> 0.5, guidance 3), the other image modalities,
        RGB (ROAR 25 steps), then the sequences."""
        return cls.demo_recipe(model_config, conditions, **kwargs)

    @classmethod
    def caption_det_to_all(
        cls, model_config: FourMConfig, conditions: Sequence[str] = ("caption", "det"), **kwargs: Any
    ) -> FourMGenerationConfig:
        """Caption + bounding boxes -> all, with the caption -> all settings."""
        return cls.demo_recipe(model_config, conditions, **kwargs)

    @classmethod
    def demo_recipe(
        cls,
        model_config: FourMConfig,
        conditions: Sequence[str],
        targets: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> FourMGenerationConfig:
        """The official demo's chain for `conditions`: `targets` (default: every modality of the demo order that the
        model decodes and that is not given) with the demo's per-modality settings (the RGB -> X table when RGB is a
        condition, X -> RGB otherwise), growing guidance conditions, top-p 0.8. `kwargs` override config fields."""
        conditions = list(conditions)
        for name in conditions:
            if name not in model_config.encoder_modalities:
                raise ValueError(
                    f"The model does not take {name!r} as input; it takes {model_config.encoder_modalities}."
                )
        if targets is None:
            targets = [m for m in DEMO_ORDER if m in model_config.decoder_modalities and m not in conditions]
            if "rgb@224" in conditions and "tok_rgb@224" in targets:
                targets.remove("tok_rgb@224")  # the demo does not tokenize RGB it was given as pixels
        from_rgb = "rgb@224" in conditions or "tok_rgb@224" in conditions
        table = DEMO_RGB_TO_X if from_rgb else DEMO_X_TO_RGB
        return cls._from_table(table, conditions, targets, **kwargs)

    @classmethod
    def super_resolution(
        cls, sr_model_config: FourMConfig, modalities: Iterable[str], **kwargs: Any
    ) -> FourMGenerationConfig:
        """Super-resolution with a 4M-SR model: every @448 modality of the demo's SR order whose @224 version is in
        `modalities` (the base generation's output), with MaskGIT 8 cosine steps, temperature 1, guidance 2, all
        inputs the SR model takes as guidance conditions."""
        given = list(modalities)
        conditions = [m for m in given if m in sr_model_config.encoder_modalities]
        targets = [
            m for m in DEMO_SR_ORDER
            if m in sr_model_config.decoder_modalities and m.replace("@448", "@224") in conditions
        ]
        if not targets:
            raise ValueError(
                f"Nothing to super-resolve: none of {list(DEMO_SR_ORDER)} has its @224 version among {given}."
            )
        return cls._from_table(DEMO_SUPER_RESOLUTION, conditions, targets, **kwargs)

    @classmethod
    def _from_table(
        cls, table: dict[str, dict[str, Any]], conditions: list[str], targets: Sequence[str], **kwargs: Any
    ) -> FourMGenerationConfig:
        missing = [t for t in targets if t not in table]
        if missing:
            raise ValueError(f"The recipe has no settings for {missing}; it covers {sorted(table)}.")
        settings = {"grow_conditioning": True, "top_p": 0.8, "top_k": 0, **kwargs}
        return cls(conditions=conditions, targets=[FourMTargetSchedule(t, **table[t]) for t in targets], **settings)


# The demo's generation order and per-modality settings (`Demo4MSampler` in apple/ml-4m).
DEMO_ORDER = (
    "tok_clip@224", "tok_dinov2@224", "tok_imagebind@224", "tok_depth@224", "tok_normal@224", "tok_semseg@224",
    "tok_canny_edge@224", "tok_sam_edge@224", "tok_rgb@224", "caption", "det", "human_poses", "sam_instance",
    "color_palette", "metadata",
)  # fmt: skip
DEMO_SR_ORDER = ("tok_clip@448", "tok_depth@448", "tok_normal@448", "tok_semseg@448", "tok_rgb@448")

_DEMO_SEQUENCES = {
    "caption": {"temperature": 0.3},
    "det": {"temperature": 0.3},
    "human_poses": {"temperature": 0.1},
    "sam_instance": {"temperature": 0.01, "num_tokens": 256},
    "color_palette": {"temperature": 0.1},
    "metadata": {"temperature": 0.1},
}
_DEMO_IMAGES = ("tok_clip@224", "tok_dinov2@224", "tok_imagebind@224", "tok_depth@224", "tok_normal@224",
                "tok_semseg@224", "tok_canny_edge@224", "tok_sam_edge@224", "tok_rgb@224")  # fmt: skip
_ONEX = {"temperature": 3.0, "temperature_schedule": "onex:0.5:0.5", "guidance_scale": 2.0}
DEMO_RGB_TO_X = {
    **{m: {"scheme": "roar", "num_steps": 1, "temperature": 0.01, "guidance_scale": 2.0} for m in _DEMO_IMAGES},
    **_DEMO_SEQUENCES,
}
DEMO_X_TO_RGB = {
    **{m: {"scheme": "roar", "num_steps": 8, **_ONEX} for m in _DEMO_IMAGES},
    "tok_clip@224": {"scheme": "roar", "num_steps": 50, "temperature": 5.0, "temperature_schedule": "onex:0.5:0.5",
                     "guidance_scale": 3.0},
    "tok_dinov2@224": {"scheme": "roar", "num_steps": 8, "temperature": 0.01, "guidance_scale": 2.0},
    "tok_imagebind@224": {"scheme": "roar", "num_steps": 8, "temperature": 0.01, "guidance_scale": 2.0},
    "tok_rgb@224": {"scheme": "roar", "num_steps": 25, **_ONEX},
    **_DEMO_SEQUENCES,
}  # fmt: skip
DEMO_SUPER_RESOLUTION = {
    m: {"scheme": "maskgit", "num_steps": 8, "token_schedule": "cosine", "temperature": 1.0, "guidance_scale": 2.0}
    for m in DEMO_SR_ORDER
}


# ----------------------------------------------------------------------------------------------------------------
# Logits processors


class FourMGuidanceLogitsProcessor(LogitsProcessor):
    r"""
    Classifier-free guidance over stacked passes: `scores` holds the conditional passes (one per guidance group, in
    order) and then the unconditional pass, each `R` rows; returns `uncond + sum_i w_i (cond_i - uncond)`, `R` rows.
    With one group this is `ClassifierFreeGuidanceLogitsProcessor` for any scale (also <= 1).

    Args:
        weights (`list[float]`): one guidance weight per conditional pass.
    """

    def __init__(self, weights: Sequence[float]):
        self.weights = [float(w) for w in weights]

    def __call__(self, input_ids: torch.LongTensor | None, scores: torch.Tensor) -> torch.Tensor:
        passes = scores.view(len(self.weights) + 1, -1, scores.shape[-1])  # (P, R, V)
        uncond, cond = passes[-1], passes[:-1]
        weights = torch.tensor(self.weights, dtype=scores.dtype, device=scores.device)[:, None, None]
        return uncond + ((cond - uncond) * weights).sum(0)


class FourMTemperatureScheduleLogitsWarper(LogitsProcessor):
    r"""
    Divides the logits by the temperature of the current decoding step (`cur_step`, counting from 0 within a target).

    Args:
        temperatures (`list[float]`): one temperature per step.
    """

    def __init__(self, temperatures: Sequence[float]):
        if any(t <= 0 for t in temperatures):
            raise ValueError(f"Temperatures must be > 0 (use greedy decoding for 0), got {list(temperatures)}.")
        self.temperatures = [float(t) for t in temperatures]

    def __call__(self, input_ids: torch.LongTensor | None, scores: torch.Tensor, cur_step: int) -> torch.Tensor:
        return scores / self.temperatures[cur_step]


def sample_tokens(
    scores: torch.Tensor,
    warpers: LogitsProcessorList,
    input_ids: torch.LongTensor | None,
    cur_step: int,
    greedy: bool,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row of `scores` (R, V); returns `(ids, confidence)`, both (R,).

    Greedy rows take the argmax with confidence 1; otherwise `warpers` (top-k, top-p, temperature) turn the scores
    into a distribution, one token is drawn, and its probability is the confidence.
    """
    if greedy:
        ids = scores.argmax(dim=-1)
        return ids, torch.ones(ids.shape, dtype=torch.float32, device=ids.device)
    probs = warpers(input_ids, scores, cur_step=cur_step).softmax(dim=-1)
    ids = torch.multinomial(probs, 1, generator=generator)[:, 0]
    return ids, probs.gather(1, ids[:, None])[:, 0]


# ----------------------------------------------------------------------------------------------------------------
# Parallel decoding schemes: which target positions are queried in a step, and which predictions are kept.


def masked_positions_in_order(target_mask: torch.Tensor, num_select: int, generator: torch.Generator) -> torch.Tensor:
    """MaskGIT queries: every position still to decode, in index order. (B, N) -> (B, Q)."""
    count = int((~target_mask[0]).sum())
    return torch.argsort(target_mask.to(torch.int8), dim=1, stable=True)[:, :count]


def masked_positions_in_random_order(
    target_mask: torch.Tensor, num_select: int, generator: torch.Generator
) -> torch.Tensor:
    """ROAR queries: `num_select` positions still to decode, in a random order shared by the batch (the official
    draw: one uniform per position, scaled by 1e-6 and added to the mask before sorting). (B, N) -> (B, Q)."""
    noise = torch.rand(target_mask.shape[1], generator=generator, device=target_mask.device) * 1e-6
    count = min(num_select, int((~target_mask[0]).sum()))
    return torch.argsort(target_mask + noise[None], dim=1)[:, :count]


def most_confident(confidence: torch.Tensor, num_select: int) -> torch.Tensor:
    """MaskGIT acceptance: the `num_select` most confident queries of each sample. (B, Q) -> (B, num_select)."""
    return torch.topk(confidence, num_select, dim=-1).indices


def all_queries(confidence: torch.Tensor, num_select: int) -> torch.Tensor:
    """ROAR acceptance: every query. (B, Q) -> (B, Q)."""
    return torch.arange(confidence.shape[1], device=confidence.device).expand_as(confidence)


@dataclass(frozen=True)
class ParallelDecodingScheme:
    """One parallel decoding scheme: `select_queries(target_mask, num_select, generator) -> positions` and
    `accept(confidence, num_select) -> indices of the queries to commit`."""

    select_queries: Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]
    accept: Callable[[torch.Tensor, int], torch.Tensor]


PARALLEL_SCHEMES: dict[str, ParallelDecodingScheme] = {
    "maskgit": ParallelDecodingScheme(masked_positions_in_order, most_confident),
    "roar": ParallelDecodingScheme(masked_positions_in_random_order, all_queries),
}


# ----------------------------------------------------------------------------------------------------------------
# Modality dict helpers


@dataclass(frozen=True)
class _TextIds:
    """Text token ids generation needs (from the generation config)."""

    pad: int
    first_sentinel: int
    num_sentinels: int

    @property
    def start(self) -> int:  # [S_1]: opens the span of a blank sequence target
        return self.first_sentinel + 1

    @property
    def end(self) -> int:  # [S_2]: closes it
        return self.first_sentinel + 2

    def is_sentinel(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= self.first_sentinel) & (ids < self.first_sentinel + self.num_sentinels)


def blank_target(info: ModalityInfo, batch_size: int, num_tokens: int, text: _TextIds, device: torch.device) -> dict:
    """An empty target (the official initialisation). Images: all positions hidden and to be decoded. Sequences:
    `[S_1] [S_1] [PAD] ... [S_2]` with only the first `[S_1]` visible and the rest the target span."""
    if info.kind == IMAGE_TOKENS:
        shape = (batch_size, num_tokens)
        return {
            "tensor": torch.zeros(shape, dtype=torch.long, device=device),
            "input_mask": torch.ones(shape, dtype=torch.bool, device=device),
            "target_mask": torch.zeros(shape, dtype=torch.bool, device=device),
        }
    tensor = torch.full((batch_size, num_tokens), text.pad, dtype=torch.long, device=device)
    tensor[:, :2] = text.start
    tensor[:, -1] = text.end
    input_mask = torch.ones(tensor.shape, dtype=torch.bool, device=device)
    input_mask[:, 0] = False
    return {"tensor": tensor, "input_mask": input_mask, "target_mask": ~input_mask}


def _hide(entry: dict, text: _TextIds) -> dict:
    return {**entry, "input_mask": torch.ones_like(entry["input_mask"])}


def _empty_sequence(entry: dict, text: _TextIds) -> dict:
    """A sequence reduced to one visible `[S_1]`: "everything is masked"."""
    tensor = entry["tensor"].clone()
    tensor[:, 0] = text.start
    input_mask = torch.ones_like(entry["input_mask"])
    input_mask[:, 0] = False
    return {**entry, "tensor": tensor, "input_mask": input_mask}


def _empty_features(entry: dict, text: _TextIds) -> dict:
    """Feature sequences (T5 captions) become a single visible zero vector."""
    input_mask = torch.ones_like(entry["input_mask"])
    input_mask[:, 0] = False
    return {**entry, "tensor": torch.zeros_like(entry["tensor"]), "input_mask": input_mask}


# How the unconditional pass of classifier-free guidance removes a condition, by modality kind.
EMPTY_CONDITION: dict[str, Callable[[dict, _TextIds], dict]] = {
    PIXELS: _hide,
    IMAGE_TOKENS: _hide,
    SEQUENCE: _empty_sequence,
    SEQUENCE_EMBEDDING: _empty_features,
}


def merge_generated_span(
    input_ids: torch.Tensor, input_mask: torch.Tensor, generated: torch.Tensor, text: _TextIds
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill the sentinels of a sequence's visible tokens with what was generated after the same sentinels.

    Each sentinel `[S_k]` among the visible tokens (`[S_1]` when none is visible) is replaced by every generated
    token that follows a `[S_k]` in `generated`, in order; tokens after other sentinels are dropped (the official
    span merge, batched). Returns the merged ids (B, M), right-padded with `[PAD]`, and the padding mask (B, M).
    """
    batch = input_ids.shape[0]
    # visible ids first, in order: (B, L)
    visible = input_ids.gather(1, torch.argsort(input_mask.to(torch.int8), dim=1, stable=True))
    counts = (~input_mask).sum(1)
    visible[:, 0] = torch.where(counts == 0, text.start, visible[:, 0])
    counts = counts.clamp(min=1)
    width = int(counts.max())
    visible = visible[:, :width]
    valid = torch.arange(width, device=input_ids.device)[None] < counts[:, None]
    visible_sentinel = text.is_sentinel(visible) & valid

    # group of each generated token = the last sentinel at or before it (-1 before any sentinel): (B, G)
    gen_sentinel = text.is_sentinel(generated)
    index = torch.arange(generated.shape[1], device=generated.device).expand_as(generated)
    last = torch.where(gen_sentinel, index, -1).cummax(dim=1).values
    group = generated.gather(1, last.clamp(min=0)).masked_fill(last < 0, -1)
    keep = ~gen_sentinel & (last >= 0)

    # slot (p, 0) emits visible token p itself, slot (p, 1 + j) generated token j if it fills sentinel p
    fills = visible_sentinel[:, :, None] & keep[:, None, :] & (group[:, None, :] == visible[:, :, None])
    emit = torch.cat([(valid & ~visible_sentinel)[:, :, None], fills], dim=2).flatten(1)  # (B, W (1 + G))
    values = torch.cat([visible[:, :, None], generated[:, None, :].expand(batch, width, -1)], dim=2).flatten(1)
    lengths = emit.sum(1)
    size = max(int(lengths.max()), 1)
    order = torch.argsort((~emit).to(torch.int8), dim=1, stable=True)[:, :size]
    padding = torch.arange(size, device=input_ids.device)[None] >= lengths[:, None]
    return values.gather(1, order).masked_fill(padding, text.pad), padding


# ----------------------------------------------------------------------------------------------------------------
# Generation


@dataclass
class _TargetPlan:
    """A target of the chain, resolved against the model and the inputs."""

    schedule: FourMTargetSchedule
    info: ModalityInfo
    token_counts: list[int] = field(default_factory=list)  # parallel schemes: tokens per step
    temperatures: list[float] = field(default_factory=list)
    groups: list[list[str]] = field(default_factory=list)
    weights: list[float] | None = None  # None: unguided

    @property
    def num_steps(self) -> int:
        return len(self.token_counts) if self.token_counts else 1


class FourMGenerationMixin:
    """Chained any-to-any generation for [`FourMForMaskedModeling`]: see [`~FourMGenerationMixin.generate`]."""

    @torch.no_grad()
    def generate(
        self,
        modalities: Modalities,
        generation_config: FourMGenerationConfig | Sequence[FourMTargetSchedule] | None = None,
        seed: int | None = None,
        logits_processor: LogitsProcessorList | None = None,
        progress_bar: bool = True,
        **kwargs: Any,
    ) -> Modalities:
        r"""
        Generate the targets of `generation_config` one after the other, each conditioned on the inputs and on
        every target generated before it.

        The algorithm (comments in the body refer to these steps):
        ```
        1. Settings: kwargs override `generation_config`, which overrides the model's `generation_config` (on a copy).
        2. Inputs: masks filled in (absent = fully visible, not a target), blank targets added for targets that are
           not given, each target resolved to its token schedule, temperatures and guidance groups.
        3. For every target, for every step s (counted over the whole chain; RNG seeded with `seed + s`):
           a. Build the passes: with guidance, one conditional pass per group and an unconditional pass that empties
              the groups' conditions; all passes run as one batch (`batch_guidance=False`: one forward each).
           b. MaskGIT / ROAR: encode the visible tokens, query the target positions of the step with the mask token,
              decode, combine the passes' logits, sample every query, commit the accepted tokens (they become
              visible inputs and stop being targets).
           c. Autoregressive: encode once, then decode one token at a time from the first token of the target span
              (KV cache: only the new token goes through the decoder), until every sample produced the span's last
              token or the budget runs out; the generated span replaces the sequence's sentinels.
           d. With `grow_conditioning`, a completed MaskGIT / ROAR target joins the guidance conditions.
        ```

        Args:
            modalities (`dict[str, dict[str, torch.Tensor]]`): the inputs, in the forward format (`tensor` and
                optionally `input_mask` (True = hidden; absent = fully visible) and `target_mask`). A target may be
                given partially: its positions with `target_mask == False` are generated (in-painting, or a text
                prompt whose sentinel span is to be completed).
            generation_config ([`FourMGenerationConfig`] or `list[FourMTargetSchedule]`, *optional*): the chain; a
                list of target schedules replaces the targets of the model's generation config.
            seed (`int`, *optional*): makes sampling reproducible; step s uses a generator seeded `seed + s`. When
                None, a seed is drawn from torch's global RNG (so `torch.manual_seed` also fixes the result).
            logits_processor (`LogitsProcessorList`, *optional*): extra processors applied after guidance and before
                top-k / top-p / temperature. They receive `cur_step` when their signature asks for it, and as
                `input_ids` the ids generated so far (autoregressive targets) or None (parallel schemes).
            progress_bar (`bool`, *optional*, defaults to `True`): show a `tqdm` bar over the decoding steps.
            kwargs: override fields of the generation config (e.g. `top_p=0.8`, `use_cache=False`).

        Returns:
            `dict[str, dict[str, torch.Tensor]]`: the inputs and every generated target as fully visible modalities
            (`tensor` (B, N) token ids, `input_mask` (True only on padding of merged sequences), `target_mask` all
            True), ready to be fed back to `generate` or to the forward.
        """
        # 1. Settings
        config = self._prepare_generation_config(generation_config, kwargs)
        text = _TextIds(config.pad_token_id, config.first_sentinel_token_id, config.num_sentinel_tokens)
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, ()))
        elif isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}.")
        extra = LogitsProcessorList(logits_processor or [])
        # 2. Inputs and the resolved chain
        modalities = self._prepare_generation_inputs(modalities, config, text)
        plans = self._plan_targets(config, modalities)

        # 3. The chain; `step` counts decoding steps over all targets (an autoregressive target is one step)
        step = 0
        with tqdm(total=sum(p.num_steps for p in plans), disable=not progress_bar, desc="4M generation") as bar:
            for plan in plans:
                bar.set_postfix_str(plan.info.name)
                warpers = self._warpers(config, plan)
                for cur_step in range(plan.num_steps):
                    generator = torch.Generator(self.device).manual_seed(seed + step)
                    if plan.schedule.is_autoregressive:  # 3c
                        self._generate_sequence(modalities, plan, config, text, extra, warpers, generator)
                    else:  # 3b
                        self._parallel_step(modalities, plan, cur_step, config, text, extra, warpers, generator)
                    step += 1
                    bar.update(1)
                # 3d happened in `config.guidance_plan()`: later plans already list this target in their groups
        return modalities

    # -- 1. settings -------------------------------------------------------------------------------------------------

    def _prepare_generation_config(
        self, generation_config: FourMGenerationConfig | Sequence[FourMTargetSchedule] | None, kwargs: dict
    ) -> FourMGenerationConfig:
        default = self.generation_config if isinstance(self.generation_config, FourMGenerationConfig) else None
        if generation_config is None:
            config = copy.deepcopy(default or FourMGenerationConfig())
        elif isinstance(generation_config, FourMGenerationConfig):
            config = copy.deepcopy(generation_config)
        elif isinstance(generation_config, (list, tuple)):
            config = copy.deepcopy(default or FourMGenerationConfig())
            config.targets = list(generation_config)
        else:
            raise TypeError(
                "generation_config must be a FourMGenerationConfig or a list of FourMTargetSchedule, got "
                f"{type(generation_config).__name__}."
            )
        for key, value in kwargs.items():
            if key.startswith("_") or not hasattr(config, key):
                raise ValueError(f"generate() got an unknown argument {key!r} (not a FourMGenerationConfig field).")
            setattr(config, key, value)
        config.validate()
        if not config.targets:
            raise ValueError("Nothing to generate: the generation config has no targets.")
        return config

    # -- 2. inputs ---------------------------------------------------------------------------------------------------

    def _prepare_generation_inputs(
        self, modalities: Modalities, config: FourMGenerationConfig, text: _TextIds
    ) -> Modalities:
        """Copy the inputs with every mask present (bool), token ids as int64, features in the model dtype, image
        tokens flattened, and a blank entry for each target that is not given."""
        if not isinstance(modalities, dict) or not modalities:
            raise ValueError("`modalities` must be a non-empty dict {modality name: {'tensor': ..., masks...}}.")
        targets = {t.modality for t in config.targets}
        for name in targets:
            if name not in self.config.decoder_modalities:
                raise ValueError(f"The model cannot generate {name}; it decodes {self.config.decoder_modalities}.")
        prepared, batch_sizes = {}, {}
        for name, entry in modalities.items():
            info = self.config.modality(name)
            if name not in self.config.encoder_modalities and name not in targets:
                raise ValueError(f"{name} is neither an input of the model nor a target of the generation config.")
            if not isinstance(entry, dict) or not isinstance(entry.get("tensor"), torch.Tensor):
                raise ValueError(f"modalities[{name!r}] must be a dict with a torch.Tensor 'tensor'.")
            tensor = entry["tensor"].to(self.device)
            if info.kind in (PIXELS, SEQUENCE_EMBEDDING):
                tensor = tensor.to(self.dtype)
            else:
                tensor = tensor.flatten(1).long() if info.kind == IMAGE_TOKENS else tensor.long()
            batch_sizes[name] = tensor.shape[0]
            shape = (tensor.shape[0], tensor.shape[1] if info.is_sequence else info.num_tokens)
            masks = {}
            for key, default in (("input_mask", False), ("target_mask", True)):
                mask = entry.get(key)
                if mask is None:
                    mask = torch.full(shape, default, dtype=torch.bool)
                if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != shape:
                    got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
                    raise ValueError(f"{name}: {key} must have shape (batch, tokens) = {shape}, got {got}.")
                masks[key] = mask.to(self.device, torch.bool)
            prepared[name] = {"tensor": tensor, **masks}
        if len(set(batch_sizes.values())) > 1:
            raise ValueError(f"All modalities must have the same batch size, got {batch_sizes}.")
        batch_size = next(iter(batch_sizes.values()))
        for target in config.targets:
            if target.modality not in prepared:
                info = self.config.modality(target.modality)
                num_tokens = target.num_tokens or (info.max_tokens if info.kind == SEQUENCE else info.num_tokens)
                prepared[target.modality] = blank_target(info, batch_size, num_tokens, text, self.device)
        return prepared

    def _plan_targets(self, config: FourMGenerationConfig, modalities: Modalities) -> list[_TargetPlan]:
        plans = []
        for target, (groups, weights) in zip(config.targets, config.guidance_plan(), strict=True):
            info = self.config.modality(target.modality)
            for name in (m for g in groups for m in g):
                if name not in modalities:
                    raise ValueError(f"Guidance condition {name!r} is not among the inputs {list(modalities)}.")
            to_decode = (~modalities[target.modality]["target_mask"]).sum(1)
            if int(to_decode.min()) != int(to_decode.max()) or int(to_decode[0]) == 0:
                raise ValueError(
                    f"{target.modality}: every sample needs the same, non-zero number of target positions "
                    f"(target_mask == False), got {to_decode.tolist()}."
                )
            plan = _TargetPlan(target, info, groups=groups, weights=weights)
            if target.is_autoregressive:
                plan.temperatures = [target.temperature]
            else:
                num = int(to_decode[0])
                if target.num_tokens is not None and target.num_tokens != num:
                    raise ValueError(
                        f"{target.modality}: num_tokens={target.num_tokens}, but {num} positions are targets."
                    )
                plan.token_counts = target.token_counts(num)
                plan.temperatures = target.temperatures(plan.token_counts)
            plans.append(plan)
        return plans

    @staticmethod
    def _warpers(config: FourMGenerationConfig, plan: _TargetPlan) -> LogitsProcessorList:
        """top-k and top-p on the untempered logits, then the step's temperature (greedy steps skip them)."""
        warpers = LogitsProcessorList()
        if config.top_k:
            top_k = int(config.top_k * plan.info.vocab_size) if isinstance(config.top_k, float) else config.top_k
            warpers.append(TopKLogitsWarper(max(top_k, 1)))
        if 0 < config.top_p < 1:
            warpers.append(TopPLogitsWarper(float(config.top_p)))
        # greedy steps never reach the warpers; the floor only keeps the processor's temperatures positive
        warpers.append(FourMTemperatureScheduleLogitsWarper([max(t, GREEDY_TEMPERATURE) for t in plan.temperatures]))
        return warpers

    # -- 3a. guidance passes -----------------------------------------------------------------------------------------

    def _guidance_passes(self, modalities: Modalities, plan: _TargetPlan, text: _TextIds) -> list[Modalities]:
        """The dicts the step decodes from: the inputs alone when unguided; otherwise one per guidance group (other
        groups' modalities hidden), then the unconditional one (every group's modality emptied)."""
        if plan.weights is None:
            return [modalities]
        grouped = [m for g in plan.groups for m in g]
        passes = []
        for group in plan.groups:
            passes.append({**modalities, **{m: _hide(modalities[m], text) for m in grouped if m not in group}})
        empty = {m: EMPTY_CONDITION[self.config.modality(m).kind](modalities[m], text) for m in grouped}
        return [*passes, {**modalities, **empty}]

    def _encode_passes(
        self, passes: list[Modalities], config: FourMGenerationConfig
    ) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        """Encode the passes, as one batch or one by one. Returns `(context, cross mask, passes)` per forward."""
        chunks = [passes] if config.batch_guidance else [[p] for p in passes]
        encoded = []
        for chunk in chunks:
            batch = chunk[0] if len(chunk) == 1 else {
                name: {key: torch.cat([p[name][key] for p in chunk]) for key in chunk[0][name]} for name in chunk[0]
            }  # (P B, ...) per tensor, pass-major
            context, cross_mask = self.decoder.context(self.encoder(batch))
            encoded.append((context, cross_mask, len(chunk)))
        return encoded

    @staticmethod
    def _combine_passes(
        logits: torch.Tensor,
        plan: _TargetPlan,
        extra: LogitsProcessorList,
        input_ids: torch.LongTensor | None,
        cur_step: int,
    ) -> torch.Tensor:
        """Guidance (on the raw logits of the stacked passes), then the extra processors. (P R, V) -> (R, V)."""
        if plan.weights is not None:
            logits = FourMGuidanceLogitsProcessor(plan.weights)(input_ids, logits)
        return extra(input_ids, logits, cur_step=cur_step) if extra else logits

    # -- 3b. MaskGIT / ROAR --------------------------------------------------------------------------------------------

    def _parallel_step(
        self,
        modalities: Modalities,
        plan: _TargetPlan,
        cur_step: int,
        config: FourMGenerationConfig,
        text: _TextIds,
        extra: LogitsProcessorList,
        warpers: LogitsProcessorList,
        generator: torch.Generator,
    ) -> None:
        """One MaskGIT / ROAR step: query, decode, sample, commit `plan.token_counts[cur_step]` tokens."""
        name, num_select = plan.info.name, plan.token_counts[cur_step]
        scheme = PARALLEL_SCHEMES[plan.schedule.scheme]
        target = modalities[name]
        positions = scheme.select_queries(target["target_mask"], num_select, generator)  # (B, Q)
        batch, num_queries = positions.shape
        embedding = self.decoder.embeddings[name]
        table = embedding.pos_emb + self.modality_embedding(name)  # (N, D)
        queries = self.decoder.mask_token + table[positions]  # (B, Q, D)

        logits = []
        passes = self._guidance_passes(modalities, plan, text)
        for context, cross_mask, num_passes in self._encode_passes(passes, config):
            hidden = self.decoder(queries.repeat(num_passes, 1, 1), context, None, cross_mask)
            logits.append(embedding.to_logits(hidden).float().flatten(0, 1))  # (P B Q, V)
        scores = self._combine_passes(torch.cat(logits), plan, extra, None, cur_step)  # (B Q, V)
        greedy = plan.temperatures[cur_step] < GREEDY_TEMPERATURE
        ids, confidence = sample_tokens(scores, warpers, None, cur_step, greedy, generator)
        ids, confidence = ids.view(batch, num_queries), confidence.view(batch, num_queries)

        accepted = scheme.accept(confidence, num_select)  # (B, K) indices into the queries
        committed = positions.gather(1, accepted)
        target["tensor"] = target["tensor"].scatter(1, committed, ids.gather(1, accepted))
        target["input_mask"] = target["input_mask"].scatter(1, committed, False)
        target["target_mask"] = target["target_mask"].scatter(1, committed, True)

    # -- 3c. autoregressive sequences ----------------------------------------------------------------------------------

    def _generate_sequence(
        self,
        modalities: Modalities,
        plan: _TargetPlan,
        config: FourMGenerationConfig,
        text: _TextIds,
        extra: LogitsProcessorList,
        warpers: LogitsProcessorList,
        generator: torch.Generator,
    ) -> None:
        info, name = plan.info, plan.info.name
        target = modalities[name]
        target_mask = target["target_mask"]
        span = torch.argsort(target_mask.to(torch.int8), dim=1, stable=True)[:, : int((~target_mask[0]).sum())]
        span_ids = target["tensor"].gather(1, span)  # (B, S): [S_1] ... stop token
        embedding = self.decoder.embeddings[name]
        # position + modality embedding of each span slot (positions count the span, clipped at max_length)
        positions = embedding.sequence_embedding(target_mask, self.modality_embedding(name), clip=info.max_length)
        budget = min(info.max_tokens, span.shape[1])
        slot_emb = positions.gather(1, span[:, :budget, None].expand(-1, -1, positions.shape[-1]))  # (B, T, D)
        stop = span_ids[0, -1]
        greedy = plan.temperatures[0] < GREEDY_TEMPERATURE

        generated = torch.full((span.shape[0], budget + 1), text.pad, dtype=torch.long, device=self.device)
        generated[:, 0] = span_ids[:, 0]
        done = generated[:, 0] == stop
        length = 1
        forwards = self._encode_passes(self._guidance_passes(modalities, plan, text), config)
        caches = [self.decoder.init_cache(context, budget) if config.use_cache else None for context, _, _ in forwards]
        for t in range(budget):
            if bool(done.all()):
                break
            if config.use_cache:
                step_input = embedding.token_emb(generated[:, t : t + 1]) + slot_emb[:, t : t + 1]  # (B, 1, D)
                self_mask = self.decoder.causal_mask(1, budget, t, step_input.dtype, self.device)
            else:
                step_input = embedding.token_emb(generated[:, : t + 1]) + slot_emb[:, : t + 1]  # (B, t + 1, D)
                self_mask = self.decoder.causal_mask(t + 1, t + 1, 0, step_input.dtype, self.device)
            logits = []
            for (context, cross_mask, num_passes), cache in zip(forwards, caches, strict=True):
                hidden = self.decoder(
                    step_input.repeat(num_passes, 1, 1), None if cache is not None else context, self_mask, cross_mask,
                    cache,
                )
                logits.append(embedding.to_logits(hidden[:, -1]).float())  # (P B, V)
            history = generated[:, : t + 1]
            scores = self._combine_passes(torch.cat(logits), plan, extra, history, t)
            token, _ = sample_tokens(scores, warpers, history, 0, greedy, generator)
            generated[:, t + 1] = token
            done |= token == stop
            length = t + 2

        merged, padding = merge_generated_span(target["tensor"], target["input_mask"], generated[:, :length], text)
        modalities[name] = {"tensor": merged, "input_mask": padding, "target_mask": torch.ones_like(padding)}

    # -- loading -------------------------------------------------------------------------------------------------------

    def adjust_generation_fn(
        self, generation_config: GenerationConfig | None, from_auto_class: bool, from_pipeline: str | None,
        pretrained_model_name_or_path: str | None, **kwargs: Any,
    ) -> None:
        """Called by `from_pretrained`: use the given generation config, or the checkpoint's
        `generation_config.json` when it has one."""
        if generation_config is not None:
            self.generation_config = FourMGenerationConfig.from_dict(generation_config.to_dict())
        elif pretrained_model_name_or_path is not None:
            try:
                self.generation_config = FourMGenerationConfig.from_pretrained(
                    pretrained_model_name_or_path, **hub_kwargs(kwargs)
                )
            except OSError:
                logger.info("No generation_config.json found; using the default FourMGenerationConfig.")


def generate_with_super_resolution(
    model: FourMGenerationMixin,
    sr_model: FourMGenerationMixin,
    modalities: Modalities,
    generation_config: FourMGenerationConfig | None = None,
    seed: int | None = None,
    progress_bar: bool = True,
) -> Modalities:
    """Generate at 224 with `model`, then super-resolve the image outputs to 448 with a 4M-SR model.

    The base chain defaults to the demo recipe for the given inputs; the SR chain is
    `FourMGenerationConfig.super_resolution` on the base output, run with `seed + 1` (as the demo). Returns the SR
    model's output dict (the base outputs it takes as inputs, plus the @448 modalities).
    """
    if generation_config is None:
        generation_config = FourMGenerationConfig.demo_recipe(model.config, list(modalities))
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 2, ()))
    base = model.generate(modalities, generation_config, seed=seed, progress_bar=progress_bar)
    known = set(sr_model.config.encoder_modalities)
    sr_inputs = {name: entry for name, entry in base.items() if name in known}
    sr_config = FourMGenerationConfig.super_resolution(sr_model.config, sr_inputs)
    return sr_model.generate(sr_inputs, sr_config, seed=seed + 1, progress_bar=progress_bar)


__all__ = [
    "DEMO_ORDER",
    "DEMO_RGB_TO_X",
    "DEMO_SR_ORDER",
    "DEMO_SUPER_RESOLUTION",
    "DEMO_X_TO_RGB",
    "EMPTY_CONDITION",
    "PARALLEL_SCHEMES",
    "TEMPERATURE_SCHEDULES",
    "TOKEN_SCHEDULES",
    "FourMGenerationConfig",
    "FourMGenerationMixin",
    "FourMGuidanceLogitsProcessor",
    "FourMTargetSchedule",
    "FourMTemperatureScheduleLogitsWarper",
    "ParallelDecodingScheme",
    "blank_target",
    "cosine_token_schedule",
    "generate_with_super_resolution",
    "linear_temperature_schedule",
    "linear_token_schedule",
    "merge_generated_span",
    "onex_temperature_schedule",
    "sample_tokens",
]
