"""Generation followed by super-resolution with a 4M-SR model (the official demo's two-stage sampling)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..modalities import Modalities
from ..models.fourm.configuration_fourm import FourMConfig
from .configuration_fourm_generation import FourMGenerationConfig

if TYPE_CHECKING:
    from .utils import FourMGenerationMixin


def generate_with_super_resolution(
    model: FourMGenerationMixin,
    sr_model: FourMGenerationMixin,
    modalities: Modalities,
    generation_config: FourMGenerationConfig | None = None,
    seed: int | None = None,
    progress_bar: bool = True,
) -> Modalities:
    """Generate with `model`, then super-resolve the image outputs with a 4M-SR model.

    The base chain defaults to the demo recipe for the given inputs; the SR chain is
    `FourMGenerationConfig.super_resolution` on the base output (each image modality the SR model decodes at a higher
    resolution than a base output of its family), run with `seed + 1` (as the demo). Returns the SR model's output
    dict (the base outputs it takes as inputs, plus the super-resolved modalities).
    """
    for name, value in (("model", model), ("sr_model", sr_model)):
        if not (callable(getattr(value, "generate", None)) and isinstance(getattr(value, "config", None), FourMConfig)):
            raise TypeError(f"{name} must be a 4M model (FourMForMaskedModeling), got {type(value).__name__}.")
    if generation_config is None:
        generation_config = FourMGenerationConfig.demo_recipe(model.config, list(modalities))
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 2, ()))
    base = model.generate(modalities, generation_config, seed=seed, progress_bar=progress_bar)
    known = set(sr_model.config.encoder_modalities)
    sr_inputs = {name: entry for name, entry in base.items() if name in known}
    sr_config = FourMGenerationConfig.super_resolution(sr_model.config, sr_inputs)
    return sr_model.generate(sr_inputs, sr_config, seed=seed + 1, progress_bar=progress_bar)


__all__ = ["generate_with_super_resolution"]
