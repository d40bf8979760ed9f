"""`load_vq_model`: a VQ model by family or modality name, Hub id, local directory or bare official file."""

from __future__ import annotations

import os
import warnings
from typing import Any

from ...checks import close_match
from ...conversion.files import check_source
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
        raise FileNotFoundError(
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
    name = name_or_path if isinstance(name_or_path, str) else check_source(name_or_path, "name_or_path")
    if not os.path.exists(name) and "/" not in name:  # a family or modality name, not a path or Hub id
        if family_name(name) not in FAMILIES and f"tok_{family_name(name)}" not in FAMILIES:
            released = sorted(f.name for f in FAMILIES.values() if f.vq_model is not None)
            short = [family.removeprefix("tok_") for family in released]
            raise ValueError(
                f"load_vq_model: {name!r} is no family with a released VQ model, local path or Hub repo id "
                f"('namespace/name').{close_match(family_name(name), released + short)} Families with a released "
                f"VQ model: {released}."
            )
        name = vq_model_id(name)
    else:
        check_source(name, "name_or_path")
    return vq_model_class(name, **hub_kwargs(kwargs)).from_pretrained(name, **kwargs)


def load_tokenizer(name_or_path: str | os.PathLike, **kwargs: Any) -> FourMVQPreTrainedModel:
    """Deprecated alias of `load_vq_model` (removed in the next release)."""
    warnings.warn("`load_tokenizer` is renamed `load_vq_model`; the old name goes in the next release.", FutureWarning, stacklevel=2)
    return load_vq_model(name_or_path, **kwargs)


__all__ = ["VQ_MODEL_CLASSES", "load_tokenizer", "load_vq_model", "vq_model_class"]
