"""4M's multimodal masking as a data collator, and the Dirichlet mixtures that drive it.

For every sample the collator (1) picks a mixture component, (2) draws how many tokens go to the encoder and to
the decoder, (3) splits both budgets over the modalities with that component's Dirichlet distributions, and (4)
masks each modality within its budgets: image-like modalities by one random permutation of their positions,
sequences by T5-style span masking with sentinels. The result is the forward batch of
[`FourMForMaskedModeling`], padded to fixed sizes.

Mixtures are the official "alphas" configs (YAML or JSON, one entry per modality with `input_alphas`,
`target_alphas` and optional `keep` schemes, one value per component; optional `sampling_weights`), plus the
token budgets `input_tokens` / `target_tokens`. The released 4M-7 and 4M-21 mixtures ship as presets
(`available_mixtures()`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from transformers.utils import logging

from ..checks import check_bool, check_choice, check_int, check_names, check_number, close_match, error_context
from ..models.fourm.configuration_fourm import FourMConfig
from ..models.modeling_utils import check_finite, check_range
from ..modalities import PIXELS, SEQUENCE, SEQUENCE_EMBEDDING, ModalitySpec, get_modality
from .sequences import SpecialTokens, mask_spans

logger = logging.get_logger(__name__)

MIXTURES_DIR = Path(__file__).resolve().parent / "mixtures"
# Dirichlet concentrations are clamped here: an alpha of 0 means "(almost) never gets a token".
MIN_ALPHA = 1e-9
# While a span-masked input is over budget, the keep probability is multiplied by this and redrawn.
KEEP_PROB_DECAY = 0.9
_REDRAWS = 16
# ImageNet statistics: the official normalisation of raw RGB (`rgb@224`) encoder inputs.
_PIXEL_MEAN, _PIXEL_STD = np.array(IMAGENET_DEFAULT_MEAN, np.float32), np.array(IMAGENET_DEFAULT_STD, np.float32)

# Keep-probability schemes of span masking: one draw per sample and sequence modality.
KEEP_SCHEMES: dict[str, Callable[[np.random.Generator], float]] = {
    "random": lambda rng: float(rng.random()),
    "all": lambda rng: 1.0,
    "binary": lambda rng: float(rng.integers(2)),
}


# ---------------------------------------------------------------------------------------------------------------------
# Mixture configs


# Fields of a mixture file (or `from_dict` / `load_mixture` keyword arguments) besides the modality entries.
MIXTURE_OPTIONS = ("input_tokens", "target_tokens", "name", "description")
ALPHA_KEYS = ("input_alphas", "target_alphas", "keep")


def _token_range(value: int | Sequence[int], what: str) -> tuple[int, int]:
    """A token budget: an int n >= 0 (exactly n) or an inclusive range [min, max]."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{what} must be an int or a range [min, max], got {len(value)} values {list(value)}.")
        low, high = (check_int(v, f"{what}[{i}]", minimum=0) for i, v in enumerate(value))
        if low > high:
            raise ValueError(f"{what} must be a range [min, max] with min <= max, got {list(value)}.")
        return low, high
    value = check_int(value, f"{what} (an int or a range [min, max])", minimum=0)
    return value, value


