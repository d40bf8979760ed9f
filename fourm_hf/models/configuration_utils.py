"""`FourMPreTrainedConfig`: the base of every fourm_hf model config (4M models, task heads, VQ models).

It checks each field on construction (its type from the annotation, its range from `_field_ranges`), so that a wrong
value fails where it is given, naming the field, what was expected and what was given (a misspelt field name gets
its close match); and it reads `config.json` files with errors that name the file (missing, not JSON, not an object,
another model type).
"""

from __future__ import annotations

import difflib
import os
import sys
import types
import typing
from functools import cache
from typing import Any, Literal, Union

from transformers import PreTrainedConfig

from ..checks import check_int, check_number
from ..conversion.files import check_source, read_json_file

# ranges of `_field_ranges` (keyword arguments of `checks.check_number`)
POSITIVE = {"minimum": 0, "open_minimum": True}
AT_LEAST_ONE = {"minimum": 1}
NON_NEGATIVE = {"minimum": 0}
RATE = {"minimum": 0, "maximum": 1, "open_maximum": True}  # dropout and drop-path rates
FRACTION = {"minimum": 0, "maximum": 1}
# similarity (difflib ratio) above which an unknown keyword argument is taken for a misspelt field; high enough that
# task-head options such as `head_hidden_size` never match `hidden_size` (0.81)
MISSPELLING_CUTOFF = 0.85


def _matches(value: Any, hint: Any) -> bool:
    """Whether `value` has the annotated type `hint` (ints pass for floats, bools pass only for bools)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is Literal:
        return value in args
    if origin in (list, tuple):
        item = args[0] if args else Any
        return isinstance(value, origin) and all(_matches(v, item) for v in value)
    if origin is dict:
        key, item = args or (Any, Any)
        return isinstance(value, dict) and all(_matches(k, key) and _matches(v, item) for k, v in value.items())
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    """`hint` in words: `int`, `list of str`, `int or None`..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(arg) for arg in args))
    if origin is Literal:
        return " or ".join(map(repr, args))
    if origin in (list, tuple):
        return f"{origin.__name__} of {_describe(args[0])}" if args else origin.__name__
    if origin is dict:
        return "dict"
    if hint is type(None):
        return "None"
    if hint is float:
        return "float"
    return getattr(hint, "__name__", str(hint))


@cache
def _own_field_types(cls: type) -> dict[str, Any]:
    """The annotated types of the fields `cls` adds to `PreTrainedConfig` (resolved in the modules that annotate
    them; transformers' own annotations are left alone)."""
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__[: cls.__mro__.index(PreTrainedConfig)]):
        annotations = types.SimpleNamespace(__annotations__=klass.__dict__.get("__annotations__", {}))
        hints.update(typing.get_type_hints(annotations, vars(sys.modules[klass.__module__])))
    return {name: hint for name, hint in hints.items() if name in cls.__dataclass_fields__}


class FourMPreTrainedConfig(PreTrainedConfig):
    """Field checks and `config.json` reading shared by the fourm_hf configs.

    Subclasses list numeric ranges in `_field_ranges` (field name to `check_number` bounds, e.g. `POSITIVE`); a list
    field's range applies to each item. Other checks that involve several fields stay in each config's
    `__post_init__`, after `super().__post_init__()`.
    """

    _field_ranges = {}  # field name -> `check_number` bounds (not annotated: not a dataclass field)

    def __post_init__(self, **kwargs):
        self._check_misspelled_fields(kwargs)
        self.check_fields()
        super().__post_init__(**kwargs)

    def _check_misspelled_fields(self, extra: dict[str, Any]) -> None:
        """Refuse an extra keyword argument that is a near miss of a field (`hiden_size`): transformers would keep
        it as a stray attribute and the field its default. Other extras (task-head options, custom attributes)
        pass."""
        fields = list(_own_field_types(type(self)))
        for key in extra:
            match = difflib.get_close_matches(key, fields, n=1, cutoff=MISSPELLING_CUTOFF)
            if match and not key.startswith("_"):
                raise TypeError(f"{type(self).__name__} has no field {key!r}. Did you mean {match[0]!r}?")

    @property
    def num_labels(self) -> int | None:
        """The number of labels of classification heads (the length of `id2label`)."""
        return PreTrainedConfig.num_labels.fget(self)

    @num_labels.setter
    def num_labels(self, num_labels: int) -> None:
        check_int(num_labels, f"{type(self).__name__}.num_labels", minimum=1)
        PreTrainedConfig.num_labels.fset(self, num_labels)

    def check_fields(self) -> None:
        """Raise a `TypeError` for a field whose value does not have the annotated type, and a `ValueError` for one
        outside its range; each names the config, the field, the expectation and the value."""
        name = type(self).__name__
        for field, hint in _own_field_types(type(self)).items():
            value = getattr(self, field)
            if not _matches(value, hint):
                shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
                raise TypeError(f"{name}.{field} must be {_describe(hint)}, got {type(value).__name__} {shown}.")
        for field, bounds in self._field_ranges.items():
            value = getattr(self, field)
            values = value if isinstance(value, (list, tuple)) else [value]
            for index, item in enumerate(values):
                if item is not None:
                    suffix = f"[{index}]" if isinstance(value, (list, tuple)) else ""
                    check_number(item, f"{name}.{field}{suffix}", **bounds)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any):
        """transformers' `from_dict`, with keyword arguments that name fields of the config passed to its
        constructor (so they are checked like the stored fields) instead of set on the built config."""
        fields = {key: kwargs.pop(key) for key in list(kwargs) if key in _own_field_types(cls)}
        return super().from_dict({**config_dict, **fields}, **kwargs)

    @classmethod
    def _dict_from_json_file(cls, json_file: str | os.PathLike) -> dict[str, Any]:
        return cls._decode_special_floats(read_json_file(json_file))

    @classmethod
    def get_config_dict(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """transformers' `get_config_dict`, refusing a source without a `config.json` (transformers would build a
        default config from nothing) or whose config is of another model type (transformers only warns)."""
        source = check_source(pretrained_model_name_or_path)
        config_dict, kwargs = super().get_config_dict(source, **kwargs)
        if not config_dict:
            raise FileNotFoundError(
                f"{source} holds no config.json; expected a {cls.__name__} checkpoint (a directory or Hub repo with "
                "config.json, or the path of a config JSON file)."
            )
        model_type = config_dict.get("model_type")
        if cls.model_type and cls.base_config_key not in config_dict and model_type != cls.model_type:
            if model_type is None:
                raise ValueError(
                    f"{source}: its config.json has no model_type (an official apple/ml-4m config?), so it is no "
                    f"{cls.__name__}; load the model with from_pretrained, which converts official checkpoints."
                )
            raise ValueError(
                f"{source} holds a config of model_type {model_type!r}, not {cls.model_type!r} ({cls.__name__}); "
                "load it with AutoConfig.from_pretrained or its own config class."
            )
        return config_dict, kwargs


__all__ = ["AT_LEAST_ONE", "FRACTION", "NON_NEGATIVE", "POSITIVE", "RATE", "FourMPreTrainedConfig"]
