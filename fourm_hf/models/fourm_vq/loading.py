"""`load_vq_model`: a VQ model by family or modality name, Hub id, local directory or bare official file."""

from __future__ import annotations

import os
import warnings
from typing import Any

from ...conversion.hub import hub_kwargs
from ...conversion.official import read_checkpoint, safetensors_shapes
from ...conversion.official_vq import config_from_official, is_official_tokenizer_config
from ...modalities import FAMILIES, family_name, vq_model_id
from .modeling_fourm_divae import FourMDiVAE
from .modeling_fourm_vq import FourMVQPreTrainedModel, FourMVQVAE

VQ_MODEL_CLASSES: dict[str, type[FourMVQPreTrainedModel]] = {
    model_class.config_class.model_type: model_class for model_class in (FourMVQVAE, FourMDiVAE)
}


def vq_model_class(path: str, **hub: Any) -> type[FourMVQPreTrainedModel]:
    """The class (`FourMVQVAE` or `FourMDiVAE`) of the VQ model checkpoint at `path`, native or official layout."""
    found = read_checkpoint(path, is_official_tokenizer_config, "4M tokenizer", **hub)
    if found is None:
        raise ValueError(
            f"name_or_path={path!r} holds no config.json; expected a VQ model checkpoint (Hub repo id, directory, or "
            "official .safetensors file) or a family with a released VQ model."
        )
    config, official_weights = found
    if official_weights is None:
        model_type = config.get("model_type")
    else:
        model_type = config_from_official(config, safetensors_shapes(official_weights)).model_type
    if model_type not in VQ_MODEL_CLASSES:
        raise ValueError(
            f"{path} is not a VQ model checkpoint: its model_type is {model_type!r}, expected one of "
            f"{sorted(VQ_MODEL_CLASSES)}."
        )
    return VQ_MODEL_CLASSES[model_type]


def load_vq_model(name_or_path: str | os.PathLike, **kwargs: Any) -> FourMVQPreTrainedModel:
    """Load a VQ model (`FourMVQVAE` or `FourMDiVAE`), converting official checkpoints on load.

    Args:
        name_or_path: a family or modality with a released VQ model (`"tok_depth"`, `"tok_depth@224"`, or the short
            `"depth"`), a Hub id, a local directory, or a bare official `.safetensors` file.
        kwargs: passed to `from_pretrained` (Hub arguments, `dtype`, ...).
    """
    name = os.fspath(name_or_path)
    is_name = not os.path.exists(name) and "/" not in name
    if is_name and (family_name(name) in FAMILIES or f"tok_{family_name(name)}" in FAMILIES):
        name = vq_model_id(name)
    return vq_model_class(name, **hub_kwargs(kwargs)).from_pretrained(name, **kwargs)


def load_tokenizer(name_or_path: str | os.PathLike, **kwargs: Any) -> FourMVQPreTrainedModel:
    """Deprecated alias of `load_vq_model` (removed in the next release)."""
    warnings.warn("`load_tokenizer` is renamed `load_vq_model`; the old name goes in the next release.", FutureWarning, stacklevel=2)
    return load_vq_model(name_or_path, **kwargs)


__all__ = ["VQ_MODEL_CLASSES", "load_tokenizer", "load_vq_model", "vq_model_class"]