def _values(value: Any, what: str) -> tuple:
    """One value per mixture component: a list or tuple (a scalar or string is refused)."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{what} must be a list with one value per mixture component, got {type(value).__name__} {value!r}."
        )
    return tuple(value)


def _check_overrides(overrides: Mapping[str, Any]) -> None:
    unknown = [key for key in overrides if key not in MIXTURE_OPTIONS]
    if unknown:
        raise TypeError(
            f"Unknown mixture option(s) {unknown}; the options are {list(MIXTURE_OPTIONS)}."
            f"{close_match(unknown[0], MIXTURE_OPTIONS)}"
        )


@dataclass(frozen=True)
class ModalityAlphas:
    """Dirichlet concentrations of one modality, one value per mixture component.

    Args:
        input_alphas (`tuple[float, ...]`): share of the encoder budget (0 = never an input).
        target_alphas (`tuple[float, ...]`): share of the decoder budget (0 = never a target).
        keep (`tuple[str, ...]`, *optional*): sequence modalities: keep-probability scheme per component
            (`"random"`: uniform, `"all"`: the whole sequence, `"binary"`: all or nothing); defaults to `"random"`.
    """

    input_alphas: tuple[float, ...]
    target_alphas: tuple[float, ...]
    keep: tuple[str, ...] | None = None

    def __post_init__(self):
        for what in ("input_alphas", "target_alphas"):
            values = _values(getattr(self, what), what)
            alphas = tuple(float(check_number(v, f"{what}[{i}]", minimum=0)) for i, v in enumerate(values))
            object.__setattr__(self, what, alphas)
        if self.keep is not None:
            keep = tuple(check_choice(k, f"keep[{i}]", KEEP_SCHEMES) for i, k in enumerate(_values(self.keep, "keep")))
            object.__setattr__(self, "keep", keep)

    def keep_scheme(self, component: int) -> str:
        return "random" if self.keep is None else self.keep[component]


@dataclass(frozen=True)
class MaskingMixture:
    """A mixture of Dirichlet masking strategies and the token budgets it shares out.

    Args:
        modalities (`dict[str, ModalityAlphas]`): alphas per modality, in the order of the output batch.
        sampling_weights (`tuple[float, ...]`, *optional*): relative frequency of each component (uniform if None).
        input_tokens / target_tokens (`tuple[int, int]`): inclusive range of the encoder / decoder budget per sample.
        name (`str`), description (`str`): for humans.
    """

    modalities: dict[str, ModalityAlphas]
    sampling_weights: tuple[float, ...] | None = None
    input_tokens: tuple[int, int] = (128, 128)
    target_tokens: tuple[int, int] = (128, 128)
    name: str = "custom"
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.modalities, Mapping) or not self.modalities:
            raise ValueError(f"Mixture {self.name!r} lists no modality.")
        counts = {}
        for modality, alphas in self.modalities.items():
            if not isinstance(alphas, ModalityAlphas):
                raise TypeError(
                    f"Mixture {self.name!r}, {modality}: expected ModalityAlphas, got {type(alphas).__name__}."
                )
            for what in ALPHA_KEYS:
                values = getattr(alphas, what)
                if values is not None:
                    counts[f"{modality}.{what}"] = len(values)
        if self.sampling_weights is not None:
            weights = _values(self.sampling_weights, f"Mixture {self.name!r}: sampling_weights")
            weights = tuple(
                float(check_number(w, f"Mixture {self.name!r}: sampling_weights[{i}]", minimum=0))
                for i, w in enumerate(weights)
            )
            if not sum(weights) > 0:
                raise ValueError(f"Mixture {self.name!r}: sampling_weights must be >= 0 with a positive sum.")
            object.__setattr__(self, "sampling_weights", weights)
            counts["sampling_weights"] = len(weights)
        if len(set(counts.values())) != 1:
            raise ValueError(f"Mixture {self.name!r}: every entry needs one value per component, got lengths {counts}.")
        for what in ("input_alphas", "target_alphas"):
            for component in range(self.num_components):
                if not sum(getattr(a, what)[component] for a in self.modalities.values()) > 0:
                    raise ValueError(f"Mixture {self.name!r}: component {component} has no positive {what}.")
        for what in ("input_tokens", "target_tokens"):
            object.__setattr__(self, what, _token_range(getattr(self, what), f"Mixture {self.name!r}: {what}"))
        if self.input_tokens[1] == 0:
            raise ValueError(f"Mixture {self.name!r}: input_tokens must allow at least one encoder token.")
        if self.target_tokens[1] == 0:
            raise ValueError(f"Mixture {self.name!r}: target_tokens must allow at least one decoder token (a target).")

    @property
    def num_components(self) -> int:
        return len(next(iter(self.modalities.values())).input_alphas)

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], **overrides: Any) -> "MaskingMixture":
        """Build from a dict in the official alphas-config layout (modality entries at the top level, or under
        `alphas_mixture` next to `sampling_weights`), optionally with `input_tokens`, `target_tokens`, `name`,
        `description`. Keyword arguments override those fields."""
        if not isinstance(config, Mapping):
            raise TypeError(f"A mixture config is a dict of modality entries, got {type(config).__name__}.")
        _check_overrides(overrides)
        config = dict(config)
        options = {k: config.pop(k) for k in MIXTURE_OPTIONS if k in config}
        weights = config.pop("sampling_weights", None)
        config.pop("source", None)
        entries = config.pop("alphas_mixture", None)
        if entries is None:
            entries = config
        elif config:
            raise ValueError(f"Unexpected top-level keys next to 'alphas_mixture': {sorted(config)}.")
        name = overrides.get("name", options.get("name", "custom"))
        if not isinstance(entries, Mapping):
            raise TypeError(f"Mixture {name!r}: alphas_mixture must be a dict of modality entries.")
        modalities = {}
        for modality, entry in entries.items():
            where = f"Mixture {name!r}, entry {modality!r}"
            if not isinstance(entry, Mapping):
                raise ValueError(f"{where} must be a mapping with input_alphas and target_alphas, got {entry!r}.")
            unknown = [key for key in entry if key not in ALPHA_KEYS]
            if unknown:
                raise ValueError(f"{where} has unknown keys {unknown}.{close_match(unknown[0], ALPHA_KEYS)}")
            missing = [key for key in ALPHA_KEYS[:2] if key not in entry]
            if missing:
                raise ValueError(f"{where} must be a mapping with input_alphas and target_alphas; it lacks {missing}.")
            with error_context(where):
                modalities[modality] = ModalityAlphas(**entry)
        options.update(overrides)
        return cls(modalities=modalities, sampling_weights=weights, **options)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "MaskingMixture":
        """Load a `.json`, `.yaml` or `.yml` mixture file (YAML needs PyYAML, part of the `train` extra)."""
        path = Path(path)
        if path.suffix not in (".json", ".yaml", ".yml"):
            raise ValueError(f"Mixture files must end in .json, .yaml or .yml, got {path.name!r}.")
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as error:
                raise ImportError("Reading YAML mixtures needs PyYAML: pip install 'fourm_hf[train]'.") from error
            try:
                config = yaml.safe_load(text)
            except yaml.YAMLError as error:
                raise ValueError(f"{path}: not valid YAML: {error}") from error
        else:
            try:
                config = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: not valid JSON: {error}") from error
        if not isinstance(config, Mapping):
            raise ValueError(f"{path}: a mixture file holds a mapping, got {type(config).__name__}.")
        return cls.from_dict({"name": path.stem, **config}, **overrides)

    def subset(self, modalities: Sequence[str]) -> "MaskingMixture":
        """The same mixture over only `modalities` (e.g. those a dataset has); the others' alphas are dropped.

        >>> load_mixture("4m7_all2all_rgb2all").subset(["rgb@224", "tok_rgb@224", "tok_depth@224", "caption"])
        """
        modalities = check_names(modalities, "modalities")
        unknown = [m for m in modalities if m not in self.modalities]
        if unknown:
            raise ValueError(
                f"Mixture {self.name!r} has no {unknown}; it covers {list(self.modalities)}."
                f"{close_match(unknown[0], self.modalities)}"
            )
        kept = {m: a for m, a in self.modalities.items() if m in modalities}
        return dataclasses.replace(self, modalities=kept, name=f"{self.name}-subset")

    def to_dict(self) -> dict[str, Any]:
        entries = {}
        for modality, alphas in self.modalities.items():
            entry = {"input_alphas": list(alphas.input_alphas), "target_alphas": list(alphas.target_alphas)}
            if alphas.keep is not None:
                entry["keep"] = list(alphas.keep)
            entries[modality] = entry
        return {
            "name": self.name,
            "description": self.description,
            "input_tokens": list(self.input_tokens),
            "target_tokens": list(self.target_tokens),
            "sampling_weights": list(self.sampling_weights) if self.sampling_weights is not None else None,
            "alphas_mixture": entries,
        }


def available_mixtures() -> list[str]:
    """Names of the shipped mixture presets."""
    return sorted(p.stem for p in MIXTURES_DIR.glob("*.json"))


def load_mixture(name_or_path: str | Path | MaskingMixture, **overrides: Any) -> MaskingMixture:
    """A preset by name (see `available_mixtures()`), or a mixture file (`.json` / `.yaml`).

    >>> load_mixture("4m7_all2all_rgb2all", input_tokens=64).input_tokens
    (64, 64)
    """
    if isinstance(name_or_path, MaskingMixture):
        _check_overrides(overrides)
        return dataclasses.replace(name_or_path, **overrides)
    if not isinstance(name_or_path, (str, os.PathLike)):
        hint = " (build one from a dict with MaskingMixture.from_dict)" if isinstance(name_or_path, Mapping) else ""
        raise TypeError(
            f"mixture must be a MaskingMixture, a preset name or a file path, got {type(name_or_path).__name__}{hint}."
        )
    preset = MIXTURES_DIR / f"{name_or_path}.json"
    if preset.is_file():
        return MaskingMixture.from_file(preset, **overrides)
    path = Path(name_or_path)
    if path.is_file():
        return MaskingMixture.from_file(path, **overrides)
    if path.suffix in (".json", ".yaml", ".yml") or len(path.parts) > 1:
        raise FileNotFoundError(f"No mixture preset or file {str(name_or_path)!r}: the file does not exist.")
    presets = available_mixtures()
    raise ValueError(
        f"No mixture preset or file {str(name_or_path)!r}; presets: {presets}.{close_match(name_or_path, presets)}"
    )


# ---------------------------------------------------------------------------------------------------------------------
# Budgets


@dataclass
class MaskingBudget:
    """What was drawn for one sample: the component, the total budgets and their split over the modalities."""

    component: int
    num_input_tokens: int
    num_target_tokens: int
    input_budget: dict[str, int]
    target_budget: dict[str, int]


def split_budget(rng: np.random.Generator, alphas: np.ndarray, total: int, cap: np.ndarray) -> np.ndarray:
    """Share `total` tokens over modalities as 4M does: floor(Dirichlet draw x total), then each leftover token to
    the argmax of a fresh Dirichlet draw (so modalities with alpha ~ 0 get none), then clip to `cap`."""
    budget = np.floor(rng.dirichlet(alphas) * total).astype(np.int64)
    leftover = total - int(budget.sum())
    if leftover > 0:
        winners = rng.dirichlet(alphas, size=leftover).argmax(axis=1)
        budget += np.bincount(winners, minlength=len(alphas))
    return np.minimum(budget, cap)


# ---------------------------------------------------------------------------------------------------------------------
# Span masking


def count_dropped_runs(keep: np.ndarray) -> np.ndarray | int:
    """Maximal runs of False along the last axis of `keep`: the sentinels span masking inserts into the input."""
    return np.count_nonzero(~keep[..., :1], axis=-1) + np.count_nonzero(~keep[..., 1:] & keep[..., :-1], axis=-1)


def draw_span_keep(
    rng: np.random.Generator, unit_lengths: np.ndarray, input_budget: int, scheme: str
) -> np.ndarray:
    """Keep flags per unit (token or chunk) whose span-masked input fits `input_budget`.

    With a zero budget nothing is kept. Otherwise the keep probability comes from `scheme`; every unit is kept with
    that probability, and while the input (kept tokens + one sentinel per dropped run) is over budget the
    probability is multiplied by 0.9 and the flags redrawn.
    """
    if input_budget == 0:
        return np.zeros(len(unit_lengths), dtype=bool)
    keep_prob = KEEP_SCHEMES[scheme](rng)
    # Redraws are independent, so they are drawn `_REDRAWS` at a time: row r uses keep_prob * 0.9^r.
    while True:
        probs = keep_prob * KEEP_PROB_DECAY ** np.arange(_REDRAWS)
        keep = rng.random((_REDRAWS, len(unit_lengths))) <= probs[:, None]  # (redraws, units)
        fits = keep @ unit_lengths + count_dropped_runs(keep) <= input_budget
        if fits.any():
            return keep[int(fits.argmax())]
        keep_prob = probs[-1] * KEEP_PROB_DECAY


def truncate_target(rng: np.random.Generator, target: list[int], budget: int, sentinels: set[int]) -> list[int]:
    """Cut a span-masked target down to `budget` tokens, starting at a sentinel.

    A random sentinel other than the final one is chosen; if `budget` tokens fit from it, exactly those are kept
    (possibly ending mid-span); otherwise the target is kept from the earliest sentinel whose tail fits.
    """
    if len(target) <= budget:
        return target
    starts = [i for i, token in enumerate(target) if token in sentinels]
    chosen = starts[int(rng.integers(max(1, len(starts) - 1)))]
    if len(target) - chosen >= budget:
        return target[chosen : chosen + budget]
    return target[next(i for i in starts if len(target) - i <= budget) :]


# ---------------------------------------------------------------------------------------------------------------------
# The collator


class FourMMaskingCollator:
    r"""Turns pre-tokenised samples into 4M training batches with the official multimodal masking.

    Each sample is a dict with one entry per mixture modality:

    - image tokens (`image_tokens` kind): ids of shape `(N,)` or `(h, w)`;
    - pixels (`pixels` kind): float `(C, H, W)` taken as is, or 0-255 integers `(H, W, C)` normalised with the
      ImageNet mean and std (the official `rgb@224` input);
    - sequences: token ids ending with `[EOS]`, shape `(L,)`, or `{"chunks": [[ids], ...]}` for chunk-wise
      masking (4M-21 metadata); longer ones are cut at the modality's `max_tokens`;
    - sequence embeddings: float `(L, E)` (input only).

    With a `crop_settings` entry `(n_crops, 5)`, image entries carry a leading crop axis and sequences may be a
    list of one id list per crop; one crop is drawn per sample (crop 0, the centre crop, when `random_crop=False`)
    and used for every modality, so they stay aligned.

    A sample with a `masking_seed` entry (see [`SeededMaskingDataset`]) is masked with its own generator, so its
    masks do not depend on worker, batch or resume state; other samples draw from the collator's generator.

    Output: `{"modalities": {name: {"tensor", "input_mask", "target_mask", "decoder_attention_mask"}},
    "num_encoder_tokens": max input budget, "num_decoder_tokens": max target budget}`, masks in the official
    polarity (True = hidden / not a target). Sequences are `(B, 2 (max_tokens + 1))` tensors of `pad_id` holding
    the input at the start and the target from offset `input budget`; sequence embeddings `(B, max_tokens, E)`.

    Args:
        mixture (`MaskingMixture` or `str`): a mixture or the name / path of one (see [`load_mixture`]).
        config (`FourMConfig`, *optional*): modality specs of a model (for modalities not in the registry).
        special_tokens (`SpecialTokens`, *optional*): `[PAD]` and the sentinels `[S_k]` of the text vocabulary;
            defaults to the released vocabulary's. See [`FourMMaskingCollator.from_tokenizer`].
        seed (`int`, *optional*): seed of the collator's own generator.
        random_crop (`bool`, *optional*, defaults to `True`): draw a crop per sample, else always crop 0.

    ```python
    >>> collator = FourMMaskingCollator("4m7_all2all_rgb2all", seed=0)
    >>> batch = collator(samples)  # samples: list of dicts of token arrays
    >>> model(**batch).loss
    ```
    """

    def __init__(
        self,
        mixture: MaskingMixture | str | Path,
        config: FourMConfig | None = None,
        *,
        special_tokens: SpecialTokens | None = None,
        seed: int | None = None,
        random_crop: bool = True,
    ):
        self.mixture = load_mixture(mixture)
        if config is not None and not isinstance(config, FourMConfig):
            raise TypeError(f"config must be a FourMConfig (the model's config) or None, got {type(config).__name__}.")
        with error_context(f"Mixture {self.mixture.name!r}"):
            self.infos: dict[str, ModalitySpec] = {
                name: config.modality(name) if config is not None else get_modality(name)
                for name in self.mixture.modalities
            }
        self.special_tokens = SpecialTokens() if special_tokens is None else special_tokens
        if not isinstance(self.special_tokens, SpecialTokens):
            raise TypeError(f"special_tokens must be a SpecialTokens, got {type(self.special_tokens).__name__}.")
        self.pad_id, self.sentinel_ids = self.special_tokens.pad_id, self.special_tokens.sentinel_ids
        if len(self.sentinel_ids) < 2:
            raise ValueError(f"special_tokens must list at least [S_0] and [S_1], got {self.sentinel_ids}.")
        self.random_crop = check_bool(random_crop, "random_crop")
        self.rng = np.random.default_rng(None if seed is None else check_int(seed, "seed", minimum=0))
        self._truncated: set[str] = set()  # modalities whose truncation was reported
        names = list(self.mixture.modalities)
        alphas = self.mixture.modalities.values()
        self.input_alphas = np.maximum(np.array([a.input_alphas for a in alphas]).T, MIN_ALPHA)  # (components, M)
        self.target_alphas = np.maximum(np.array([a.target_alphas for a in alphas]).T, MIN_ALPHA)
        self.max_tokens = np.array([self._max_tokens(self.infos[n]) for n in names])
        self.is_image = np.array([self.infos[n].is_image for n in names])
        weights = self.mixture.sampling_weights or (1.0,) * self.mixture.num_components
        self.component_probs = np.array(weights) / sum(weights)
        for name, info in self.infos.items():
            if not info.has_decoder and any(self.mixture.modalities[name].target_alphas):
                logger.warning_once(
                    f"Mixture {self.mixture.name!r} gives target budget to {name!r}, which cannot be a target "
                    "(as in the official 4M-21 configs); those tokens are lost."
                )

    @classmethod
    def from_tokenizer(cls, mixture: MaskingMixture | str | Path, tokenizer: Any, **kwargs: Any) -> "FourMMaskingCollator":
        """A collator with the special tokens of a text tokenizer (`SpecialTokens.from_tokenizer`)."""
        return cls(mixture, special_tokens=SpecialTokens.from_tokenizer(tokenizer), **kwargs)

    @staticmethod
    def _max_tokens(info: ModalitySpec) -> int:
        return info.num_tokens if info.is_image else info.max_tokens

    def sequence_length(self, name: str) -> int:
        """Length of the padded tensor of a sequence modality: room for input and target, 2 (max_tokens + 1)."""
        info = self.infos[name]
        return info.max_tokens if info.kind == SEQUENCE_EMBEDDING else 2 * (info.max_tokens + 1)

    # -- budgets --------------------------------------------------------------------------------------------------

    def sample_budget(self, rng: np.random.Generator) -> MaskingBudget:
        """Draw the component, the total budgets and the per-modality budgets of one sample."""
        component = int(rng.choice(len(self.component_probs), p=self.component_probs))
        num_input = int(rng.integers(self.mixture.input_tokens[0], self.mixture.input_tokens[1] + 1))
        num_target = int(rng.integers(self.mixture.target_tokens[0], self.mixture.target_tokens[1] + 1))
        inputs = split_budget(rng, self.input_alphas[component], num_input, self.max_tokens)
        # an image position is either an input or a target, so images can only target what is not an input
        target_cap = np.where(self.is_image, self.max_tokens - inputs, self.max_tokens)
        targets = split_budget(rng, self.target_alphas[component], num_target, target_cap)
        names = list(self.mixture.modalities)
        return MaskingBudget(
            component, num_input, num_target,
            dict(zip(names, inputs.tolist())), dict(zip(names, targets.tolist())),
        )

    # -- per modality ---------------------------------------------------------------------------------------------

    def _image(self, rng: np.random.Generator, info: ModalitySpec, value: Any, n_in: int, n_tgt: int) -> dict:
        array = np.asarray(value)
        if info.kind == PIXELS:
            tensor = self._pixels(info, array)
        else:
            if array.size != info.num_tokens:
                raise ValueError(
                    f"{info.name}: expected {info.num_tokens} image tokens ({info.grid_size}x{info.grid_size}), "
                    f"got an array of shape {array.shape}."
                )
            tensor = _token_ids(info, array).reshape(-1)
        order = rng.permutation(info.num_tokens)
        input_mask = np.ones(info.num_tokens, dtype=bool)
        input_mask[order[:n_in]] = False
        target_mask = np.ones(info.num_tokens, dtype=bool)
        targets = order[n_in : n_in + n_tgt]
        target_mask[targets] = False
        attention = np.zeros(info.num_tokens, dtype=np.int64)
        if n_tgt:
            attention[targets.min()] = n_tgt  # all targets of this image attend to each other
        return {"tensor": tensor, "input_mask": input_mask, "target_mask": target_mask, "decoder_attention_mask": attention}

    @staticmethod
    def _pixels(info: ModalitySpec, array: np.ndarray) -> np.ndarray:
        size, channels = info.image_size, info.num_channels
        if np.issubdtype(array.dtype, np.integer) and array.shape == (size, size, channels):  # 0-255 values
            return ((array.astype(np.float32) / 255.0 - _PIXEL_MEAN) / _PIXEL_STD).transpose(2, 0, 1)
        if np.issubdtype(array.dtype, np.floating) and array.shape == (channels, size, size):
            check_finite(torch.from_numpy(array), "pixels", info.name)
            return array.astype(np.float32)
        raise ValueError(
            f"{info.name}: expected float pixels of shape {(channels, size, size)} or 0-255 integers of shape "
            f"{(size, size, channels)}, got {array.dtype} {array.shape}."
        )

    def _report_truncation(self, info: ModalitySpec, length: int, dropped: int) -> None:
        """Warn, once per modality, that a sequence longer than `max_tokens` lost its tail."""
        if dropped and info.name not in self._truncated:
            self._truncated.add(info.name)
            logger.warning(
                f"{info.name}: a sample has {length} tokens, more than max_tokens={info.max_tokens}; its last "
                f"{dropped} are dropped (as in the official masking). Later truncations of {info.name} by this "
                "collator are not reported; shorten the sequences when pre-tokenising to keep them."
            )

    def _units(self, info: ModalitySpec, value: Any) -> list[tuple[int, ...]]:
        """The sequence as masking units: one per token, or one per (non-empty) chunk, cut at `max_tokens`."""
        if isinstance(value, Mapping):
            if set(value) != {"chunks"}:
                raise ValueError(f"{info.name}: a chunked sequence is {{'chunks': [[ids], ...]}}, got keys {sorted(value)}.")
            chunks = value["chunks"]
            if isinstance(chunks, (str, bytes)) or not isinstance(chunks, (Sequence, np.ndarray)):
                raise TypeError(f"{info.name}: 'chunks' must be a list of token id lists, got {type(chunks).__name__}.")
            chunks = [tuple(_token_ids(info, chunk).reshape(-1).tolist()) for chunk in chunks]
            units, total = [], 0
            for chunk in chunks:
                total += len(chunk)
                if total > info.max_tokens:
                    break
                if chunk:
                    units.append(chunk)
            length = sum(map(len, chunks))
            self._report_truncation(info, length, length - sum(map(len, units)))
            return units
        ids = np.asarray(value)
        if ids.ndim != 1:
            raise ValueError(f"{info.name}: expected a 1-D sequence of token ids, got {ids.dtype} {ids.shape}.")
        ids = _token_ids(info, ids)
        self._report_truncation(info, len(ids), max(len(ids) - info.max_tokens, 0))
        return [(t,) for t in ids[: info.max_tokens].tolist()]

    def _sequence(self, rng, info, value, n_in, n_tgt, scheme) -> dict:
        units = self._units(info, value)
        keep = draw_span_keep(rng, np.fromiter(map(len, units), dtype=np.int64, count=len(units)), n_in, scheme)
        runs = int(count_dropped_runs(keep))
        if runs + 1 >= len(self.sentinel_ids):
            raise ValueError(f"{info.name}: span masking needs {runs + 2} sentinels, only {len(self.sentinel_ids)} given.")
        sentinel = self.sentinel_ids.__getitem__
        inputs, targets = mask_spans(units, keep.tolist(), lambda k: (sentinel(k),))
        # with no input budget the sequence is absent from the input: not even the sentinel is shown
        inputs = [token for unit in inputs for token in unit] if n_in else []
        flat = [token for unit in targets for token in unit]
        targets = truncate_target(rng, flat, n_tgt, self.special_tokens.sentinel_set)
        length = self.sequence_length(info.name)
        tensor = np.full(length, self.pad_id, dtype=np.int64)
        input_mask = np.ones(length, dtype=bool)
        target_mask = np.ones(length, dtype=bool)
        tensor[: len(inputs)] = inputs
        input_mask[: len(inputs)] = False
        # the target starts at the input budget (>= the input length), so the two never overlap
        tensor[n_in : n_in + len(targets)] = targets
        target_mask[n_in : n_in + len(targets)] = False
        return {
            "tensor": tensor, "input_mask": input_mask, "target_mask": target_mask,
            "decoder_attention_mask": (~target_mask).astype(np.int64),
        }

    def _sequence_embedding(self, rng, info, value, n_in, scheme) -> dict:
        features = np.asarray(value)
        if features.dtype.kind not in "fiu":
            raise TypeError(f"{info.name}: expected numeric features (L, {info.embedding_dim}), got {features.dtype}.")
        features = features.astype(np.float32)
        if features.ndim != 2 or features.shape[1] != info.embedding_dim:
            raise ValueError(f"{info.name}: expected features of shape (L, {info.embedding_dim}), got {features.shape}.")
        check_finite(torch.from_numpy(features), "features", info.name)
        features = features[: info.max_tokens]
        keep = draw_span_keep(rng, np.ones(len(features), dtype=np.int64), n_in, scheme)
        # positions stand in for tokens; sentinels (negative markers) become zero vectors, as in the official code
        inputs, _ = mask_spans(list(range(len(features))), keep.tolist(), lambda k: -k) if n_in else ([], [])
        tensor = np.zeros((info.max_tokens, info.embedding_dim), dtype=np.float32)
        positions = np.array(inputs, dtype=np.int64)
        visible = positions >= 0
        tensor[np.flatnonzero(visible)] = features[positions[visible]]
        input_mask = np.ones(info.max_tokens, dtype=bool)
        input_mask[: len(inputs)] = False
        return {
            "tensor": tensor, "input_mask": input_mask, "target_mask": np.ones(info.max_tokens, dtype=bool),
            "decoder_attention_mask": np.zeros(info.max_tokens, dtype=np.int64),
        }

    # -- samples and batches --------------------------------------------------------------------------------------

    def _select_crop(self, rng: np.random.Generator, sample: Mapping[str, Any]) -> dict[str, Any]:
        if "crop_settings" not in sample:
            return dict(sample)
        num_crops = len(sample["crop_settings"])
        crop = int(rng.integers(num_crops)) if self.random_crop else 0
        selected = dict(sample)
        for name, info in self.infos.items():
            value = sample.get(name)
            if value is None:
                continue
            if info.is_image:
                array = np.asarray(value)
                per_crop = array.ndim == 4 if info.kind == PIXELS else array.size != info.num_tokens
                if per_crop:
                    if len(array) != num_crops:
                        raise ValueError(f"{name}: {len(array)} crops but crop_settings has {num_crops}.")
                    selected[name] = array[crop]
            elif info.kind == SEQUENCE and _is_per_crop(value):
                if len(value) != num_crops:
                    raise ValueError(f"{name}: {len(value)} crops but crop_settings has {num_crops}.")
                selected[name] = value[crop]
        return selected

    def mask_sample(
        self, sample: Mapping[str, Any], rng: np.random.Generator | None = None
    ) -> tuple[dict[str, dict[str, np.ndarray]], MaskingBudget]:
        """Mask one sample; returns its per-modality entries (numpy, no batch axis) and the budgets drawn."""
        if not isinstance(sample, Mapping):
            raise TypeError(f"a sample must be a dict {{modality name: data}}, got {type(sample).__name__}.")
        if rng is None:
            rng = np.random.default_rng(sample["masking_seed"]) if "masking_seed" in sample else self.rng
        elif not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}."
            )
        missing = [name for name in self.infos if name not in sample]
        if missing:
            raise ValueError(
                f"missing {missing}, which the mixture {self.mixture.name!r} needs ({list(self.infos)}); "
                "`mixture.subset(...)` drops modalities a dataset lacks."
            )
        # tensors (e.g. from a torch dataset) are read as arrays
        sample = {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v for k, v in sample.items()}
        sample = self._select_crop(rng, sample)
        budget = self.sample_budget(rng)
        masked = {}
        for name, info in self.infos.items():
            n_in, n_tgt = budget.input_budget[name], budget.target_budget[name]
            scheme = self.mixture.modalities[name].keep_scheme(budget.component)
            if info.is_image:
                masked[name] = self._image(rng, info, sample[name], n_in, n_tgt)
            elif info.kind == SEQUENCE:
                if _is_text(sample[name]):
                    raise TypeError(
                        f"{name} is raw text ({sample[name]!r:.60}); the collator takes pre-tokenised ids ending with "
                        "[EOS]: run fourm_hf.data.pretokenization.pretokenize over the dataset, or use "
                        "tokenizer(text).input_ids + [tokenizer.eos_token_id] with the FourMTokenizer."
                    )
                if _is_per_crop(sample[name]):
                    raise ValueError(f"{name} holds one sequence per crop but the sample has no crop_settings.")
                masked[name] = self._sequence(rng, info, sample[name], n_in, n_tgt, scheme)
            else:
                masked[name] = self._sequence_embedding(rng, info, sample[name], n_in, scheme)
        return masked, budget

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if isinstance(samples, Mapping):
            raise TypeError(
                "expected a list of samples, got a dict (one sample? wrap it in a list: collator([sample]))."
            )
        if isinstance(samples, (str, bytes)) or not isinstance(samples, Sequence):
            raise TypeError(f"expected a list of samples (dicts), got {type(samples).__name__}.")
        if not samples:
            raise ValueError("Cannot collate an empty list of samples.")
        masked = []
        for index, sample in enumerate(samples):
            with error_context(f"sample {index}"):
                masked.append(self.mask_sample(sample)[0])
        modalities = {
            name: {key: torch.from_numpy(np.stack([m[name][key] for m in masked])) for key in masked[0][name]}
            for name in self.infos
        }
        return {
            "modalities": modalities,
            "num_encoder_tokens": self.mixture.input_tokens[1],
            "num_decoder_tokens": self.mixture.target_tokens[1],
        }


def _token_ids(info: ModalitySpec, value: Any) -> np.ndarray:
    """Token ids of a modality as int64: integers within its vocabulary."""
    ids = np.asarray(value)
    if ids.size and ids.dtype.kind not in "iu":
        whole = ids.dtype.kind == "f" and bool(np.all(np.mod(ids, 1) == 0))
        hint = " (whole numbers: cast with .astype(np.int64))" if whole else ""
        raise TypeError(f"{info.name} expects integer token ids, got {ids.dtype}{hint}.")
    ids = ids.astype(np.int64)
    if ids.size:
        check_range(ids, f"{info.name} token ids", info.vocab_size)  # on the array: no tensor per sample
    return ids


def _is_text(value: Any) -> bool:
    """Whether a sequence entry is raw text (a string, or strings) rather than token ids."""
    if isinstance(value, (str, bytes)):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "USO" and value.size > 0 and isinstance(value.flat[0], (str, bytes))
    return isinstance(value, (list, tuple)) and len(value) > 0 and isinstance(value[0], (str, bytes))


def _is_per_crop(value: Any) -> bool:
    """Whether a sequence entry is a list with one sequence per crop (rather than one id sequence)."""
    if isinstance(value, Mapping):
        return False
    if isinstance(value, np.ndarray):
        return value.ndim == 2 or value.dtype == object
    return len(value) > 0 and not isinstance(value[0], (int, np.integer))


def split_masked_sequence(entry: Mapping[str, Any]) -> tuple[list[int], list[int]]:
    """The encoder input and decoder target ids of one masked sequence (one row of a collated sequence entry)."""
    tensor = np.asarray(entry["tensor"])
    return (
        tensor[~np.asarray(entry["input_mask"], dtype=bool)].tolist(),
        tensor[~np.asarray(entry["target_mask"], dtype=bool)].tolist(),
    )


# ---------------------------------------------------------------------------------------------------------------------
# Resumable randomness


class SeededMaskingDataset(Dataset):
    """Adds `masking_seed = (seed, epoch, index)` to every sample of a map-style dataset.

    With it, [`FourMMaskingCollator`] masks each sample with a generator of its own, so the masks a sample gets
    depend only on the seed, the epoch and its index: the same with any number of workers or processes, and after a
    resume from a checkpoint (which skips batches without collating them). `Trainer` (through accelerate) calls
    `set_epoch` at the start of every epoch.
    """

    def __init__(self, dataset: Any, seed: int = 0):
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise TypeError(
                f"dataset must be a map-style dataset (with __getitem__ and __len__), got {type(dataset).__name__}."
            )
        self.dataset = dataset
        self.seed = check_int(seed, "seed", minimum=0)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_int(epoch, "epoch", minimum=0)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], "masking_seed": (self.seed, self.epoch, int(index))}


__all__ = [
    "FourMMaskingCollator",
    "KEEP_SCHEMES",
    "MaskingBudget",
    "MaskingMixture",
    "ModalityAlphas",
    "SeededMaskingDataset",
    "available_mixtures",
    "count_dropped_runs",
    "draw_span_keep",
    "load_mixture",
    "split_budget",
    "split_masked_sequence",
    "truncate_target",
]
