"""Argument checks shared by the public entry points.

One wording for the common mistakes (wrong type, out-of-range number, unknown name with its close match, empty
input), so that every error names the argument, what was expected and what was given. The module imports nothing
from the package: every layer may use it.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


def close_match(name: Any, known: Iterable[Any], cutoff: float = 0.6) -> str:
    """`" Did you mean 'x'?"` for the entry of `known` closest to `name`, or `""` when none is close (similarity
    below `cutoff`, difflib's ratio)."""
    matches = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=cutoff)
    return f" Did you mean {matches[0]!r}?" if matches else ""


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """`value` if it is one of `choices`, else a `ValueError` listing them and suggesting the closest."""
    choices = list(choices)
    try:
        known = value in choices
    except TypeError:  # an unhashable value compared with a set-like container
        known = False
    if not known:
        listed = sorted(choices, key=str)
        raise ValueError(f"{name} must be one of {listed}, got {value!r}.{close_match(value, choices)}")
    return value


def _bound(value: float) -> str:
    """A range bound as text: integers in full (a seed bound of 2**63 - 1), floats in short form."""
    return str(value) if isinstance(value, numbers.Integral) else f"{value:g}"


def _range_text(minimum: float | None, maximum: float | None, open_minimum: bool, open_maximum: bool) -> str:
    if minimum is not None and maximum is not None:
        return f"in {'(' if open_minimum else '['}{_bound(minimum)}, {_bound(maximum)}{')' if open_maximum else ']'}"
    if minimum is not None:
        return f"{'>' if open_minimum else '>='} {_bound(minimum)}"
    return f"{'<' if open_maximum else '<='} {_bound(maximum)}"


def _check_range(value: float, name: str, minimum, maximum, open_minimum: bool, open_maximum: bool) -> None:
    below = minimum is not None and (value <= minimum if open_minimum else value < minimum)
    above = maximum is not None and (value >= maximum if open_maximum else value > maximum)
    if below or above:
        raise ValueError(f"{name} must be {_range_text(minimum, maximum, open_minimum, open_maximum)}, got {value!r}.")


def check_int(value: Any, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` if it is an integer (not a bool, not a float) within `[minimum, maximum]`; a `TypeError` or
    `ValueError` naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        hint = " (use // for integer division, or int(...))" if isinstance(value, float) and value.is_integer() else ""
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}{hint}.")
    _check_range(value, name, minimum, maximum, False, False)
    return value


def check_number(
    value: Any,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    open_minimum: bool = False,
    open_maximum: bool = False,
) -> float:
    """`value` if it is a finite real number (not a bool) within the range (bounds excluded where `open_*`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}.")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    _check_range(value, name, minimum, maximum, open_minimum, open_maximum)
    return value


def check_bool(value: Any, name: str) -> bool:
    """`value` if it is a bool (or a NumPy bool), else a `TypeError`."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}.")
    return value


def check_names(value: Any, name: str) -> list[str]:
    """The names of `value` as a list: one name (a string) or an iterable of strings (a dict gives its keys); a
    `TypeError` naming `name` and the offending entry otherwise."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (bytes, bytearray)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a modality name or a list of names, got {type(value).__name__} {value!r}.")
    names = list(value)
    for index, item in enumerate(names):
        if not isinstance(item, str):
            raise TypeError(f"{name}[{index}] must be a modality name (a string), got {type(item).__name__} {item!r}.")
    return names


@contextmanager
def error_context(prefix: str) -> Iterator[None]:
    """Re-raise a `ValueError` / `TypeError` raised inside with `prefix` (e.g. the row or modality it concerns) in front
    of its message, as the same kind of error."""
    try:
        yield
    except (TypeError, ValueError) as error:
        kind = TypeError if isinstance(error, TypeError) else ValueError
        raise kind(f"{prefix}: {error}") from error


def check_local_path(value: str | None, name: str, what: str) -> None:
    """A `FileNotFoundError` when `value` is written as a local path (starting with '.', '/' or '~') that does not
    exist; Hub ids (`owner/name`) are left to the loader."""
    if value is not None and str(value).startswith((".", "/", "~")) and not os.path.exists(os.path.expanduser(value)):
        raise FileNotFoundError(f"{name} {str(value)!r}: no such {what}.")


def check_training_arguments(args: Any, derived: Collection[str] = ()) -> None:
    """The `TrainingArguments` fields that transformers accepts but cannot train with: batch sizes, accumulation,
    step and epoch counts, learning rate, weight decay. Raised before any model or dataset is loaded. Fields in
    `derived` (`"max_steps"`, `"learning_rate"`) are computed by the script and not checked."""
    for field in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        check_int(getattr(args, field), f"--{field}", minimum=1)
    if "max_steps" not in derived:
        max_steps = check_int(args.max_steps, "--max_steps")
        if max_steps == 0 or max_steps < -1:
            raise ValueError(
                f"--max_steps must be a positive number of steps (or -1 to use --num_train_epochs), got {max_steps}."
            )
        if max_steps == -1:
            check_number(args.num_train_epochs, "--num_train_epochs", 0, open_minimum=True)
    if "learning_rate" not in derived:
        check_number(args.learning_rate, "--learning_rate", 0, open_minimum=True)
    check_number(args.weight_decay, "--weight_decay", 0)


__all__ = [
    "check_bool",
    "check_choice",
    "check_int",
    "check_local_path",
    "check_names",
    "check_number",
    "check_training_arguments",
    "close_match",
    "error_context",
]
