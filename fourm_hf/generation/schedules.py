"""Token and temperature schedules of parallel (MaskGIT / ROAR) decoding, as in the official sampler.

A token schedule says how many tokens each step commits; a temperature schedule gives each step its temperature
from the starting temperature and the token schedule. Both are small registries of functions: a new variant is one
entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ..checks import check_int, check_number, close_match

# ----------------------------------------------------------------------------------------------------------------
# Token schedules: how many tokens each step of a parallel (MaskGIT / ROAR) decoding commits.


def _check_steps(num_steps: int, num_tokens: int) -> None:
    check_int(num_tokens, "num_tokens", minimum=1)
    check_int(num_steps, "num_steps", minimum=1, maximum=num_tokens)


def cosine_token_schedule(num_steps: int, num_tokens: int) -> list[int]:
    """Tokens per step following the cosine masking curve: few at both ends, most in the middle.

    The fraction still masked before step i is (1 + cos(pi i / S)) / 2; step i commits the rounded difference to
    the next one and the last step takes the remainder. E.g. 8 steps over 784 tokens:
    30, 85, 127, 150, 150, 127, 85, 30.
    """
    _check_steps(num_steps, num_tokens)
    masked = [0.5 * (1 + math.cos(math.pi * i / num_steps)) for i in range(num_steps)]
    counts = [round(num_tokens * (masked[i] - masked[i + 1])) for i in range(num_steps - 1)]
    return [*counts, num_tokens - sum(counts)]


def linear_token_schedule(num_steps: int, num_tokens: int) -> list[int]:
    """Near-equal tokens per step, larger steps first: the integer cuts of linspace(0, T, S + 1), sorted descending.

    E.g. 25 steps over 196 tokens: 21 steps of 8, then 4 of 7.
    """
    _check_steps(num_steps, num_tokens)
    cuts = np.linspace(0, num_tokens, num_steps + 1, dtype=int)
    return sorted((int(c) for c in np.diff(cuts)), reverse=True)


TOKEN_SCHEDULES: dict[str, Callable[[int, int], list[int]]] = {
    "cosine": cosine_token_schedule,
    "linear": linear_token_schedule,
}


# ----------------------------------------------------------------------------------------------------------------
# Temperature schedules: one temperature per step, from the starting temperature and the token schedule.


def constant_temperature_schedule(temperature: float, token_counts: Sequence[int]) -> list[float]:
    """`temperature` at every step."""
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


TEMPERATURE_SCHEDULES: dict[str, Callable[..., list[float]]] = {
    "constant": constant_temperature_schedule,
    "linear": linear_temperature_schedule,
    "onex": onex_temperature_schedule,
}
# Extra numeric arguments each temperature schedule takes after the name, e.g. "onex:<min_temperature>:<power>".
_TEMPERATURE_SCHEDULE_ARGS = {"constant": 0, "linear": 0, "onex": 2}


def parse_temperature_schedule(name: str, modality: str | None = None) -> tuple[str, tuple[float, ...]]:
    """`"constant"`, `"linear"` or `"onex:<min_t>:<power>"` -> (schedule name, extra arguments); errors name the
    target `modality` when given. onex needs min_temperature >= 0 and power > 0 (finite numbers)."""
    argument = "temperature_schedule" if modality is None else f"{modality}: temperature_schedule"
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a string, got {type(name).__name__} {name!r}.")
    schedule, *args = name.split(":")
    if schedule not in _TEMPERATURE_SCHEDULE_ARGS or len(args) != _TEMPERATURE_SCHEDULE_ARGS[schedule]:
        where = "" if modality is None else f" for {modality}"
        raise ValueError(
            f"Unknown temperature_schedule {name!r}{where}; use 'constant', 'linear' or "
            f"'onex:<min_temperature>:<power>' (e.g. 'onex:0.5:0.5').{close_match(schedule, _TEMPERATURE_SCHEDULE_ARGS)}"
        )
    try:
        values = tuple(float(a) for a in args)
    except ValueError:
        raise ValueError(f"{argument} {name!r}: min_temperature and power must be numbers.") from None
    if schedule == "onex":
        check_number(values[0], f"{argument} {name!r}: min_temperature", minimum=0)
        check_number(values[1], f"{argument} {name!r}: power", minimum=0, open_minimum=True)
    return schedule, values


def temperature_schedule(name: str, temperature: float, token_counts: Sequence[int]) -> list[float]:
    """One temperature per step of `token_counts` for the schedule `name` starting at `temperature`."""
    schedule, args = parse_temperature_schedule(name)
    check_number(temperature, "temperature", minimum=0)
    if isinstance(token_counts, (str, bytes)) or not isinstance(token_counts, Sequence) or not token_counts:
        raise ValueError(f"token_counts must be a non-empty list of tokens per step, got {token_counts!r}.")
    for step, count in enumerate(token_counts):
        check_int(count, f"token_counts[{step}]", minimum=1)
    return TEMPERATURE_SCHEDULES[schedule](temperature, token_counts, *args)


__all__ = [
    "TEMPERATURE_SCHEDULES",
    "TOKEN_SCHEDULES",
    "constant_temperature_schedule",
    "cosine_token_schedule",
    "linear_temperature_schedule",
    "linear_token_schedule",
    "onex_temperature_schedule",
    "parse_temperature_schedule",
    "temperature_schedule",
]
