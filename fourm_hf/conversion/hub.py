"""The Hub download arguments every `from_pretrained` of the package forwards (models, configs, processors).

A neutral module: it imports nothing from the package, so model, generation and processing code can all use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HUB_KWARG_NAMES = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


def hub_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The Hub download arguments (`cache_dir`, `token`, `revision`, `subfolder`, ...) among `from_pretrained`
    keyword arguments."""
    return {name: kwargs[name] for name in HUB_KWARG_NAMES if name in kwargs}


__all__ = ["HUB_KWARG_NAMES", "hub_kwargs"]
